//! Attaching ahead of the `start` event. While Docker starts a container it connects it to its
//! networks (a `--network=none` one to the `none` network, driver `null`) and logs that
//! `connect`, ~0.2 s before the `start` event (the runtime creates the process meanwhile). It
//! holds the container's lock all that time, and an inspect waits for that lock: sent at the
//! `connect`, it is answered as soon as the start is done, with the Pid. So the daemon begins
//! the attach of a labelled container at its `connect` to `none`; the attach runs as always
//! once the answer says the container runs (and gives up quietly when it does not: the
//! `start` event's attach, queued behind it, then does the work as before). The `start`
//! event's job then counts the attachment made, with its latency from the `start` event to the
//! moment it was done, without attaching again: it was made for this start when it was done
//! after the event (Docker logs `start` before it lets the inspect through; one made for an
//! earlier start was done before this one began). (Measured with issue 13's watch bench: see
//! docs/benchmarks.md.)
//!
//! Pure: which containers are labelled (a network event does not carry the container's
//! labels, its `create` event does) and when an attach made ahead of a start was done. Only
//! containers created while the daemon follows the events are known here; others are attached
//! on their `start` event.

use std::collections::HashMap;
use std::time::SystemTime;

use super::labels::{Job, Wanted, wanted};
use crate::lease::Lease;

/// Labelled containers remembered at most (their `destroy` forgets them); more are attached
/// on their `start` event only.
pub const MAX_KNOWN: usize = 65_536;

#[derive(Default)]
pub struct Ahead {
    /// Container ID → its name and what its labels ask for, from its `create` event.
    labelled: HashMap<String, (String, Wanted)>,
    /// Container ID → when its attach made ahead of the `start` event was done, and its lease.
    done: HashMap<String, (SystemTime, Lease)>,
}

impl Ahead {
    /// A container `create` event: remembers the container when its labels ask for an
    /// attachment (bad labels are reported by the `start` event's job).
    pub fn created(&mut self, id: &str, attributes: &HashMap<String, String>, prefix: &str) {
        let Some(Ok(w)) = wanted(attributes, prefix) else {
            return;
        };
        if id.is_empty() || self.labelled.len() >= MAX_KNOWN {
            return;
        }
        let name = attributes.get("name").cloned().unwrap_or_default();
        self.labelled.insert(id.to_string(), (name, w));
    }

    /// A network `connect` event: the attach to begin when a known labelled container is
    /// connected to the `none` network (driver `null`), i.e. is being started.
    pub fn connected(&self, attributes: &HashMap<String, String>) -> Option<Job> {
        if attributes.get("type").map(String::as_str) != Some("null") {
            return None;
        }
        let id = attributes.get("container")?;
        let (name, wanted) = self.labelled.get(id)?;
        Some(Job::AttachAhead {
            id: id.clone(),
            name: name.clone(),
            wanted: wanted.clone(),
        })
    }

    /// The attach begun at the `connect` was done at `at`, with `lease`.
    pub fn attached(&mut self, id: &str, at: SystemTime, lease: Lease) {
        if self.labelled.contains_key(id) {
            self.done.insert(id.to_string(), (at, lease));
        }
    }

    /// The attach made ahead of the start whose event is at `event` (ns since the epoch):
    /// when it was done and its lease, if it was done after that event (once: any record is
    /// forgotten). One done before it was made for an earlier start, whose event the daemon
    /// did not act on (its event stream was reconnecting): the `start` event's attach decides
    /// then.
    pub fn take_attached(&mut self, id: &str, event: Option<i64>) -> Option<(SystemTime, Lease)> {
        let (at, lease) = self.done.remove(id)?;
        let event =
            SystemTime::UNIX_EPOCH + std::time::Duration::from_nanos(u64::try_from(event?).ok()?);
        (at >= event).then_some((at, lease))
    }

    /// A container `destroy` event: forgotten.
    pub fn destroyed(&mut self, id: &str) {
        self.labelled.remove(id);
        self.done.remove(id);
    }

