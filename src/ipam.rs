//! Pure IPv4 address management: subnets, Docker's allocation range and the choice of a free
//! address. No side effects; the caller gathers the taken set (our leases, Docker's endpoints,
//! the gateway, aux addresses) and passes it in.
//!
//! Docker hands out the *lowest* free address, and only inside `IPRange` (`fixed-cidr`) when the
//! network has one. So we pick outside that range when there is one (and never inside it: a full
//! outside is an exhaustion), and from the top of the subnet downward otherwise: the two
//! allocators meet only when the subnet is nearly full.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

use ipnet::IpNet;

/// An address as a number, the key of every taken set: IPv4 in the low 32 bits.
pub fn key(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// An IPv4 or IPv6 network in CIDR form, normalised to its network address (an
/// [`ipnet::IpNet`] with its host bits cleared).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet(IpNet);

impl Subnet {
    pub fn new(addr: IpAddr, prefix_len: u8) -> Result<Self, String> {
        let bits = if addr.is_ipv6() { 128 } else { 32 };
        IpNet::new(addr, prefix_len)
            .map(|n| Subnet(n.trunc()))
            .map_err(|_| format!("prefix length {prefix_len} is larger than {bits}"))
    }

    pub fn prefix_len(&self) -> u8 {
        self.0.prefix_len()
    }

    pub fn is_ipv6(&self) -> bool {
        matches!(self.0, IpNet::V6(_))
    }

    /// The address numbered `n` (a key of this subnet's family, see [`key`]).
    pub fn addr(&self, n: u128) -> IpAddr {
        if self.is_ipv6() {
            IpAddr::from(n.to_be_bytes())
        } else {
            // Only ever called with numbers of this (IPv4) subnet, which fit in 32 bits.
            IpAddr::V4(Ipv4Addr::from(n as u32))
        }
    }

    pub fn network(&self) -> IpAddr {
        self.0.network()
    }

    /// The last address of the subnet (the broadcast address of an IPv4 subnet up to /30).
    pub fn broadcast(&self) -> IpAddr {
        self.0.broadcast()
    }

    /// The network address as a number.
    fn start(&self) -> u128 {
        key(self.network())
    }

    /// The last address as a number.
    fn last(&self) -> u128 {
        key(self.broadcast())
    }

    /// The first address a host may use (conventionally the gateway's).
    pub fn first_host(&self) -> Option<IpAddr> {
        self.usable().map(|(first, _)| self.addr(first))
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip)
    }

    /// First and last address a host may use, or `None` when there is no room. IPv4 loses the
    /// network and broadcast addresses (so /31 and /32 have none); IPv6 loses the
    /// subnet-router anycast address (the network address).
    fn usable(&self) -> Option<(u128, u128)> {
        let len = self.prefix_len();
        match self.is_ipv6() {
            false => (len <= 30).then(|| (self.start() + 1, self.last() - 1)),
            true => (len < 128).then(|| (self.start() + 1, self.last())),
        }
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network(), self.prefix_len())
    }
}

impl FromStr for Subnet {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, len) = s
            .split_once('/')
            .ok_or_else(|| format!("'{s}' is not in CIDR form (ADDRESS/PREFIX)"))?;
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("'{s}': '{addr}' is not an IP address"))?;
        let len: u8 = len
            .parse()
            .map_err(|_| format!("'{s}': '{len}' is not a prefix length"))?;
        Subnet::new(addr, len).map_err(|e| format!("'{s}': {e}"))
    }
}

/// As its CIDR text (`10.9.0.0/16`), as in lease files and JSON records.
impl serde::Serialize for Subnet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Subnet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Why an address cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpamError {
    #[error("{ip} is outside the subnet {subnet}")]
    OutsideSubnet { ip: IpAddr, subnet: Subnet },
    #[error("{ip} is the network address of {subnet}")]
    NetworkAddress { ip: IpAddr, subnet: Subnet },
    #[error("{ip} is the broadcast address of {subnet}")]
    BroadcastAddress { ip: IpAddr, subnet: Subnet },
    #[error("{ip} is already in use (gateway, a Docker endpoint or another lease)")]
    Taken { ip: IpAddr },
    #[error("no free address left in {subnet}")]
    Exhausted { subnet: Subnet },
    /// Every address outside Docker's range is taken; those inside it are Docker's to hand out.
    #[error("no free address left in {subnet} outside Docker's range {range} (IPRange/fixed-cidr)")]
    RangeFull { subnet: Subnet, range: Subnet },
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
    pub fn check(&self, ip: IpAddr, taken: &BTreeSet<u128>) -> Result<(), IpamError> {
        let subnet = self.subnet;
        if !subnet.contains(ip) {
            return Err(IpamError::OutsideSubnet { ip, subnet });
        }
        if let Some((first, last)) = subnet.usable() {
            if key(ip) < first {
                return Err(IpamError::NetworkAddress { ip, subnet });
            }
            if key(ip) > last {
                return Err(IpamError::BroadcastAddress { ip, subnet });
            }
        }
        if taken.contains(&key(ip)) {
            return Err(IpamError::Taken { ip });
        }
        Ok(())
    }

