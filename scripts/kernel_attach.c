/* kernel_attach: the kernel's share of the minimal `ip` attach, timed inside one process.
 *
 * usage: kernel_attach [--order ORDER] [--settle] [--steps]
 *                      NETNS HOST_IF PEER_IF BRIDGE MTU ADDRESS PREFIXLEN GATEWAY
 *
 * By default the same netlink requests as scripts/bench.sh's minimal `ip` form, in the same
 * order: the veth pair with its peer created in the namespace NETNS (a path:
 * /var/run/netns/NAME), the host end put on BRIDGE and up, then, through a netlink socket opened
 * inside the namespace, the address, eth0 up, lo up and the default route via GATEWAY. Each
 * request waits for the kernel's acknowledgement. Prints the microseconds from the creation
 * request to the last acknowledgement: the "kernel control" of the scale comparison, without
 * the three process starts of the `ip` form, which do not grow with the bridge's ports and
 * dilute its ratio. Exits 1 with the step and the kernel's error on failure (what it made is
 * left: the bench's `ip link del` of HOST_IF removes it).
 *
 * For scripts/bench_port_order.sh, which asks whether the order of the requests changes what
 * the bridge's other ports cost an attach:
 *   --order ip             the default, above;
 *   --order tool           the pair created with the host end already up and on the bridge
 *                          (one request, as docker-netattach does), then the inside;
 *   --order late           the pair created with the host end on the bridge but down, the
 *                          inside, then the host end up (the port comes up with its carrier);
 *   --order carrier-first  the pair created, the inside, the host end up and both ends'
 *                          carrier settled, and only then the host end put on the bridge;
 *   --settle               then both ends' pending carrier change settled (ethtool "get link",
 *                          as docker-netattach does; each must answer "link") and the port's
 *                          state read until it forwards (at most 1 s): the time until the
 *                          attachment passes packets, where the orders that bring the port up
 *                          last pay for it;
 *   --steps                after the total, the microseconds of each step in order: each
 *                          request, carrier-first's settling before it enslaves, and --settle. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/ethtool.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sockios.h>
#include <linux/veth.h>
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct msg {
    struct nlmsghdr n;
    char body[1024];
};

static unsigned seq;

/* The end of the last step (--steps): each acknowledgement ends one. */
static struct timespec last;
static long steps_us[16];
static int nsteps;

static void step_done(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (nsteps < 16)
        steps_us[nsteps++] =
            (now.tv_sec - last.tv_sec) * 1000000L + (now.tv_nsec - last.tv_nsec) / 1000;
    last = now;
}

static void die(const char *step, int err) {
    fprintf(stderr, "kernel_attach: %s: %s\n", step, strerror(err));
    exit(1);
}

static void *tail(struct nlmsghdr *n) { return (char *)n + NLMSG_ALIGN(n->nlmsg_len); }

static struct rtattr *attr(struct nlmsghdr *n, unsigned short type, const void *data, int len) {
    struct rtattr *rta = tail(n);
    rta->rta_type = type;
    rta->rta_len = RTA_LENGTH(len);
    if (len)
        memcpy(RTA_DATA(rta), data, len);
    n->nlmsg_len = NLMSG_ALIGN(n->nlmsg_len) + RTA_ALIGN(rta->rta_len);
    return rta;
}

static void nest_end(struct nlmsghdr *n, struct rtattr *nest) {
    nest->rta_len = (char *)tail(n) - (char *)nest;
}

static void start(struct msg *m, unsigned short type, unsigned short flags, const void *hdr,
                  int len) {
    memset(m, 0, sizeof(*m));
    m->n.nlmsg_type = type;
    m->n.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | flags;
    m->n.nlmsg_seq = ++seq;
    m->n.nlmsg_len = NLMSG_LENGTH(len);
    memcpy(NLMSG_DATA(&m->n), hdr, len);
}

/* Sends the request and waits for its acknowledgement. */
static void talk(int fd, struct msg *m, const char *step) {
    if (send(fd, m, m->n.nlmsg_len, 0) < 0)
        die(step, errno);
    char buf[8192];
    for (;;) {
        ssize_t got = recv(fd, buf, sizeof(buf), 0);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            die(step, errno);
        }
        for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, got);
             h = NLMSG_NEXT(h, got)) {
            if (h->nlmsg_seq != m->n.nlmsg_seq || h->nlmsg_type != NLMSG_ERROR)
                continue;
            int err = ((struct nlmsgerr *)NLMSG_DATA(h))->error;
            if (err)
                die(step, -err);
            step_done();
            return;
        }
    }
}