    /// Containers remembered.
    #[cfg(test)]
    pub fn known(&self) -> usize {
        self.labelled.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::watch::labels::tests::labels as attrs;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn a_labelled_container_connected_to_none_is_attached_ahead() {
        let mut a = Ahead::default();
        a.created(
            ID,
            &attrs(&[
                ("name", "web"),
                ("na.network", "bridge"),
                ("na.ip", "10.1.2.3"),
            ]),
            "na",
        );
        assert_eq!(a.known(), 1);
        let job = a
            .connected(&attrs(&[
                ("container", ID),
                ("name", "none"),
                ("type", "null"),
            ]))
            .unwrap();
        let Job::AttachAhead { id, name, wanted } = job else {
            panic!("{job:?}");
        };
        assert_eq!((id.as_str(), name.as_str()), (ID, "web"));
        assert_eq!(wanted.network, "bridge");
        assert_eq!(wanted.ip, Some("10.1.2.3".parse().unwrap()));
    }

    #[test]
    fn other_connects_and_other_containers_begin_nothing() {
        let mut a = Ahead::default();
        a.created(
            ID,
            &attrs(&[("name", "web"), ("na.network", "bridge")]),
            "na",
        );
        // A connect to a network with a driver (a container on a Docker network, or a
        // `docker network connect` later): not a start of a --network=none container.
        for t in ["bridge", "overlay", "macvlan", ""] {
            assert!(
                a.connected(&attrs(&[("container", ID), ("type", t)]))
                    .is_none()
            );
        }
        assert!(a.connected(&attrs(&[("container", ID)])).is_none());
        // Unknown container, or none named.
        assert!(
            a.connected(&attrs(&[("container", "feed"), ("type", "null")]))
                .is_none()
        );
        assert!(a.connected(&attrs(&[("type", "null")])).is_none());
        // Unlabelled, other prefix, bad labels: never remembered.
        a.created("b", &attrs(&[("name", "b")]), "na");
        a.created("c", &attrs(&[("other.network", "bridge")]), "na");
        a.created(
            "d",
            &attrs(&[("na.network", "bridge"), ("na.ip", "x")]),
            "na",
        );
        a.created("", &attrs(&[("na.network", "bridge")]), "na");
        assert_eq!(a.known(), 1);
    }

    #[test]
    fn an_attach_done_after_the_start_event_is_taken_once_and_destroy_forgets() {
        let mut a = Ahead::default();
        let secs = |s: u64| SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(s);
        let event = Some(7_000_000_000); // the start event, at 7 s
        let lease = Lease::sample(ID, "web", "10.1.2.3");
        let done = Some((secs(8), lease.clone()));
        // Unknown containers get no record.
        a.attached("x", secs(8), lease.clone());
        assert_eq!(a.take_attached("x", event), None);
        a.created(ID, &attrs(&[("na.network", "bridge")]), "na");
        a.attached(ID, secs(8), lease.clone());
        assert_eq!(a.take_attached(ID, event), done);
        assert_eq!(a.take_attached(ID, event), None);
        // Done at the event: this start's. Before it: an earlier start's, not taken, and
        // forgotten; without the event's time, not taken either.
        a.attached(ID, secs(7), lease.clone());
        assert_eq!(a.take_attached(ID, event), Some((secs(7), lease.clone())));
        a.attached(ID, secs(6), lease.clone());
        assert_eq!(a.take_attached(ID, event), None);
        assert_eq!(a.take_attached(ID, Some(5_000_000_000)), None);
        a.attached(ID, secs(8), lease.clone());
        assert_eq!(a.take_attached(ID, None), None);
        assert_eq!(a.take_attached(ID, event), None);
        a.attached(ID, secs(8), lease);
        a.destroyed(ID);
        assert_eq!(a.known(), 0);
        assert_eq!(a.take_attached(ID, event), None);
        assert!(
            a.connected(&attrs(&[("container", ID), ("type", "null")]))
                .is_none()
        );
    }
}
