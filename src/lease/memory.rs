//! Tests only: the [`Store`] interface in memory, and the tests run against it — the contract
//! every store keeps (run against [`DiskStore`] too) and the allocator over a store.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use anyhow::Result;

use super::{Held, InsertError, Lease, Store, StoreLock, Taken};

/// Leases by (network id, IPv4 address); a dual-stack lease holds its IPv6 address as well.
#[derive(Debug, Default)]
pub(crate) struct MemStore {
    leases: RefCell<BTreeMap<(String, Ipv4Addr), Lease>>,
}

impl MemStore {
    pub(crate) fn new() -> MemStore {
        MemStore::default()
    }

    /// A store holding `leases` (inserted in order; a taken address panics).
    pub(crate) fn with(leases: &[Lease]) -> MemStore {
        let store = MemStore::new();
        if let Ok(lock) = store.lock() {
            for l in leases {
                assert!(store.insert(&lock, l).is_ok(), "{} is taken", l.v4.ip);
            }
        }
        store
    }

    fn holder(&self, network_id: &str, ip: IpAddr) -> bool {
        self.leases.borrow().values().any(|l| {
            l.network_id == network_id
                && (IpAddr::V4(l.v4.ip) == ip || l.ip6().map(IpAddr::V6) == Some(ip))
        })
    }
}

impl Store for MemStore {
    fn lock(&self) -> Result<StoreLock> {
        Ok(StoreLock {
            _held: Held::Memory,
        })
    }

    fn taken(&self, network_id: &str) -> Result<Taken> {
        let mut taken = Taken::default();
        for l in self.leases.borrow().values() {
            if l.network_id == network_id {
                taken.v4.insert(crate::ipam::key(IpAddr::V4(l.v4.ip)));
                if let Some(ip6) = l.ip6() {
                    taken.v6.insert(crate::ipam::key(IpAddr::V6(ip6)));
                }
            }
        }
        Ok(taken)
    }

    fn find(&self, container_id: &str, network_id: &str) -> Result<Option<Lease>> {
        Ok(self
            .leases
            .borrow()
            .values()
            .find(|l| l.container_id == container_id && l.network_id == network_id)
            .cloned())
    }

    fn of_container(&self, container_id: &str) -> Result<Vec<Lease>> {
        Ok(self
            .leases
            .borrow()
            .values()
            .filter(|l| l.container_id == container_id)
            .cloned()
            .collect())
    }

    fn all(&self) -> Result<Vec<Lease>> {
        let mut all: Vec<Lease> = self.leases.borrow().values().cloned().collect();
        all.sort_by_key(|l| (l.network.clone(), u32::from(l.v4.ip)));
        Ok(all)
    }

    /// Like the disk store: the IPv6 address is claimed first, so its refusal is reported first.
    fn insert(&self, _lock: &StoreLock, lease: &Lease) -> Result<(), InsertError> {
        let wanted = lease
            .ip6()
            .map(IpAddr::V6)
            .into_iter()
            .chain([IpAddr::V4(lease.v4.ip)]);
        for ip in wanted {
            if self.holder(&lease.network_id, ip) {
                return Err(InsertError::Taken(ip));
            }
        }
        self.leases
            .borrow_mut()
            .insert((lease.network_id.clone(), lease.v4.ip), lease.clone());
        Ok(())
    }

    fn mark_complete(&self, _lock: &StoreLock, lease: &Lease) -> Result<()> {
        let mut done = lease.clone();
        done.complete = true;
        self.leases
            .borrow_mut()
            .insert((lease.network_id.clone(), lease.v4.ip), done);
        Ok(())
    }

    fn remove(&self, _lock: &StoreLock, lease: &Lease) -> Result<()> {
        let key = (lease.network_id.clone(), lease.v4.ip);
        let mut leases = self.leases.borrow_mut();
        if leases
            .get(&key)
            .is_some_and(|l| l.container_id == lease.container_id)
        {
            leases.remove(&key);
        }
        Ok(())
    }
}

mod tests {
    use super::*;
    use crate::docker::{Endpoint, NetworkInfo, SubnetConfig};
    use crate::ipam::{Subnet, key};
    use crate::lease::DiskStore;
    use crate::lease::tests::lease;

