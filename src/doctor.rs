//! `doctor`: checks the host and prints what will bite. Read-only: /proc, /sys, the state
//! directory, Docker's API, and `iptables-save -t nat` when it is installed.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use crate::docker::{DockerClient, NetworkInfo};
use crate::lease::{CorruptIndex, CorruptLease, Lease, LeaseStore};
use crate::list;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

/// One finding.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub check: &'static str,
    pub status: Status,
    pub subject: String,
    pub message: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub fix: String,
}

fn check(check: &'static str, status: Status, subject: &str, message: String, fix: &str) -> Check {
    Check {
        check,
        status,
        subject: subject.to_string(),
        message,
        fix: fix.to_string(),
    }
}

/// Runs every check: the host, each network (`networks`, plus those our leases are on), and
/// each lease.
pub async fn doctor(networks: &[String], state_dir: &Path) -> Result<Vec<Check>> {
    let mut out = Vec::new();
    out.push(ip_forward(&read_trim("/proc/sys/net/ipv4/ip_forward")));
    let euid = nix::unistd::geteuid().as_raw();
    if euid != 0 {
        out.push(check(
            "root",
            Status::Fail,
            "host",
            format!(
                "doctor runs as uid {euid}: it cannot read root's leases, every namespace or Docker's socket"
            ),
            "run it as root: sudo docker-netattach doctor",
        ));
    }
    let readable = crate::privilege::may_read_state("doctor", state_dir);
    let leases = match readable.and_then(|()| LeaseStore::open_existing(state_dir)) {
        Ok(Some(store)) => match store.scan() {
            Ok(scan) => {
                out.extend(scan.corrupt.iter().map(corrupt_lease_check));
                match store.corrupt_indexes() {
                    Ok(bad) => out.extend(bad.iter().map(corrupt_index_check)),
                    Err(e) => out.push(check(
                        "state",
                        Status::Fail,
                        &state_dir.display().to_string(),
                        format!("{e:#}"),
                        "",
                    )),
                }
                scan.leases
            }
            Err(e) => {
                out.push(check(
                    "state",
                    Status::Fail,
                    &state_dir.display().to_string(),
                    format!("{e:#}"),
                    "fix or move the named file or directory, then run `docker-netattach gc`",
                ));
                vec![]
            }
        },
        Ok(None) => vec![],
        Err(e) => {
            out.push(check(
                "state",
                Status::Fail,
                &state_dir.display().to_string(),
                format!("{e:#}"),
                "",
            ));
            vec![]
        }
    };
    let docker = match DockerClient::connect() {
        Ok(d) => Some(d),
        Err(e) => {
            out.push(check(
                "docker",
                Status::Fail,
                "docker",
                format!("{e:#}"),
                "start Docker or set DOCKER_HOST",
            ));
            None
        }
    };
    let mut names: BTreeSet<String> = networks.iter().cloned().collect();
    names.extend(
        leases
            .iter()
            .filter(|l| !l.network_id.starts_with("bridge-"))
            .map(|l| l.network.clone()),
    );
    let nat = nat_rules();
    if let Some(docker) = &docker {
        for name in &names {
            match docker.network(name).await {
                Ok(net) => {
                    let mine: Vec<&Lease> =
                        leases.iter().filter(|l| l.network_id == net.id).collect();
                    out.extend(network_checks(
                        &net,
                        &mine,
                        &bridge_up(&net.bridge),
                        nat.as_deref(),
                    ));
                }
                Err(e) => out.push(check("network", Status::Fail, name, format!("{e:#}"), "")),
            }
        }
        for lease in leases.iter().filter(|l| !l.pending) {
            out.push(lease_check(lease, docker).await);
        }
    }
    let served = crate::watch_lock::served(state_dir);
    out.extend(
        leases
            .iter()
            .filter(|l| l.pending)
            .map(|l| pending_check(l, served)),
    );
    Ok(out)
}

