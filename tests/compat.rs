//! Lease files and `--json` records written by earlier versions read back, and are written
//! again, byte for byte. The fixtures under tests/fixtures/ were written by the code before the
//! attachment record got its typed IPv4/IPv6 parts (issue 12); they must never be regenerated.
//! Pure: no root, no Docker.

use docker_netattach::lease::parse_lease;
use docker_netattach::list::Status;
use docker_netattach::output::Record;

const LEASE_V4: &str = include_str!("fixtures/lease-v4.json");
const LEASE_DUAL: &str = include_str!("fixtures/lease-dual.json");
const RECORD_V4: &str = include_str!("fixtures/record-v4.json");
const RECORD_DUAL: &str = include_str!("fixtures/record-dual.json");

/// What the lease store writes: `to_vec_pretty` and a newline.
fn lease_text<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).unwrap() + "\n"
}

#[test]
fn an_ipv4_lease_of_the_old_format_loads_and_is_written_identically() {
    let l = parse_lease(LEASE_V4.into()).unwrap();
    assert_eq!(l.container_name, "web");
    assert!(l.complete && l.default_route);
    assert_eq!(lease_text(&l), LEASE_V4);
}

#[test]
fn a_dual_stack_lease_of_the_old_format_loads_and_is_written_identically() {
    let l = parse_lease(LEASE_DUAL.into()).unwrap();
    assert_eq!(l.container_name, "blue");
    assert!(!l.complete);
    assert_eq!(l.dns.len(), 2);
    assert_eq!(lease_text(&l), LEASE_DUAL);
}

#[test]
fn an_old_lease_without_default_route_or_complete_reads_as_complete() {
    let text = LEASE_V4.replace(
        ",\n  \"default_route\": true,\n  \"complete\": true\n",
        "\n",
    );
    assert!(!text.contains("complete"));
    let l = parse_lease(text).unwrap();
    assert!(l.complete);
    assert!(!l.default_route);
}

#[test]
fn the_json_records_of_list_and_attach_keep_their_shape() {
    let v4 = parse_lease(LEASE_V4.into()).unwrap();
    assert_eq!(
        lease_text(&Record::new(&v4, Some(Status::Stale))),
        RECORD_V4
    );
    let dual = parse_lease(LEASE_DUAL.into()).unwrap();
    assert_eq!(lease_text(&Record::new(&dual, None)), RECORD_DUAL);
}
