//! Property tests over the parsers that read outside input: address and CIDR arguments, lease
//! files, the Docker network JSON, labels and names, the command line. Whatever the input: an
//! error or a value, never a panic; and what parses round-trips. Bounded (proptest's default
//! 256 cases per property; PROPTEST_CASES raises it), so it runs in CI.

use std::net::IpAddr;

use docker_netattach::cli::Cli;
use docker_netattach::docker::network_info;
use docker_netattach::ipam::{Pool, Subnet};
use docker_netattach::lease::parse_lease;
use docker_netattach::names::{validate_ifname, validate_netns_name};
use proptest::prelude::*;

fn cidr_like() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[0-9./:a-f]{0,45}",
        (any::<[u8; 4]>(), 0u8..40)
            .prop_map(|(a, l)| format!("{}.{}.{}.{}/{l}", a[0], a[1], a[2], a[3])),
        (any::<u128>(), 0u8..140).prop_map(|(a, l)| format!("{}/{l}", std::net::Ipv6Addr::from(a))),
    ]
}

proptest! {
    #[test]
    fn subnets_parse_or_refuse_and_round_trip(s in cidr_like()) {
        if let Ok(subnet) = s.parse::<Subnet>() {
            let again: Subnet = subnet.to_string().parse().unwrap();
            prop_assert_eq!(again, subnet);
            prop_assert!(subnet.contains(subnet.network()));
        }
    }

    #[test]
    fn the_allocator_never_hands_out_a_taken_or_outside_address(
        net in any::<[u8; 4]>(),
        len in 16u8..31,
        taken in proptest::collection::btree_set(any::<u16>(), 0..300),
    ) {
        let subnet = Subnet::new(IpAddr::from(net), len).unwrap();
        let base = docker_netattach::ipam::key(subnet.network());
        let taken: std::collections::BTreeSet<u128> = taken.into_iter().map(|t| base + u128::from(t)).collect();
        let pool = Pool { subnet, docker_range: None };
        if let Ok(ip) = pool.choose(&taken) {
            prop_assert!(subnet.contains(ip));
            prop_assert!(!taken.contains(&docker_netattach::ipam::key(ip)));
            prop_assert!(pool.check(ip, &taken).is_ok());
        }
    }

    #[test]
    fn lease_files_never_panic(text in any::<String>()) {
        let _ = parse_lease(text);
    }

    #[test]
    fn lease_like_json_never_panics(
        ip in "[0-9.:a-z]{0,20}",
        name in any::<String>(),
        len in any::<u8>(),
    ) {
        let json = serde_json::json!({
            "container_id": name, "container_name": "x", "network": "n", "network_id": "n",
            "bridge": "b", "ip": ip, "prefix_len": len, "gateway": "10.0.0.1", "mac": "",
            "host_ifname": "vna0", "ifname": "eth0", "netns_name": name, "pid": 1,
            "netns_dev": 1, "netns_ino": 1,
        });
        if let Ok(lease) = parse_lease(json.to_string()) {
            prop_assert!(lease.v4.prefix_len <= 32);
            prop_assert!(!lease.netns_name.contains('/'));
        }
    }

    #[test]
    fn network_json_never_panics(
        subnet in cidr_like(),
        gateway in cidr_like(),
        range in cidr_like(),
        mtu in any::<String>(),
        driver in prop_oneof![Just("bridge".to_string()), any::<String>()],
    ) {
        let json = serde_json::json!({
            "Id": "0123456789abcdef", "Name": "n", "Driver": driver, "EnableIPv6": true,
            "IPAM": {"Config": [{"Subnet": subnet, "Gateway": gateway, "IPRange": range,
                                 "AuxiliaryAddresses": {"a": gateway}}]},
            "Options": {"com.docker.network.driver.mtu": mtu},
            "Containers": {"c": {"IPv4Address": subnet, "IPv6Address": range}},
        });
        if let Ok(n) = serde_json::from_value(json) {
            if let Ok(info) = network_info(n, "n") {
                prop_assert!(!info.v4.is_empty());
                for c in info.v4.iter().chain(&info.v6) {
                    if let Some(g) = c.gateway {
                        prop_assert!(c.subnet.contains(g));
                    }
                }
            }
        }
    }

    #[test]
    fn names_that_reach_the_filesystem_or_kernel_are_safe(name in any::<String>()) {
        if validate_netns_name(&name).is_ok() {
            prop_assert!(!name.contains('/') && name != "." && name != ".." && name.len() <= 64);
        }
        if validate_ifname(&name).is_ok() {
            prop_assert!(!name.contains('/') && name.len() <= 15 && !name.is_empty());
        }
    }

    #[test]
    fn the_command_line_never_panics(args in proptest::collection::vec(
        prop_oneof![
            Just("attach".to_string()), Just("detach".to_string()), Just("--ip".to_string()),
            Just("--netns".to_string()), Just("--bridge".to_string()), Just("--subnet".to_string()),
            Just("--dns".to_string()), Just("--dry-run".to_string()), any::<String>(),
        ],
        0..6,
    )) {
        let mut argv = vec!["docker-netattach".to_string()];
        argv.extend(args);
        let _ = Cli::parse_args(&argv);
    }
}
