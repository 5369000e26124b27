/* icmp_probe ADDRESS LIMIT_S READY_FILE [SNDBUF]: echo requests to ADDRESS every ~0.3 ms (raw
 * socket, root) until the first reply; creates READY_FILE once it sends; prints "first_send_ns
 * reply_ns sent send_errors" (CLOCK_REALTIME ns; reply_ns is "timeout" after LIMIT_S seconds).
 * The socket's send buffer is the kernel's smallest unless SNDBUF says otherwise: while the
 * host has not resolved the address, the kernel queues the requests on its neighbour entry, and
 * each queued one holds buffer space, so at most a dozen wait (sends beyond fail with EAGAIN and
 * are counted) instead of hundreds, whose flush would delay the first reply. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/ip_icmp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static long long ns(clockid_t c) {
    struct timespec t;
    clock_gettime(c, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

static unsigned short csum(const void *b, int n) {
    const unsigned short *p = b;
    unsigned int s = 0;
    for (; n > 1; n -= 2) s += *p++;
    if (n) s += *(const unsigned char *)p;
    s = (s >> 16) + (s & 0xffff);
    s += s >> 16;
    return ~s;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: icmp_probe ADDRESS LIMIT_S READY_FILE [SNDBUF]\n");
        return 2;
    }
    struct sockaddr_in to = {.sin_family = AF_INET};
    if (inet_pton(AF_INET, argv[1], &to.sin_addr) != 1) {
        fprintf(stderr, "icmp_probe: %s is not an IPv4 address\n", argv[1]);
        return 2;
    }
    int s = socket(AF_INET, SOCK_RAW | SOCK_NONBLOCK, IPPROTO_ICMP);
    if (s < 0) {
        perror("icmp_probe: raw socket (needs root)");
        return 1;
    }
    int sndbuf = argc > 4 ? atoi(argv[4]) : 1;
    if (sndbuf > 0) setsockopt(s, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    int id = getpid() & 0xffff, sent = 0, errors = 0;
    unsigned char pkt[16] = {0};
    struct icmphdr *h = (struct icmphdr *)pkt;
    h->type = ICMP_ECHO;
    h->un.echo.id = htons(id);
    h->un.echo.sequence = htons(1);
    memcpy(pkt + 8, "nab-icmp", 8);
    h->checksum = csum(pkt, sizeof pkt);
    int fd = open(argv[3], O_CREAT | O_WRONLY, 0644);
    if (fd >= 0) close(fd);
    long long first = ns(CLOCK_REALTIME), got = 0;
    long long deadline = ns(CLOCK_MONOTONIC) + (long long)(atof(argv[2]) * 1e9);
    while (!got && ns(CLOCK_MONOTONIC) < deadline) {
        if (sendto(s, pkt, sizeof pkt, 0, (struct sockaddr *)&to, sizeof to) < 0)
            errors++;
        else
            sent++;
        long long until = ns(CLOCK_MONOTONIC) + 300000;
        for (;;) {
            long long left = until - ns(CLOCK_MONOTONIC);
            if (left <= 0) break;
            struct pollfd p = {s, POLLIN, 0};
            struct timespec t = {0, left};
            if (ppoll(&p, 1, &t, NULL) <= 0) break;
            unsigned char buf[2048];
            struct sockaddr_in from;
            socklen_t fl = sizeof from;
            int n;
            while ((n = recvfrom(s, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl)) > 0) {
                int ihl = (buf[0] & 15) * 4;
                struct icmphdr *r = (struct icmphdr *)(buf + ihl);
                if (from.sin_addr.s_addr == to.sin_addr.s_addr && n >= ihl + 8 &&
                    r->type == ICMP_ECHOREPLY && ntohs(r->un.echo.id) == id) {
                    got = ns(CLOCK_REALTIME);
                    break;
                }
                fl = sizeof from;
            }
            if (got) break;
        }
    }
    if (got)
        printf("%lld %lld %d %d\n", first, got, sent, errors);
    else
        printf("%lld timeout %d %d\n", first, sent, errors);
    return 0;
}
