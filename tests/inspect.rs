//! `inspect CONTAINER...`: every attachment of each container, one JSON array, like
//! `docker inspect`. Root and Docker.

mod common;
mod support;

use common::{Container, Network, Tool, need_docker, ok, stderr, stdout};
use support::test_ip;

#[test]
fn inspect_shows_every_attachment_of_each_container() {
    if !need_docker() {
        return;
    }
    let tool = Tool::new();
    let web = Container::none("na-t-insp");
    let db = Container::none("na-t-inspd");
    let idle = Container::none("na-t-inspi");
    let net = Network::create("na-t-inspn", &[]);
    let ip = test_ip();
    tool.ok(&[&web.name, "--ip", &ip]);
    let ip2 = tool.ok(&["attach", &web.name, "--network", &net.0]);
    let ip3 = test_ip();
    tool.ok(&[&db.name, "--ip", &ip3]);

    // By name and by ID prefix; a container named twice is shown once.
    let o = tool.run(&["inspect", &web.name, &db.id[..12], &web.name]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Vec<serde_json::Value> = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v.len(), 3, "{v:#?}");
    let of = |name: &str| {
        v.iter()
            .filter(|r| r["container_name"] == name)
            .collect::<Vec<_>>()
    };
    let w = of(&web.name);
    assert_eq!(w.len(), 2);
    let ips: Vec<&str> = w.iter().map(|r| r["ip"].as_str().unwrap()).collect();
    assert!(
        ips.contains(&ip.as_str()) && ips.contains(&ip2.as_str()),
        "{ips:?}"
    );
    assert!(w.iter().any(|r| r["network"] == net.0.as_str()));
    for r in &v {
        assert_eq!(r["status"], "attached", "{r}");
        assert_eq!(
            r["netns_link"],
            format!("/var/run/netns/{}", r["netns_name"].as_str().unwrap())
        );
    }
    assert_eq!(of(&db.name)[0]["ip"], ip3.as_str());

    // A stopped container's attachments are stale.
    ok("docker", &["stop", "-t", "0", &db.name]);
    let v: Vec<serde_json::Value> = serde_json::from_str(&tool.ok(&["inspect", &db.name])).unwrap();
    assert_eq!(v.len(), 1);
    assert_eq!(v[0]["status"], "stale");

    // Unknown and unattached names: exit 1, named, and what was found is still printed.
    let o = tool.run(&["inspect", &web.name, &idle.name, "na-t-no-such-xyz"]);
    assert_eq!(o.status.code(), Some(1));
    let v: Vec<serde_json::Value> = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v.len(), 2);
    let err = stderr(&o);
    assert!(
        err.contains(&format!("container '{}' is not attached", idle.name)),
        "{err}"
    );
    assert!(err.contains("no attachment of 'na-t-no-such-xyz'"), "{err}");
    assert_eq!(tool.run(&["inspect"]).status.code(), Some(2));

    tool.ok(&["detach", &web.name]);
    tool.ok(&["detach", &db.name]);
    assert_eq!(tool.lease_count(), 0);
}
