//! Pure IPv4 address management: subnets, Docker's allocation range and the choice of a free
//! address. No side effects; the caller gathers the taken set (our leases, Docker's endpoints,
//! the gateway, aux addresses) and passes it in.
//!
//! Docker hands out the *lowest* free address, and only inside `IPRange` (`fixed-cidr`) when the
//! network has one. So we pick outside that range when there is one, and from the top of the
//! subnet downward otherwise: the two allocators meet only when the subnet is nearly full.

use std::collections::BTreeSet;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 network in CIDR form, normalised to its network address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    network: u32,
    prefix_len: u8,
}

impl Subnet {
    pub fn new(addr: Ipv4Addr, prefix_len: u8) -> Result<Self, String> {
        if prefix_len > 32 {
            return Err(format!("prefix length {prefix_len} is larger than 32"));
        }
        let network = u32::from(addr) & mask(prefix_len);
        Ok(Subnet {
            network,
            prefix_len,
        })
    }

    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.network)
    }

    /// The last address of the subnet (the broadcast address for prefixes up to /30).
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.last())
    }

    fn last(&self) -> u32 {
        self.network | !mask(self.prefix_len)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix_len) == self.network
    }

    /// First and last address a host may use, or `None` when the subnet has no room (/31, /32).
    fn usable(&self) -> Option<(u32, u32)> {
        (self.prefix_len <= 30).then(|| (self.network + 1, self.last() - 1))
    }
}

fn mask(prefix_len: u8) -> u32 {
    if prefix_len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix_len))
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network(), self.prefix_len)
    }
}

impl FromStr for Subnet {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, len) = s
            .split_once('/')
            .ok_or_else(|| format!("'{s}' is not in CIDR form (A.B.C.D/N)"))?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("'{s}': '{addr}' is not an IPv4 address"))?;
        let len: u8 = len
            .parse()
            .map_err(|_| format!("'{s}': '{len}' is not a prefix length"))?;
        Subnet::new(addr, len).map_err(|e| format!("'{s}': {e}"))
    }
}

/// Why an address cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpamError {
    #[error("{ip} is outside the subnet {subnet}")]
    OutsideSubnet { ip: Ipv4Addr, subnet: Subnet },
    #[error("{ip} is the network address of {subnet}")]
    NetworkAddress { ip: Ipv4Addr, subnet: Subnet },
    #[error("{ip} is the broadcast address of {subnet}")]
    BroadcastAddress { ip: Ipv4Addr, subnet: Subnet },
    #[error("{ip} is already in use (gateway, a Docker endpoint or another lease)")]
    Taken { ip: Ipv4Addr },
    #[error("no free address left in {subnet}")]
    Exhausted { subnet: Subnet },
}

/// Where to allocate: the subnet and the part of it that Docker's own allocator uses.
#[derive(Debug, Clone, Copy)]
pub struct Pool {
    pub subnet: Subnet,
    /// Docker's `IPRange` (`fixed-cidr`): Docker never allocates outside it.
    pub docker_range: Option<Subnet>,
}

impl Pool {
    /// Checks an explicitly requested address.
    pub fn check(&self, ip: Ipv4Addr, taken: &BTreeSet<u32>) -> Result<(), IpamError> {
        let subnet = self.subnet;
        if !subnet.contains(ip) {
            return Err(IpamError::OutsideSubnet { ip, subnet });
        }
        if subnet.prefix_len <= 30 {
            if ip == subnet.network() {
                return Err(IpamError::NetworkAddress { ip, subnet });
            }
            if ip == subnet.broadcast() {
                return Err(IpamError::BroadcastAddress { ip, subnet });
            }
        }
        if taken.contains(&u32::from(ip)) {
            return Err(IpamError::Taken { ip });
        }
        Ok(())
    }

    /// Chooses the highest free address outside Docker's range; when everything outside it is
    /// taken, the highest free address inside it (Docker fills that range from the bottom).
    /// Costs O(number of taken addresses above the result).
    pub fn choose(&self, taken: &BTreeSet<u32>) -> Result<Ipv4Addr, IpamError> {
        let exhausted = IpamError::Exhausted {
            subnet: self.subnet,
        };
        let (first, last) = self.subnet.usable().ok_or(exhausted.clone())?;
        let skip = self
            .docker_range
            .filter(|r| r.network < r.last())
            .map(|r| (r.network, r.last()));
        if let Some(ip) = highest_free(first, last, skip, taken) {
            return Ok(Ipv4Addr::from(ip));
        }
        match skip {
            Some((lo, hi)) => highest_free(lo.max(first), hi.min(last), None, taken)
                .map(Ipv4Addr::from)
                .ok_or(exhausted),
            None => Err(exhausted),
        }
    }
}