/// A lease file that cannot be read: its address stays reserved until a person decides.
pub fn corrupt_lease_check(c: &CorruptLease) -> Check {
    let addrs = match c.ip6 {
        Some(ip6) => format!("{} and {ip6}", c.ip),
        None => c.ip.to_string(),
    };
    let message = format!(
        "lease file {} of network {} cannot be read ({}); {addrs} stay reserved: no attach hands them out",
        c.path.display(),
        c.network_id,
        c.error
    );
    let release = format!(
        "find who uses {} (`docker-netattach list`, `ip -br addr` in the namespaces on that network); when nobody does, delete {} to release it",
        c.ip,
        c.path.display()
    );
    let fix = if c.quarantined {
        release
    } else {
        format!("run `docker-netattach gc` to set it aside under quarantine/; then {release}")
    };
    check(
        "lease-file",
        Status::Warn,
        &c.path.display().to_string(),
        message,
        &fix,
    )
}

/// An index entry that holds no address: the lease is still found through the lease files.
pub fn corrupt_index_check(c: &CorruptIndex) -> Check {
    check(
        "index",
        Status::Warn,
        &c.path.display().to_string(),
        format!(
            "index entry {} is corrupt ({}); its lease is still found by reading the lease files",
            c.path.display(),
            c.error
        ),
        "run `docker-netattach gc`: it rebuilds the entry from the lease (or removes it when there is none)",
    )
}

/// A pending lease (its container was not running when attached) is applied at the next start
/// only while a `watch` daemon serves this state directory.
pub fn pending_check(l: &Lease, served: bool) -> Check {
    let who = l.container_name.as_str();
    if served {
        check(
            "pending",
            Status::Ok,
            who,
            format!(
                "{} is pending; `watch` applies it when the container starts",
                l.v4.ip
            ),
            "",
        )
    } else {
        check(
            "pending",
            Status::Warn,
            who,
            format!(
                "{} is pending, and no `docker-netattach watch` serves this state directory: the container starts without it",
                l.v4.ip
            ),
            &format!(
                "run `docker-netattach watch` (docs/watch.md), or `docker-netattach attach {who} --network {}` after `docker start {who}`",
                l.network
            ),
        )
    }
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

pub fn ip_forward(value: &str) -> Check {
    if value == "1" {
        check(
            "ip_forward",
            Status::Ok,
            "host",
            "IPv4 forwarding is on".into(),
            "",
        )
    } else {
        check(
            "ip_forward",
            Status::Fail,
            "host",
            "IPv4 forwarding is off: attached containers cannot reach anything beyond the host"
                .into(),
            "sysctl -w net.ipv4.ip_forward=1 (Docker turns it on unless started with --ip-forward=false)",
        )
    }
}

/// `Some(up)` from /sys, `None` when the bridge does not exist.
fn bridge_up(bridge: &str) -> Option<bool> {
    let flags = std::fs::read_to_string(format!("/sys/class/net/{bridge}/flags")).ok()?;
    let flags = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).ok()?;
    Some(flags & 1 != 0)
}