    /// What every store keeps: adapted from the store tests of the disk backend (round trip,
    /// completion, dual stack, never twice).
    fn store_contract(s: &dyn Store) {
        let lock = s.lock().unwrap();
        let k = |ip: &str| key(ip.parse().unwrap());

        // Round trip.
        let a = lease("aaa", "172.17.255.254");
        s.insert(&lock, &a).unwrap();
        assert_eq!(s.find("aaa", "netid").unwrap(), Some(a.clone()));
        assert_eq!(s.find("bbb", "netid").unwrap(), None);
        assert_eq!(s.find("aaa", "other").unwrap(), None);
        assert_eq!(
            s.taken("netid").unwrap().v4,
            [k("172.17.255.254")].into_iter().collect()
        );
        assert_eq!(s.taken("other").unwrap(), Taken::default());
        assert_eq!(s.of_container("aaa").unwrap(), vec![a.clone()]);
        assert_eq!(s.all().unwrap(), vec![a.clone()]);
        s.remove(&lock, &a).unwrap();
        s.remove(&lock, &a).unwrap();
        assert_eq!(s.find("aaa", "netid").unwrap(), None);
        assert_eq!(s.taken("netid").unwrap(), Taken::default());

        // Completion.
        let mut c = lease("ccc", "10.0.0.4");
        c.complete = false;
        s.insert(&lock, &c).unwrap();
        assert!(!s.find("ccc", "netid").unwrap().unwrap().complete);
        s.mark_complete(&lock, &c).unwrap();
        assert!(s.find("ccc", "netid").unwrap().unwrap().complete);
        s.remove(&lock, &c).unwrap();

        // Dual stack: both addresses are taken; a loser leaves nothing.
        let mut a = lease("aaa", "10.0.0.5");
        a.v6 = Some(crate::attachment::V6Part::sample("fd00::5"));
        s.insert(&lock, &a).unwrap();
        let taken = s.taken("netid").unwrap();
        assert_eq!((taken.v4.len(), taken.v6.len()), (1, 1));
        assert!(taken.v6.contains(&k("fd00::5")));
        assert_eq!(s.all().unwrap(), vec![a.clone()]);
        let mut b = lease("bbb", "10.0.0.6");
        b.v6 = a.v6;
        assert!(matches!(
            s.insert(&lock, &b),
            Err(InsertError::Taken(IpAddr::V6(_)))
        ));
        assert_eq!(s.taken("netid").unwrap().v4.len(), 1);

        // Never twice; the loser's removal does not delete the winner's lease.
        let b = lease("bbb", "10.0.0.5");
        assert!(matches!(
            s.insert(&lock, &b),
            Err(InsertError::Taken(IpAddr::V4(_)))
        ));
        s.remove(&lock, &b).unwrap();
        assert_eq!(s.find("aaa", "netid").unwrap(), Some(a.clone()));
        s.remove(&lock, &a).unwrap();
        assert_eq!(s.taken("netid").unwrap(), Taken::default());
        assert!(s.all().unwrap().is_empty());
    }

    #[test]
    fn the_disk_store_keeps_the_contract() {
        let d = tempfile::tempdir().unwrap();
        store_contract(&DiskStore::open(&d.path().join("state")).unwrap());
    }

    #[test]
    fn the_memory_store_keeps_the_contract() {
        store_contract(&MemStore::new());
    }

    fn net(subnet: &str, gateway: &str) -> NetworkInfo {
        NetworkInfo {
            id: "netid".into(),
            name: "n".into(),
            bridge: "br-n".into(),
            v4: vec![SubnetConfig {
                subnet: subnet.parse::<Subnet>().unwrap(),
                gateway: Some(gateway.parse().unwrap()),
                ip_range: None,
                aux: vec![],
            }],
            v6: vec![],
            mtu: None,
            endpoints: vec![Endpoint {
                ip: "10.9.0.6".parse().unwrap(),
                container: "docker-own".into(),
            }],
            icc: true,
            masquerade: true,
        }
    }

