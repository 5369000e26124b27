//! The daemon's network facts: what an inspect of a network said, kept until Docker reports a
//! change on its event stream (a network created, destroyed, or a container connected to or
//! disconnected from one: its endpoints are part of the facts). A new connection to Docker
//! starts with an empty cache (events may have been missed). Side effects: none (memory).
//!
//! An answer that was in flight while a change was reported is not kept: every change bumps a
//! generation, and an answer is stored only under the generation it was asked in.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::model::NetworkInfo;

#[derive(Default)]
pub struct NetworkCache {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    generation: u64,
    networks: HashMap<String, NetworkInfo>,
}

impl NetworkCache {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The facts of the network asked for by `name` (as asked: name or ID), if kept.
    pub fn get(&self, name: &str) -> Option<NetworkInfo> {
        self.inner().networks.get(name).cloned()
    }

    /// The generation to pass to [`put`](Self::put) for an inspect starting now.
    pub fn generation(&self) -> u64 {
        self.inner().generation
    }

    /// Keeps the answer of an inspect that started in `generation`, unless a change was
    /// reported since.
    pub fn put(&self, name: &str, info: &NetworkInfo, generation: u64) {
        let mut inner = self.inner();
        if inner.generation == generation {
            inner.networks.insert(name.to_string(), info.clone());
        }
    }

    /// Docker reported a change of the network with ID `id` (and name `name`, when the event
    /// says): its facts are forgotten, however they were asked for; an event that names no
    /// network forgets everything. Other networks' facts stay (every container start connects
    /// it to some network, `none` for a bare one).
    pub fn forget(&self, id: &str, name: Option<&str>) {
        let mut inner = self.inner();
        inner.generation += 1;
        if id.is_empty() {
            inner.networks.clear();
            return;
        }
        inner.networks.retain(|asked, n| {
            n.id != id && !id.starts_with(asked.as_str()) && Some(n.name.as_str()) != name
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(id: &str) -> NetworkInfo {
        NetworkInfo {
            id: id.into(),
            name: "bridge".into(),
            bridge: "docker0".into(),
            v4: vec![],
            v6: vec![],
            mtu: None,
            endpoints: vec![],
            icc: true,
            masquerade: true,
        }
    }

    #[test]
    fn kept_until_a_change_and_an_answer_from_before_a_change_is_dropped() {
        let cache = NetworkCache::default();
        assert_eq!(cache.get("bridge"), None);
        let g = cache.generation();
        cache.put("bridge", &net("n1"), g);
        assert_eq!(cache.get("bridge").map(|n| n.id), Some("n1".into()));
        // Another network's change leaves it.
        cache.forget("othernet", Some("other"));
        assert!(cache.get("bridge").is_some());
        // An inspect in flight when a change is reported...
        let in_flight = cache.generation();
        cache.forget("n1", Some("bridge"));
        assert_eq!(cache.get("bridge"), None);
        // ...is not kept: it may describe the network as it was.
        cache.put("bridge", &net("n1"), in_flight);
        assert_eq!(cache.get("bridge"), None);
        let g = cache.generation();
        cache.put("bridge", &net("n2"), g);
        assert_eq!(cache.get("bridge").map(|n| n.id), Some("n2".into()));
        // Asked by an ID prefix, forgotten by the full ID; an event without an ID forgets all.
        cache.put("n2", &net("n2"), cache.generation());
        cache.put("n3ab", &net("n3abcdef"), cache.generation());
        cache.forget("n3abcdef", None);
        assert!(cache.get("n3ab").is_none() && cache.get("n2").is_some());
        cache.forget("", None);
        assert!(cache.get("bridge").is_none() && cache.get("n2").is_none());
    }
}