    /// Docker's range when it fences off part of the subnet: `None` without a range, or with
    /// one that covers the whole subnet (then Docker may hand out any address: unfenced).
    pub fn fence(&self) -> Option<Subnet> {
        self.docker_range.filter(|r| {
            r.is_ipv6() == self.subnet.is_ipv6()
                && !(r.start() <= self.subnet.start() && r.last() >= self.subnet.last())
        })
    }

    /// Whether `ip` lies inside Docker's range (see [`Pool::fence`]): Docker may hand it out.
    pub fn in_fence(&self, ip: IpAddr) -> bool {
        self.fence().is_some_and(|r| r.contains(ip))
    }

    /// Chooses the highest free address outside Docker's range. When everything outside it is
    /// taken the pool is exhausted: an address inside the range would be handed out again by
    /// Docker, so it is never chosen (an explicit one passes [`Pool::check`]).
    /// Costs O(number of taken addresses above the result).
    pub fn choose(&self, taken: &BTreeSet<u128>) -> Result<IpAddr, IpamError> {
        let exhausted = IpamError::Exhausted {
            subnet: self.subnet,
        };
        let (first, last) = self.subnet.usable().ok_or(exhausted.clone())?;
        let fence = self.fence();
        let skip = fence.map(|r| (r.start(), r.last()));
        match (highest_free(first, last, skip, taken), fence) {
            (Some(n), _) => Ok(self.subnet.addr(n)),
            (None, Some(range)) => Err(IpamError::RangeFull {
                subnet: self.subnet,
                range,
            }),
            (None, None) => Err(exhausted),
        }
    }
}