    /// The allocator against a store: a /29 fills up through `insert` with what it picks from
    /// `taken`, never picking the gateway, a Docker endpoint, the network or the broadcast
    /// address, until it is
    /// exhausted; an explicit address that is taken is refused with its holder's name.
    #[test]
    fn the_allocator_fills_a_29_from_what_the_store_holds() {
        let store = MemStore::new();
        let lock = store.lock().unwrap();
        let n = net("10.9.0.0/29", "10.9.0.1");
        let gw = crate::address::gateways(&n.v4, &[]);
        let mut picked = Vec::new();
        let err = loop {
            let cid = format!("c{}", picked.len());
            match crate::attach::pick_addresses(Some(&store), &n, &gw, &[], (None, None)) {
                Ok((_, v4, v6)) => {
                    assert!(v6.is_none());
                    store
                        .insert(&lock, &lease(&cid, &v4.ip.to_string()))
                        .unwrap();
                    picked.push(v4.ip);
                }
                Err(e) => break e,
            }
        };
        picked.sort();
        let want: Vec<Ipv4Addr> = (2..=5).map(|h| Ipv4Addr::new(10, 9, 0, h)).collect();
        assert_eq!(picked, want);
        assert!(
            format!("{err:#}").contains("no free address left in 10.9.0.0/29"),
            "{err:#}"
        );
        assert_eq!(store.taken("netid").unwrap().v4.len(), 4);

        // An explicit taken address is refused and its holder named; a freed one is given.
        let holder = store.find("c0", "netid").unwrap().unwrap();
        let want = Some(holder.v4.ip);
        let err =
            crate::attach::pick_addresses(Some(&store), &n, &gw, &[], (want, None)).unwrap_err();
        assert!(format!("{err:#}").contains("name-c0"), "{err:#}");
        store.remove(&lock, &holder).unwrap();
        let (taken, v4, _) =
            crate::attach::pick_addresses(Some(&store), &n, &gw, &[], (None, None)).unwrap();
        assert_eq!((v4.ip, taken.v4.len()), (holder.v4.ip, 3));
        // The gateway is never given, even when asked for.
        let gw_ip = Some(Ipv4Addr::new(10, 9, 0, 1));
        assert!(crate::attach::pick_addresses(Some(&store), &n, &gw, &[], (gw_ip, None)).is_err());
    }

    /// A taken set read ahead of the lock is confirmed under it: an address leased after the
    /// read (missing from it) is not given twice, an address freed after it (still in it) is
    /// merely skipped, and an explicit address refused by the stale set is judged by the store.
    #[test]
    fn a_pick_from_a_taken_set_read_ahead_never_gives_an_address_leased_since() {
        use crate::attach::pick_addresses_ahead;
        let store = MemStore::new();
        let lock = store.lock().unwrap();
        let n = net("10.9.0.0/29", "10.9.0.1");
        let gw = crate::address::gateways(&n.v4, &[]);
        let pick = |ahead: Option<Taken>, want| {
            pick_addresses_ahead(Some(&store), ahead, &n, &gw, &[], (want, None))
        };
        let before = store.taken("netid").unwrap();
        let first = pick(Some(before.clone()), None).unwrap().1.ip;
        // Another attach leases that address after the read-ahead.
        store
            .insert(&lock, &lease("other", &first.to_string()))
            .unwrap();
        let (taken, v4, _) = pick(Some(before.clone()), None).unwrap();
        assert_ne!(v4.ip, first);
        assert!(taken.v4.contains(&crate::ipam::key(IpAddr::V4(first))));
        // Read ahead while "other" held it, freed since: skipped, still a free address.
        let stale = store.taken("netid").unwrap();
        let holder = store.find("other", "netid").unwrap().unwrap();
        store.remove(&lock, &holder).unwrap();
        let (_, v4, _) = pick(Some(stale.clone()), None).unwrap();
        assert!(!store.leased("netid", IpAddr::V4(v4.ip)).unwrap());
        // Asked for explicitly, the freed address is given (the stale set alone refused it).
        assert_eq!(pick(Some(stale), Some(first)).unwrap().1.ip, first);
        // Without a read-ahead: as pick_addresses.
        assert_eq!(pick(None, None).unwrap().1.ip, first);
    }
}