/// `iptables-save -t nat`, when the tool is there and answers.
fn nat_rules() -> Option<String> {
    let out = std::process::Command::new("iptables-save")
        .args(["-t", "nat"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Pure: the checks of one network, given the leases on it, the bridge state and NAT rules.
pub fn network_checks(
    net: &NetworkInfo,
    leases: &[&Lease],
    up: &Option<bool>,
    nat: Option<&str>,
) -> Vec<Check> {
    let n = net.name.as_str();
    let mut out = Vec::new();
    out.push(match up {
        Some(true) => check(
            "bridge",
            Status::Ok,
            n,
            format!("bridge {} is up", net.bridge),
            "",
        ),
        Some(false) => check(
            "bridge",
            Status::Fail,
            n,
            format!("bridge {} is down", net.bridge),
            &format!("ip link set {} up", net.bridge),
        ),
        None => check(
            "bridge",
            Status::Fail,
            n,
            format!("bridge {} does not exist", net.bridge),
            "restart Docker, or recreate the network",
        ),
    });
    if !net.icc {
        out.push(check("icc", Status::Warn, n, "inter-container communication is off (icc=false): containers on this network cannot reach each other, attached ones included".into(), "drop --icc=false / enable_icc=false if they must talk"));
    }
    for c in &net.v4 {
        if c.ip_range.is_none() {
            out.push(check("fixed-cidr", Status::Warn, n, format!("{} has no IPRange/fixed-cidr: Docker may one day hand out an address docker-netattach chose", c.subnet), "set \"fixed-cidr\" in daemon.json (docker0) or --ip-range on the network"));
        } else {
            out.push(check(
                "fixed-cidr",
                Status::Ok,
                n,
                format!(
                    "Docker allocates only inside {}",
                    c.ip_range.map(|r| r.to_string()).unwrap_or_default()
                ),
                "",
            ));
        }
        if net.masquerade {
            out.push(match nat {
                Some(rules) if has_masquerade(rules, &c.subnet.to_string()) => check(
                    "masquerade",
                    Status::Ok,
                    n,
                    format!("outbound NAT for {}", c.subnet),
                    "",
                ),
                Some(_) => check(
                    "masquerade",
                    Status::Fail,
                    n,
                    format!(
                        "no MASQUERADE rule for {}: attached containers cannot reach the outside",
                        c.subnet
                    ),
                    "restart Docker (it installs the rule), or check --iptables=false",
                ),
                None => check(
                    "masquerade",
                    Status::Warn,
                    n,
                    "cannot read NAT rules (iptables-save missing or failing)".into(),
                    "install iptables to let doctor check",
                ),
            });
        }
    }
    let docker_addrs: BTreeSet<IpAddr> = net.endpoints.iter().map(|e| e.ip).collect();
    for l in leases {
        let ours = [Some(IpAddr::V4(l.v4.ip)), l.ip6().map(IpAddr::V6)];
        for a in ours.into_iter().flatten() {
            if docker_addrs.contains(&a) {
                out.push(check(
                    "collision",
                    Status::Fail,
                    n,
                    format!(
                        "{a} is leased to {} and also held by a Docker endpoint",
                        l.container_name
                    ),
                    &format!(
                        "docker-netattach detach {} and attach it again",
                        l.container_name
                    ),
                ));
            }
        }
    }
    out
}

/// Docker's rule looks like `-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE`.
pub fn has_masquerade(rules: &str, subnet: &str) -> bool {
    rules
        .lines()
        .any(|l| l.contains(&format!("-s {subnet}")) && l.contains("-j MASQUERADE"))
}

async fn lease_check(l: &Lease, docker: &DockerClient) -> Check {
    let who = l.container_name.as_str();
    let status = list::status(l);
    if !l.netns_path.is_empty() {
        return if status == list::Status::Attached {
            check(
                "lease",
                Status::Ok,
                who,
                format!("{} attached", l.v4.ip),
                "",
            )
        } else {
            check(
                "lease",
                Status::Fail,
                who,
                format!("namespace {} of lease {} is gone", l.netns_path, l.v4.ip),
                &format!("docker-netattach detach {who}"),
            )
        };
    }
    match docker.container_opt(&l.container_id).await {
        Ok(None) => check(
            "lease",
            Status::Fail,
            who,
            format!("container of lease {} no longer exists", l.v4.ip),
            &format!("docker-netattach detach {who} (or gc)"),
        ),
        Ok(Some(_)) if status == list::Status::Attached => check(
            "lease",
            Status::Ok,
            who,
            format!("{} attached", l.v4.ip),
            "",
        ),
        Ok(Some(c)) if !c.running => check(
            "lease",
            Status::Ok,
            who,
            format!(
                "{} kept for the stopped container (it gets it back when attached again)",
                l.v4.ip
            ),
            "",
        ),
        Ok(Some(_)) => check(
            "lease",
            Status::Warn,
            who,
            format!(
                "{} leased but the container was restarted and is not attached",
                l.v4.ip
            ),
            &format!("docker-netattach attach {who}"),
        ),
        Err(e) => check(
            "lease",
            Status::Warn,
            who,
            format!("cannot ask Docker: {e:#}"),
            "",
        ),
    }
}

/// The report for people.
pub fn text(checks: &[Check]) -> String {
    let mut out = String::new();
    for c in checks {
        let tag = match c.status {
            Status::Ok => "ok  ",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        };
        out.push_str(&format!(
            "{tag}  {:<11} {}: {}\n",
            c.check, c.subject, c.message
        ));
        if !c.fix.is_empty() && c.status != Status::Ok {
            out.push_str(&format!("      fix: {}\n", c.fix));
        }
    }
    out
}

#[cfg(test)]
mod tests;
