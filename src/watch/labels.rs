//! Pure: the container labels that ask for an attachment, and the jobs Docker events turn into.
//!
//! `<prefix>.network=<docker network>` asks for an attachment (prefix `netattach` by default);
//! `<prefix>.ip`, `<prefix>.ifname` and `<prefix>.netns-name` are the labels' forms of `--ip`,
//! `--ifname` and `--netns-name`. Labels are outside input: validated here like the flags.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use anyhow::{Result, anyhow, bail};

use crate::attach::AttachOpts;
use crate::plan;

/// What a labelled container asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub network: String,
    pub ip: Option<Ipv4Addr>,
    pub ifname: Option<String>,
    pub netns_name: Option<String>,
}

impl Wanted {
    pub fn opts(&self, container_id: &str) -> AttachOpts {
        AttachOpts {
            container: container_id.to_string(),
            network: self.network.clone(),
            ip: self.ip,
            ifname: self.ifname.clone(),
            netns_name: self.netns_name.clone(),
            dry_run: false,
            ..AttachOpts::default()
        }
    }
}

/// `None` when the container does not carry `<prefix>.network`; an error names the bad label.
pub fn wanted(labels: &HashMap<String, String>, prefix: &str) -> Option<Result<Wanted>> {
    let key = |k: &str| format!("{prefix}.{k}");
    let network = labels.get(&key("network"))?;
    Some(parse(labels, prefix, network).map_err(|e| anyhow!("{e}")))
}

fn parse(labels: &HashMap<String, String>, prefix: &str, network: &str) -> Result<Wanted> {
    let get = |k: &str| labels.get(&format!("{prefix}.{k}")).map(String::as_str);
    let ok_network = !network.is_empty()
        && network.len() <= 128
        && network
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !ok_network {
        bail!("label {prefix}.network='{network}' is not a Docker network name or ID");
    }
    let ip = match get("ip") {
        None => None,
        Some(a) => Some(
            a.parse::<Ipv4Addr>()
                .map_err(|_| anyhow!("label {prefix}.ip='{a}' is not an IPv4 address"))?,
        ),
    };
    let ifname = get("ifname").map(str::to_string);
    if let Some(i) = &ifname {
        crate::names::validate_ifname(i).map_err(|e| anyhow!("label {prefix}.ifname: {e}"))?;
    }
    let netns_name = get("netns-name").map(str::to_string);
    if let Some(n) = &netns_name {
        crate::names::validate_netns_name(n)
            .map_err(|e| anyhow!("label {prefix}.netns-name: {e}"))?;
    }
    Ok(Wanted {
        network: network.to_string(),
        ip,
        ifname,
        netns_name,
    })
}

/// A piece of work for one container; the daemon runs the jobs of one container in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Job {
    /// Attach (or confirm the attachment of) a labelled, running container. `event_ns` is the
    /// time of Docker's `start` event, for the latency histogram (none during a reconcile).
    Attach {
        id: String,
        name: String,
        wanted: Wanted,
        event_ns: Option<i64>,
    },
    /// Attach a labelled container that Docker is starting (connected to the `none` network,
    /// see [`super::ahead`]): only if the answer says it runs; quiet when it does not.
    AttachAhead {
        id: String,
        name: String,
        wanted: Wanted,
    },
    /// A labelled container whose labels are unusable.
    BadLabels {
        id: String,
        name: String,
        error: String,
    },
    /// A container started (or runs, during a reconcile): re-apply every lease it holds that
    /// lacks its interface, with the lease's address and options (attached by hand, pending,
    /// or restarted). A container without a lease costs one directory read.
    Restore {
        id: String,
        name: String,
        event_ns: Option<i64>,
    },
    /// The container stopped: its namespace is gone, remove the dead netns links.
    Died { id: String, name: String },
    /// The container was removed: release its leases.
    Destroyed { id: String, name: String },
}

impl Job {
    pub fn container_id(&self) -> &str {
        match self {
            Job::Attach { id, .. }
            | Job::AttachAhead { id, .. }
            | Job::BadLabels { id, .. }
            | Job::Restore { id, .. }
            | Job::Died { id, .. }
            | Job::Destroyed { id, .. } => id,
        }
    }
}