static int rtnl(void) {
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (fd < 0)
        die("netlink socket", errno);
    return fd;
}

/* Sets the interface up (when `up`) and on the bridge `master` (when not 0). */
static void set_link(int fd, int index, int master, int up, const char *step) {
    struct msg m;
    struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC, .ifi_index = index,
                            .ifi_flags = up ? IFF_UP : 0, .ifi_change = up ? IFF_UP : 0};
    start(&m, RTM_NEWLINK, 0, &ifi, sizeof(ifi));
    if (master)
        attr(&m.n, IFLA_MASTER, &master, sizeof(master));
    talk(fd, &m, step);
}

static void link_up(int fd, int index, int master, const char *step) {
    set_link(fd, index, master, 1, step);
}

/* Has the kernel settle interface `name`'s pending carrier change (ETHTOOL_GLINK), in the
 * namespace of socket `fd`; exits when the interface has no carrier then. */
static void settle_carrier(int fd, const char *name) {
    struct ifreq req = {0};
    struct ethtool_value value = {.cmd = ETHTOOL_GLINK};
    strncpy(req.ifr_name, name, IFNAMSIZ - 1);
    req.ifr_data = (void *)&value;
    if (ioctl(fd, SIOCETHTOOL, &req) < 0)
        die("settle the carrier", errno);
    if (!value.data) {
        fprintf(stderr, "kernel_attach: %s has no carrier once settled\n", name);
        exit(1);
    }
}

/* Until the host end's bridge port forwards (state 3), at most a second. Read from /sys, which
 * shows the interfaces of the namespace it was mounted in: the host's, where this program starts
 * (setns into the container's namespace does not change the mount namespace). */
static void wait_forwarding(const char *host) {
    char path[96];
    snprintf(path, sizeof(path), "/sys/class/net/%s/brport/state", host);
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    do {
        int state = -1;
        FILE *f = fopen(path, "r");
        if (f) {
            if (fscanf(f, "%d", &state) != 1)
                state = -1;
            fclose(f);
        }
        if (state == 3)
            return;
        clock_gettime(CLOCK_MONOTONIC, &now);
    } while ((now.tv_sec - start.tv_sec) * 1000000000L + (now.tv_nsec - start.tv_nsec) <
             1000000000L);
    fprintf(stderr, "kernel_attach: the port %s does not forward after 1 s\n", host);
    exit(1);
}

enum order { ORDER_IP, ORDER_TOOL, ORDER_LATE, ORDER_CARRIER_FIRST };