/// Highest address in `first..=last` that is neither in `taken` nor in the `skip` range.
fn highest_free(
    first: u32,
    last: u32,
    skip: Option<(u32, u32)>,
    taken: &BTreeSet<u32>,
) -> Option<u32> {
    if first > last {
        return None;
    }
    let mut candidate = last;
    let mut above = taken.range(first..=last).rev().peekable();
    loop {
        if let Some((lo, hi)) = skip {
            if (lo..=hi).contains(&candidate) {
                candidate = lo.checked_sub(1)?;
            }
        }
        if candidate < first {
            return None;
        }
        while above.next_if(|&&t| t > candidate).is_some() {}
        if above.next_if(|&&t| t == candidate).is_none() {
            return Some(candidate);
        }
        candidate = candidate.checked_sub(1)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }
    fn set(v: &[&str]) -> BTreeSet<u32> {
        v.iter().map(|s| u32::from(ip(s))).collect()
    }
    fn pool(subnet: &str, range: Option<&str>) -> Pool {
        Pool {
            subnet: subnet.parse().unwrap(),
            docker_range: range.map(|r| r.parse().unwrap()),
        }
    }

    #[test]
    fn subnet_parsing_normalises_and_rejects_garbage() {
        let s: Subnet = "172.17.3.4/16".parse().unwrap();
        assert_eq!(s.to_string(), "172.17.0.0/16");
        assert_eq!(s.broadcast(), ip("172.17.255.255"));
        for bad in ["172.17.0.0", "172.17.0.0/33", "x/16", "1.2.3.4/x", "/", ""] {
            assert!(bad.parse::<Subnet>().is_err(), "{bad} parsed");
        }
        assert!(
            "0.0.0.0/0"
                .parse::<Subnet>()
                .unwrap()
                .contains(ip("8.8.8.8"))
        );
    }

    /// (subnet, Docker's range, taken, expected address or `Err(())` for exhausted)
    type Case<'a> = (&'a str, Option<&'a str>, &'a [&'a str], Result<&'a str, ()>);

    #[test]
    fn choose_table() {
        let cases: &[Case] = &[
            ("172.17.0.0/16", None, &[], Ok("172.17.255.254")),
            (
                "172.17.0.0/16",
                None,
                &["172.17.255.254"],
                Ok("172.17.255.253"),
            ),
            (
                "172.17.0.0/16",
                None,
                &["172.17.255.254", "172.17.255.253", "172.17.0.2"],
                Ok("172.17.255.252"),
            ),
            // Docker's range at the top: we go below it.
            ("10.0.0.0/24", Some("10.0.0.128/25"), &[], Ok("10.0.0.127")),
            // Docker's range at the bottom: we take the top.
            ("10.0.0.0/24", Some("10.0.0.0/25"), &[], Ok("10.0.0.254")),
            // Outside the range full: fall back to the top of the range.
            (
                "10.0.0.0/29",
                Some("10.0.0.0/30"),
                &["10.0.0.4", "10.0.0.5", "10.0.0.6"],
                Ok("10.0.0.3"),
            ),
            // Gateway excluded by the caller's taken set.
            ("10.0.0.0/30", None, &["10.0.0.2"], Ok("10.0.0.1")),
            ("10.0.0.0/30", None, &["10.0.0.1", "10.0.0.2"], Err(())),
            ("10.0.0.0/31", None, &[], Err(())),
            ("10.0.0.0/32", None, &[], Err(())),
            // Docker range covering the whole subnet.
            ("10.0.0.0/24", Some("10.0.0.0/24"), &[], Ok("10.0.0.254")),
        ];
        for (subnet, range, taken, want) in cases {
            let got = pool(subnet, *range).choose(&set(taken));
            match want {
                Ok(w) => assert_eq!(got, Ok(ip(w)), "{subnet} {range:?} {taken:?}"),
                Err(()) => assert!(
                    matches!(got, Err(IpamError::Exhausted { .. })),
                    "{subnet} {range:?} {taken:?}: {got:?}"
                ),
            }
        }
    }

    #[test]
    fn exhaustion_on_a_small_subnet() {
        let p = pool("192.168.50.0/29", None);
        let mut taken = BTreeSet::new();
        let mut got = vec![];
        while let Ok(a) = p.choose(&taken) {
            got.push(a);
            taken.insert(u32::from(a));
        }
        assert_eq!(got.len(), 6);
        assert_eq!(got[0], ip("192.168.50.6"));
        assert_eq!(got[5], ip("192.168.50.1"));
    }

    #[test]
    fn check_explicit_addresses() {
        let p = pool("172.17.0.0/16", None);
        let taken = set(&["172.17.0.1", "172.17.0.5"]);
        assert!(p.check(ip("172.17.0.110"), &taken).is_ok());
        assert!(matches!(
            p.check(ip("10.0.0.1"), &taken),
            Err(IpamError::OutsideSubnet { .. })
        ));
        assert!(matches!(
            p.check(ip("172.17.0.0"), &taken),
            Err(IpamError::NetworkAddress { .. })
        ));
        assert!(matches!(
            p.check(ip("172.17.255.255"), &taken),
            Err(IpamError::BroadcastAddress { .. })
        ));
        assert!(matches!(
            p.check(ip("172.17.0.5"), &taken),
            Err(IpamError::Taken { .. })
        ));
    }

    #[test]
    fn sixty_thousand_leases_still_finds_the_gap() {
        let p = pool("10.1.0.0/16", None);
        let taken: BTreeSet<u32> =
            (u32::from(ip("10.1.10.0"))..u32::from(ip("10.1.255.255"))).collect();
        assert_eq!(p.choose(&taken), Ok(ip("10.1.9.255")));
    }
}
