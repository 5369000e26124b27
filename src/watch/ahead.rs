//! Attaching ahead of the `start` event. While Docker starts a container it connects it to its
//! networks (a `--network=none` one to the `none` network, driver `null`) and logs that
//! `connect`, ~0.2 s before the `start` event (the runtime creates the process meanwhile). It
//! holds the container's lock all that time, and an inspect waits for that lock: sent at the
//! `connect`, it is answered as soon as the start is done, with the Pid. So the daemon begins
//! the attach of a labelled container at its `connect` to `none`; the attach runs as always
//! once the answer says the container runs (and gives up quietly when it does not: the
//! `start` event's attach, queued behind it, then does the work as before). The `start`
//! event's attach then finds the attachment made and counts it, with its latency from the
//! `start` event to the moment it was done. (Measured with issue 13's watch bench: see
//! docs/benchmarks.md.)
//!
//! Pure: which containers are labelled (a network event does not carry the container's
//! labels, its `create` event does) and when an attach made ahead of a start was done. Only
//! containers created while the daemon follows the events are known here; others are attached
//! on their `start` event.

use std::collections::HashMap;
use std::time::SystemTime;

use super::labels::{Job, Wanted, wanted};

/// Labelled containers remembered at most (their `destroy` forgets them); more are attached
/// on their `start` event only.
pub const MAX_KNOWN: usize = 65_536;

#[derive(Default)]
pub struct Ahead {
    /// Container ID → its name and what its labels ask for, from its `create` event.
    labelled: HashMap<String, (String, Wanted)>,
    /// Container ID → when its attach made ahead of the `start` event was done.
    done: HashMap<String, SystemTime>,
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

    /// The attach begun at the `connect` was done at `at`.
    pub fn attached(&mut self, id: &str, at: SystemTime) {
        if self.labelled.contains_key(id) {
            self.done.insert(id.to_string(), at);
        }
    }

    /// When the attach made ahead of this start was done (once: it is forgotten).
    pub fn take_attached(&mut self, id: &str) -> Option<SystemTime> {
        self.done.remove(id)
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

    fn attrs(kv: &[(&str, &str)]) -> HashMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

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
    fn the_time_it_was_done_is_taken_once_and_destroy_forgets() {
        let mut a = Ahead::default();
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(7);
        // Unknown containers get no record.
        a.attached("x", at);
        assert_eq!(a.take_attached("x"), None);
        a.created(ID, &attrs(&[("na.network", "bridge")]), "na");
        a.attached(ID, at);
        assert_eq!(a.take_attached(ID), Some(at));
        assert_eq!(a.take_attached(ID), None);
        a.attached(ID, at);
        a.destroyed(ID);
        assert_eq!(a.known(), 0);
        assert_eq!(a.take_attached(ID), None);
        assert!(
            a.connected(&attrs(&[("container", ID), ("type", "null")]))
                .is_none()
        );
    }
}