int main(int argc, char **argv) {
    enum order order = ORDER_IP;
    int settle = 0, steps = 0;
    for (; argc > 1 && !strncmp(argv[1], "--", 2); argc--, argv++) {
        if (!strcmp(argv[1], "--settle"))
            settle = 1;
        else if (!strcmp(argv[1], "--steps"))
            steps = 1;
        else if (!strcmp(argv[1], "--order")) {
            if (argc < 3) {
                fprintf(stderr, "kernel_attach: --order needs one of ip, tool, late, "
                                "carrier-first\n");
                return 2;
            }
            const char *o = argv[2];
            int chosen = !strcmp(o, "ip")              ? ORDER_IP
                         : !strcmp(o, "tool")          ? ORDER_TOOL
                         : !strcmp(o, "late")          ? ORDER_LATE
                         : !strcmp(o, "carrier-first") ? ORDER_CARRIER_FIRST
                                                       : -1;
            if (chosen < 0) {
                fprintf(stderr, "kernel_attach: no order %s (ip, tool, late, carrier-first)\n", o);
                return 2;
            }
            order = (enum order)chosen;
            argc--, argv++;
        } else {
            fprintf(stderr, "kernel_attach: unknown option %s (--order, --settle, --steps)\n",
                    argv[1]);
            return 2;
        }
    }
    if (argc != 9) {
        fprintf(stderr, "usage: kernel_attach [--order ip|tool|late|carrier-first] [--settle] "
                        "[--steps] NETNS HOST_IF PEER_IF BRIDGE MTU ADDRESS PREFIXLEN GATEWAY\n");
        return 2;
    }
    const char *netns = argv[1], *host = argv[2], *peer = argv[3], *bridge = argv[4];
    unsigned mtu = (unsigned)atoi(argv[5]);
    unsigned char prefix = (unsigned char)atoi(argv[7]);
    struct in_addr addr, gw;
    if (!inet_pton(AF_INET, argv[6], &addr) || !inet_pton(AF_INET, argv[8], &gw)) {
        fprintf(stderr, "kernel_attach: not IPv4 addresses: %s, %s\n", argv[6], argv[8]);
        return 2;
    }
    int ns = open(netns, O_RDONLY | O_CLOEXEC);
    if (ns < 0)
        die(netns, errno);
    int host_nl = rtnl();
    int br = (int)if_nametoindex(bridge);
    if (!br)
        die(bridge, errno);

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    last = t0;

    /* ip link add HOST mtu M type veth peer name PEER mtu M netns NS */
    struct msg m;
    struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC};
    if (order == ORDER_TOOL)
        ifi.ifi_flags = ifi.ifi_change = IFF_UP;
    start(&m, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, &ifi, sizeof(ifi));
    attr(&m.n, IFLA_IFNAME, host, strlen(host) + 1);
    attr(&m.n, IFLA_MTU, &mtu, sizeof(mtu));
    if (order == ORDER_TOOL || order == ORDER_LATE)
        attr(&m.n, IFLA_MASTER, &br, sizeof(br));
    struct rtattr *info = attr(&m.n, IFLA_LINKINFO, NULL, 0);
    attr(&m.n, IFLA_INFO_KIND, "veth", 4);
    struct rtattr *data = attr(&m.n, IFLA_INFO_DATA, NULL, 0);
    struct rtattr *p = attr(&m.n, VETH_INFO_PEER, NULL, 0);
    m.n.nlmsg_len += sizeof(struct ifinfomsg); /* the peer's, zeroed */
    attr(&m.n, IFLA_IFNAME, peer, strlen(peer) + 1);
    attr(&m.n, IFLA_MTU, &mtu, sizeof(mtu));
    attr(&m.n, IFLA_NET_NS_FD, &ns, sizeof(ns));
    nest_end(&m.n, p);
    nest_end(&m.n, data);
    nest_end(&m.n, info);
    talk(host_nl, &m, "create the veth pair");

    int h = (int)if_nametoindex(host);
    if (!h)
        die(host, errno);
    /* ip link set HOST master BRIDGE up */
    if (order == ORDER_IP)
        link_up(host_nl, h, br, "put the host end on the bridge");

    /* ip -n NS -batch: addr add, link set PEER up, link set lo up, route add default */
    if (setns(ns, CLONE_NEWNET) < 0)
        die("setns", errno);
    int nl = rtnl();
    int eth = (int)if_nametoindex(peer);
    if (!eth)
        die(peer, errno);
    struct ifaddrmsg ifa = {.ifa_family = AF_INET, .ifa_prefixlen = prefix, .ifa_index = eth};
    start(&m, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, &ifa, sizeof(ifa));
    attr(&m.n, IFA_LOCAL, &addr, sizeof(addr));
    attr(&m.n, IFA_ADDRESS, &addr, sizeof(addr));
    talk(nl, &m, "add the address");
    link_up(nl, eth, 0, "set the peer up");
    link_up(nl, 1, 0, "set lo up");
    struct rtmsg rt = {.rtm_family = AF_INET, .rtm_table = RT_TABLE_MAIN,
                       .rtm_protocol = RTPROT_BOOT, .rtm_scope = RT_SCOPE_UNIVERSE,
                       .rtm_type = RTN_UNICAST};
    start(&m, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, &rt, sizeof(rt));
    attr(&m.n, RTA_GATEWAY, &gw, sizeof(gw));
    talk(nl, &m, "add the default route");

    if (order == ORDER_LATE || order == ORDER_CARRIER_FIRST)
        link_up(host_nl, h, 0, "set the host end up");
    /* Each end's carrier is settled through a netlink socket of its namespace (the kernel
     * answers the ioctl in the socket's namespace). */
    if (order == ORDER_CARRIER_FIRST) {
        settle_carrier(host_nl, host);
        settle_carrier(nl, peer);
        step_done();
        set_link(host_nl, h, br, 0, "put the host end on the bridge");
    }
    if (settle) {
        settle_carrier(host_nl, host);
        settle_carrier(nl, peer);
        wait_forwarding(host);
        step_done();
    }

    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("%ld", (t1.tv_sec - t0.tv_sec) * 1000000L + (t1.tv_nsec - t0.tv_nsec) / 1000);
    for (int i = 0; steps && i < nsteps; i++)
        printf(" %ld", steps_us[i]);
    printf("\n");
    return 0;
}
