//! The daemon's counters and their Prometheus text form. No side effects: atomics in memory,
//! rendered on request.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::list::Row;

/// Results an attach job can have (the `result` label of `netattach_attaches_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachResult {
    Attached,
    /// Attached already; nothing changed.
    Existing,
    /// The container stopped (or went away) first.
    Skipped,
    Error,
}

impl AttachResult {
    /// Every result, in the order they are rendered.
    pub const ALL: [AttachResult; 4] = [
        AttachResult::Attached,
        AttachResult::Existing,
        AttachResult::Skipped,
        AttachResult::Error,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            AttachResult::Attached => "attached",
            AttachResult::Existing => "existing",
            AttachResult::Skipped => "skipped",
            AttachResult::Error => "error",
        }
    }
}

impl std::fmt::Display for AttachResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// Results of a detach (release of the leases of a removed container).
pub const DETACH_RESULTS: [&str; 2] = ["ok", "error"];
/// Upper bounds (seconds) of the attach latency histogram.
pub const LATENCY_BUCKETS: [f64; 11] =
    [0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

#[derive(Debug, Default)]
pub struct Metrics {
    attaches: [AtomicU64; 4],
    detaches: [AtomicU64; 2],
    link_cleanups: AtomicU64,
    reconciles_ok: AtomicU64,
    reconciles_error: AtomicU64,
    reconnects: AtomicU64,
    events: AtomicU64,
    latency: Histogram,
    queues: AtomicU64,
}

#[derive(Debug, Default)]
struct Histogram {
    buckets: [AtomicU64; 11],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

/// Live facts rendered next to the counters.
#[derive(Debug, Clone, Default)]
pub struct Gauges<'a> {
    pub docker_up: bool,
    pub attachments: &'a [Row],
    pub version: &'a str,
    pub commit: &'a str,
    /// Job threads running now, and their bound.
    pub job_threads: usize,
    pub job_threads_limit: usize,
}

fn add(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

impl Metrics {
    /// Counts an attach job by result.
    pub fn attach(&self, result: AttachResult) {
        add(&self.attaches[result as usize]);
    }

    pub fn detach(&self, ok: bool) {
        add(&self.detaches[usize::from(!ok)]);
    }

    pub fn link_cleanups(&self, n: u64) {
        self.link_cleanups.fetch_add(n, Ordering::Relaxed);
    }

    pub fn reconcile(&self, ok: bool) {
        add(if ok {
            &self.reconciles_ok
        } else {
            &self.reconciles_error
        });
    }

    pub fn reconnect(&self) {
        add(&self.reconnects);
    }

    pub fn event(&self) {
        add(&self.events);
    }

    /// Containers with a job queue now (queued or running work).
    pub fn set_queues(&self, n: usize) {
        self.queues.store(n as u64, Ordering::Relaxed);
    }

    /// Records the time from Docker's `start` event to a configured interface.
    pub fn observe_latency(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            if secs <= *bound {
                add(&self.latency.buckets[i]);
            }
        }
        add(&self.latency.count);
        self.latency.sum_micros.fetch_add(
            u64::try_from(d.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    #[cfg(test)]
    pub fn reconciles(&self) -> u64 {
        get(&self.reconciles_ok) + get(&self.reconciles_error)
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self, g: &Gauges) -> String {
        let mut o = String::new();
        let mut lines = Vec::new();
        let n = family(
            &mut o,
            "netattach_build_info",
            "gauge",
            "Version and git commit of this docker-netattach.",
        );
        lines.push((
            n,
            format!(
                "{{version=\"{}\",commit=\"{}\"}}",
                esc(g.version),
                esc(g.commit)
            ),
            1.0,
        ));
        flush(&mut o, &mut lines);
        let n = family(
            &mut o,
            "netattach_attaches_total",
            "counter",
            "Attach jobs by result (existing: already attached; skipped: the container stopped first).",
        );
        for (i, r) in AttachResult::ALL.iter().enumerate() {
            lines.push((
                n.clone(),
                format!("{{result=\"{r}\"}}"),
                get(&self.attaches[i]) as f64,
            ));
        }
        flush(&mut o, &mut lines);
        let n = family(
            &mut o,
            "netattach_detaches_total",
            "counter",
            "Releases of the leases of removed containers, by result.",
        );
        for (i, r) in DETACH_RESULTS.iter().enumerate() {
            lines.push((
                n.clone(),
                format!("{{result=\"{r}\"}}"),
                get(&self.detaches[i]) as f64,
            ));
        }
        flush(&mut o, &mut lines);
        let n = family(
            &mut o,
            "netattach_netns_link_cleanups_total",
            "counter",
            "Dead /var/run/netns links removed after a container stopped.",
        );
        lines.push((n, String::new(), get(&self.link_cleanups) as f64));
        flush(&mut o, &mut lines);
        let n = family(
            &mut o,
            "netattach_attachments",
            "gauge",
            "Leases in the state directory, by network and status.",
        );
        let mut counts: std::collections::BTreeMap<(&str, &str), u64> = Default::default();
        for row in g.attachments {
            if let Row::Lease(l, s) = row {
                *counts.entry((l.network.as_str(), s.as_str())).or_default() += 1;
            }
        }
        for ((net, status), c) in counts {
            lines.push((
                n.clone(),
                format!("{{network=\"{}\",status=\"{status}\"}}", esc(net)),
                c as f64,
            ));
        }
        flush(&mut o, &mut lines);
        let n = family(
            &mut o,
            "netattach_corrupt_leases",
            "gauge",
            "Lease files that cannot be read (in place or quarantined); their addresses stay reserved. `docker-netattach doctor` names them.",
        );
        let corrupt = g
            .attachments
            .iter()
            .filter(|r| matches!(r, Row::Corrupt(_)))
            .count();
        lines.push((n, String::new(), corrupt as f64));
        flush(&mut o, &mut lines);
        let n = family(
            &mut o,
            "netattach_attach_latency_seconds",
            "histogram",
            "Time from Docker's start event to the container's interface being configured.",
        );
        for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
            lines.push((
                format!("{n}_bucket"),
                format!("{{le=\"{b}\"}}"),
                get(&self.latency.buckets[i]) as f64,
            ));
        }
        let count = get(&self.latency.count) as f64;
        lines.push((format!("{n}_bucket"), "{le=\"+Inf\"}".into(), count));
        lines.push((
            format!("{n}_sum"),
            String::new(),
            get(&self.latency.sum_micros) as f64 / 1e6,
        ));
        lines.push((format!("{n}_count"), String::new(), count));
        flush(&mut o, &mut lines);
        let n = family(
            &mut o,
            "netattach_reconciles_total",
            "counter",
            "Full reconciles (start-up, reconnect, resync), by result.",
        );
        lines.push((
            n.clone(),
            "{result=\"ok\"}".into(),
            get(&self.reconciles_ok) as f64,
        ));
        lines.push((
            n,
            "{result=\"error\"}".into(),
            get(&self.reconciles_error) as f64,
        ));
        flush(&mut o, &mut lines);
        let n = family(
            &mut o,
            "netattach_docker_reconnects_total",
            "counter",
            "Connections to Docker re-established after it went away.",
        );
        lines.push((n, String::new(), get(&self.reconnects) as f64));
        flush(&mut o, &mut lines);
        let n = family(
            &mut o,
            "netattach_docker_up",
            "gauge",
            "1 while the Docker event stream is connected.",
        );
        lines.push((n, String::new(), if g.docker_up { 1.0 } else { 0.0 }));
        flush(&mut o, &mut lines);
        let n = family(
            &mut o,
            "netattach_events_total",
            "counter",
            "Docker container events received.",
        );
        lines.push((n, String::new(), get(&self.events) as f64));
        flush(&mut o, &mut lines);
        for (name, help, v) in [
            (
                "netattach_container_queues",
                "Containers with queued or running jobs (idle queues are dropped).",
                get(&self.queues) as f64,
            ),
            (
                "netattach_job_threads",
                "Job threads (attach, cleanup, gc) running now.",
                g.job_threads as f64,
            ),
            (
                "netattach_job_threads_limit",
                "Job threads that may run at once; further jobs wait.",
                g.job_threads_limit as f64,
            ),
        ] {
            let n = family(&mut o, name, "gauge", help);
            lines.push((n, String::new(), v));
            flush(&mut o, &mut lines);
        }
        o
    }
}

fn family(o: &mut String, name: &str, kind: &str, help: &str) -> String {
    let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
    name.to_string()
}

fn flush(o: &mut String, lines: &mut Vec<(String, String, f64)>) {
    for (name, labels, v) in lines.drain(..) {
        let _ = writeln!(o, "{name}{labels} {v}");
    }
}

/// Escapes a Prometheus label value.
fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attach_results_index_their_counters() {
        for (i, r) in AttachResult::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
    }

    #[test]
    fn renders_every_family_with_values() {
        let m = Metrics::default();
        m.attach(AttachResult::Attached);
        m.attach(AttachResult::Attached);
        m.attach(AttachResult::Error);
        m.detach(true);
        m.reconcile(true);
        m.reconnect();
        m.observe_latency(Duration::from_millis(7));
        m.observe_latency(Duration::from_millis(300));
        let text = m.render(&Gauges {
            docker_up: true,
            attachments: &[],
            version: "0.1.0",
            commit: "abc\"d",
            job_threads: 3,
            job_threads_limit: 16,
        });
        m.set_queues(2);
        let text = format!(
            "{text}{}",
            m.render(&Gauges {
                job_threads_limit: 16,
                ..Default::default()
            })
        );
        for want in [
            "netattach_build_info{version=\"0.1.0\",commit=\"abc\\\"d\"} 1",
            "netattach_attaches_total{result=\"attached\"} 2",
            "netattach_attaches_total{result=\"error\"} 1",
            "netattach_detaches_total{result=\"ok\"} 1",
            "netattach_attach_latency_seconds_bucket{le=\"0.005\"} 0",
            "netattach_attach_latency_seconds_bucket{le=\"0.01\"} 1",
            "netattach_attach_latency_seconds_bucket{le=\"0.5\"} 2",
            "netattach_attach_latency_seconds_bucket{le=\"+Inf\"} 2",
            "netattach_attach_latency_seconds_count 2",
            "netattach_attach_latency_seconds_sum 0.307",
            "netattach_reconciles_total{result=\"ok\"} 1",
            "netattach_docker_reconnects_total 1",
            "netattach_docker_up 1",
            "netattach_corrupt_leases 0",
            "netattach_job_threads 3",
            "netattach_job_threads_limit 16",
            "netattach_container_queues 2",
            "# TYPE netattach_attach_latency_seconds histogram",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        assert_eq!(m.reconciles(), 1);
    }
}