/// Highest address in `first..=last` that is neither in `taken` nor in the `skip` range.
fn highest_free(
    first: u128,
    last: u128,
    skip: Option<(u128, u128)>,
    taken: &BTreeSet<u128>,
) -> Option<u128> {
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

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }
    fn set(v: &[&str]) -> BTreeSet<u128> {
        v.iter().map(|s| key(ip(s))).collect()
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

    #[test]
    fn subnet_errors_name_the_part_and_ipv6_normalises() {
        let err = |s: &str| s.parse::<Subnet>().unwrap_err();
        assert_eq!(
            err("10.0.0.0"),
            "'10.0.0.0' is not in CIDR form (ADDRESS/PREFIX)"
        );
        assert_eq!(err("x/16"), "'x/16': 'x' is not an IP address");
        assert_eq!(err("1.2.3.4/x"), "'1.2.3.4/x': 'x' is not a prefix length");
        assert_eq!(
            err("1.2.3.4/33"),
            "'1.2.3.4/33': prefix length 33 is larger than 32"
        );
        assert_eq!(
            err("fd00::/129"),
            "'fd00::/129': prefix length 129 is larger than 128"
        );
        let s: Subnet = "fd00:1:2:3::9/48".parse().unwrap();
        assert_eq!(s.to_string(), "fd00:1:2::/48");
        assert_eq!(s.broadcast(), ip("fd00:1:2:ffff:ffff:ffff:ffff:ffff"));
        assert_eq!(s.first_host(), Some(ip("fd00:1:2::1")));
        assert!(s.is_ipv6() && s.prefix_len() == 48);
        assert!(!s.contains(ip("10.0.0.1")) && s.contains(ip("fd00:1:2:9::1")));
        let all: Subnet = "::/0".parse().unwrap();
        assert_eq!(
            all.broadcast(),
            ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")
        );
        assert_eq!("10.1.2.3/32".parse::<Subnet>().unwrap().first_host(), None);
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
            // Outside the range full: exhausted, never inside Docker's range (issue 9).
            (
                "10.0.0.0/29",
                Some("10.0.0.0/30"),
                &["10.0.0.4", "10.0.0.5", "10.0.0.6"],
                Err(()),
            ),
            // The same with the range at the top of the subnet.
            (
                "10.0.0.0/29",
                Some("10.0.0.4/30"),
                &["10.0.0.1", "10.0.0.2", "10.0.0.3"],
                Err(()),
            ),
            // One address left outside, below the range.
            (
                "10.0.0.0/29",
                Some("10.0.0.4/30"),
                &["10.0.0.1", "10.0.0.3"],
                Ok("10.0.0.2"),
            ),
            // A one-address range is skipped too.
            ("10.0.0.0/29", Some("10.0.0.6/32"), &[], Ok("10.0.0.5")),
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
                    matches!(
                        got,
                        Err(IpamError::Exhausted { .. } | IpamError::RangeFull { .. })
                    ),
                    "{subnet} {range:?} {taken:?}: {got:?}"
                ),
            }
        }
    }

    #[test]
    fn a_full_outside_names_docker_range_and_never_goes_inside() {
        let p = pool("10.231.7.0/29", Some("10.231.7.0/30"));
        let mut taken = set(&["10.231.7.1"]);
        let mut got = vec![];
        while let Ok(a) = p.choose(&taken) {
            got.push(a);
            taken.insert(key(a));
        }
        assert_eq!(
            got,
            vec![ip("10.231.7.6"), ip("10.231.7.5"), ip("10.231.7.4")]
        );
        let err = p.choose(&taken).unwrap_err();
        assert_eq!(
            err,
            IpamError::RangeFull {
                subnet: "10.231.7.0/29".parse().unwrap(),
                range: "10.231.7.0/30".parse().unwrap(),
            }
        );
        assert!(err.to_string().contains("10.231.7.0/30"), "{err}");
        // An explicit address inside the range stays possible (the caller warns).
        assert!(p.check(ip("10.231.7.3"), &taken).is_ok());
        assert_eq!(p.fence(), Some("10.231.7.0/30".parse().unwrap()));
        assert!(p.in_fence(ip("10.231.7.3")) && !p.in_fence(ip("10.231.7.4")));
        // A range that covers the whole subnet fences nothing: the subnet is unfenced.
        assert_eq!(pool("10.0.0.0/24", Some("10.0.0.0/24")).fence(), None);
        assert_eq!(pool("10.0.0.0/24", None).fence(), None);
    }

    #[test]
    fn exhaustion_on_a_small_subnet() {
        let p = pool("192.168.50.0/29", None);
        let mut taken = BTreeSet::new();
        let mut got = vec![];
        while let Ok(a) = p.choose(&taken) {
            got.push(a);
            taken.insert(key(a));
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
    fn ipv6_top_down_with_network_and_range() {
        let p = pool("fd00:1::/64", None);
        assert_eq!(
            p.choose(&BTreeSet::new()),
            Ok(ip("fd00:1::ffff:ffff:ffff:ffff"))
        );
        let taken = set(&["fd00:1::ffff:ffff:ffff:ffff"]);
        assert_eq!(p.choose(&taken), Ok(ip("fd00:1::ffff:ffff:ffff:fffe")));
        let r = pool("fd00:1::/64", Some("fd00:1::8000:0:0:0/65"));
        assert_eq!(
            r.choose(&BTreeSet::new()),
            Ok(ip("fd00:1::7fff:ffff:ffff:ffff"))
        );
        assert!(matches!(
            p.check(ip("fd00:1::"), &BTreeSet::new()),
            Err(IpamError::NetworkAddress { .. })
        ));
        assert!(matches!(
            p.check(ip("10.0.0.1"), &BTreeSet::new()),
            Err(IpamError::OutsideSubnet { .. })
        ));
        assert!(p.check(ip("fd00:1::5"), &BTreeSet::new()).is_ok());
        assert_eq!(
            "fd00:1::5/64".parse::<Subnet>().unwrap().to_string(),
            "fd00:1::/64"
        );
    }

    #[test]
    fn sixty_thousand_leases_still_finds_the_gap() {
        let p = pool("10.1.0.0/16", None);
        let taken: BTreeSet<u128> = (key(ip("10.1.10.0"))..key(ip("10.1.255.255"))).collect();
        assert_eq!(p.choose(&taken), Ok(ip("10.1.9.255")));
    }
}