/// Turns one container event (`start`, `die`, `destroy`; Docker puts the container's labels and
/// its `name` among the attributes) into a job. Any container's events count, labelled or not:
/// an unlabelled `start` restores the leases that exist, `die` and `destroy` clean them up.
pub fn job_of_event(
    action: &str,
    id: &str,
    attributes: &HashMap<String, String>,
    time_nano: Option<i64>,
    prefix: &str,
) -> Option<Job> {
    if id.is_empty() {
        return None;
    }
    let id = id.to_string();
    let name = attributes
        .get("name")
        .cloned()
        .unwrap_or_else(|| plan::short_id(&id).to_string());
    match action {
        "start" => Some(match wanted(attributes, prefix) {
            None => Job::Restore {
                id,
                name,
                event_ns: time_nano,
            },
            Some(Ok(wanted)) => Job::Attach {
                id,
                name,
                wanted,
                event_ns: time_nano,
            },
            Some(Err(e)) => Job::BadLabels {
                id,
                name,
                error: format!("{e:#}"),
            },
        }),
        "die" => Some(Job::Died { id, name }),
        "destroy" => Some(Job::Destroyed { id, name }),
        _ => None,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A label (or event attribute) map.
    pub(crate) fn labels(kv: &[(&str, &str)]) -> HashMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn labels_to_wanted() {
        assert!(wanted(&labels(&[("other", "x")]), "netattach").is_none());
        let w = wanted(
            &labels(&[
                ("netattach.network", "bridge"),
                ("netattach.ip", "172.17.0.200"),
                ("netattach.ifname", "eth1"),
                ("netattach.netns-name", "web-ns"),
            ]),
            "netattach",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            w,
            Wanted {
                network: "bridge".into(),
                ip: Some(Ipv4Addr::new(172, 17, 0, 200)),
                ifname: Some("eth1".into()),
                netns_name: Some("web-ns".into()),
            }
        );
        let o = w.opts("abc");
        assert_eq!(o.container, "abc");
        assert!(!o.dry_run);
        // another prefix ignores the default labels
        assert!(wanted(&labels(&[("netattach.network", "bridge")]), "t1").is_none());
    }

    #[test]
    fn hostile_labels_are_named_errors() {
        for (k, v, want) in [
            ("netattach.network", "", "netattach.network"),
            ("netattach.network", "../x", "netattach.network"),
            ("netattach.ip", "300.1.1.1", "netattach.ip"),
            ("netattach.ifname", "much-too-long-name", "netattach.ifname"),
            ("netattach.netns-name", "../../etc", "netattach.netns-name"),
        ] {
            let mut l = labels(&[("netattach.network", "bridge")]);
            l.insert(k.into(), v.into());
            let err = wanted(&l, "netattach").unwrap().unwrap_err().to_string();
            assert!(err.contains(want), "{k}={v}: {err}");
        }
    }

    #[test]
    fn events_to_jobs() {
        let attrs = labels(&[("name", "web"), ("netattach.network", "bridge")]);
        let job = job_of_event("start", "abc", &attrs, Some(5), "netattach").unwrap();
        assert!(matches!(&job, Job::Attach { name, event_ns: Some(5), .. } if name == "web"));
        assert_eq!(job.container_id(), "abc");
        let plain = labels(&[("name", "db")]);
        // an unlabelled start restores the leases the container may hold (attached by hand)
        assert!(matches!(
            job_of_event("start", "abc", &plain, Some(7), "netattach"),
            Some(Job::Restore {
                event_ns: Some(7),
                ..
            })
        ));
        assert!(matches!(
            job_of_event("die", "abc", &plain, None, "netattach"),
            Some(Job::Died { .. })
        ));
        assert!(matches!(
            job_of_event("destroy", "abc", &plain, None, "netattach"),
            Some(Job::Destroyed { .. })
        ));
        assert_eq!(
            job_of_event("pause", "abc", &attrs, None, "netattach"),
            None
        );
        assert_eq!(job_of_event("start", "", &attrs, None, "netattach"), None);
        let bad = labels(&[("netattach.network", "bridge"), ("netattach.ip", "x")]);
        assert!(matches!(
            job_of_event("start", "abc", &bad, None, "netattach"),
            Some(Job::BadLabels { .. })
        ));
    }
}
