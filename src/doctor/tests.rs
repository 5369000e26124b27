//! Unit tests of doctor's pure checks and of the text it prints.

use super::*;
use crate::docker::SubnetConfig;

fn net(range: Option<&str>, icc: bool) -> NetworkInfo {
    NetworkInfo {
        id: "n".into(),
        name: "bridge".into(),
        bridge: "docker0".into(),
        v4: vec![SubnetConfig {
            subnet: "172.17.0.0/16".parse().unwrap(),
            gateway: None,
            ip_range: range.map(|r| r.parse().unwrap()),
            aux: vec![],
        }],
        v6: vec![],
        mtu: None,
        endpoints: vec![crate::docker::Endpoint {
            ip: "172.17.255.254".parse().unwrap(),
            container: "other".into(),
        }],
        icc,
        masquerade: true,
    }
}

#[test]
fn every_bite_is_found() {
    let lease = Lease::sample("a", "web", "172.17.255.254");
    let checks = network_checks(
        &net(None, false),
        &[&lease],
        &Some(false),
        Some("-A POSTROUTING -s 10.0.0.0/8 -j MASQUERADE"),
    );
    let failing: Vec<(&str, Status)> = checks
        .iter()
        .filter(|c| c.status != Status::Ok)
        .map(|c| (c.check, c.status))
        .collect();
    assert_eq!(
        failing,
        vec![
            ("bridge", Status::Fail),
            ("icc", Status::Warn),
            ("fixed-cidr", Status::Warn),
            ("masquerade", Status::Fail),
            ("collision", Status::Fail),
        ]
    );
    let healthy = network_checks(
        &net(Some("172.17.0.0/17"), true),
        &[],
        &Some(true),
        Some("-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE"),
    );
    assert!(
        healthy.iter().all(|c| c.status == Status::Ok),
        "{healthy:?}"
    );
    assert_eq!(ip_forward("0").status, Status::Fail);
    assert_eq!(ip_forward("1").status, Status::Ok);
    assert!(text(&checks).contains("fix: ip link set docker0 up"));
}
