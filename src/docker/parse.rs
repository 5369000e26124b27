//! Pure: Docker's inspect JSON (bollard's models) → the model types the commands use
//! (`ContainerInfo`, `NetworkInfo`). No I/O; `docker.rs` fetches, this module reads.

use std::collections::HashMap;
use std::net::IpAddr;

use anyhow::{Result, anyhow, bail};
use bollard::models::{ContainerInspectResponse, NetworkInspect};

use crate::ipam::Subnet;
pub use crate::model::{ContainerInfo, Endpoint, NetworkInfo, SubnetConfig};

/// Pure: the parts of `GET /containers/{id}/json` we use.
pub fn container_info(c: ContainerInspectResponse, asked: &str) -> Result<ContainerInfo> {
    let id =
        c.id.ok_or_else(|| anyhow!("Docker returned container '{asked}' without an ID"))?;
    let name = c
        .name
        .map(|n| n.trim_start_matches('/').to_string())
        .unwrap_or_else(|| id.chars().take(12).collect());
    let state = c.state.unwrap_or_default();
    let running = state.running.unwrap_or(false);
    let pid = state.pid.unwrap_or(0);
    let pid = u32::try_from(pid).map_err(|_| anyhow!("container '{name}' has Pid {pid}"))?;
    let network_mode = c
        .host_config
        .and_then(|h| h.network_mode)
        .unwrap_or_default();
    let docker_networks = c
        .network_settings
        .and_then(|n| n.networks)
        .map(|n| n.keys().filter(|k| *k != "none").count())
        .unwrap_or(0);
    Ok(ContainerInfo {
        id,
        name,
        running: running && pid > 0,
        pid,
        network_mode,
        docker_networks,
    })
}

/// Pure: the parts of `GET /networks/{name}` we use.
pub fn network_info(n: NetworkInspect, asked: &str) -> Result<NetworkInfo> {
    let id =
        n.id.ok_or_else(|| anyhow!("Docker returned network '{asked}' without an ID"))?;
    let name = n.name.unwrap_or_else(|| asked.to_string());
    let driver = n.driver.unwrap_or_default();
    if driver != "bridge" {
        bail!(
            "network '{name}' uses the '{driver}' driver; docker-netattach supports bridge networks only"
        );
    }
    let options: HashMap<String, String> = n.options.unwrap_or_default();
    let bridge = options
        .get("com.docker.network.bridge.name")
        .filter(|b| !b.is_empty())
        .cloned()
        .unwrap_or_else(|| format!("br-{}", id.chars().take(12).collect::<String>()));
    let mtu = match options.get("com.docker.network.driver.mtu") {
        Some(m) if !m.is_empty() => Some(
            m.parse::<u32>()
                .map_err(|_| anyhow!("network '{name}' has an invalid MTU option '{m}'"))?,
        ),
        _ => None,
    };
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for config in n.ipam.and_then(|i| i.config).unwrap_or_default() {
        let Some(subnet) = config.subnet.as_deref().filter(|s| !s.is_empty()) else {
            continue;
        };
        let subnet: Subnet = subnet
            .parse()
            .map_err(|e| anyhow!("network '{name}' has an invalid subnet: {e}"))?;
        let gateway = match config.gateway.as_deref() {
            Some(g) if !g.is_empty() => Some(
                g.split('/')
                    .next()
                    .unwrap_or_default()
                    .parse::<IpAddr>()
                    .ok()
                    .filter(|g| subnet.contains(*g))
                    .ok_or_else(|| anyhow!("network '{name}' has an invalid gateway '{g}'"))?,
            ),
            _ => None,
        };
        let ip_range = match config.ip_range.as_deref() {
            Some(r) if !r.is_empty() => Some(
                r.parse::<Subnet>()
                    .map_err(|e| anyhow!("network '{name}' has an invalid IPRange: {e}"))?,
            ),
            _ => None,
        };
        let aux = config
            .auxiliary_addresses
            .unwrap_or_default()
            .values()
            .filter_map(|a| a.split('/').next()?.parse().ok())
            .collect();
        let sc = SubnetConfig {
            subnet,
            gateway,
            ip_range,
            aux,
        };
        if subnet.is_ipv6() {
            v6.push(sc)
        } else {
            v4.push(sc)
        }
    }
    if v4.is_empty() {
        bail!("Docker network '{name}' has no IPv4 subnet; docker-netattach needs one");
    }
    if !n.enable_ipv6.unwrap_or(false) {
        v6.clear();
    }
    let endpoints = n
        .containers
        .unwrap_or_default()
        .values()
        .flat_map(|e| {
            let container = e.name.clone().unwrap_or_default();
            [e.ipv4_address.as_deref(), e.ipv6_address.as_deref()]
                .into_iter()
                .filter_map(|a| a?.split('/').next()?.parse().ok())
                .map(move |ip| Endpoint {
                    ip,
                    container: container.clone(),
                })
        })
        .collect();
    let flag = |key: &str| options.get(key).is_none_or(|v| v != "false");
    Ok(NetworkInfo {
        id,
        name,
        bridge,
        v4,
        v6,
        mtu,
        endpoints,
        icc: flag("com.docker.network.bridge.enable_icc"),
        masquerade: flag("com.docker.network.bridge.enable_ip_masquerade"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT_BRIDGE_2010: &str = r#"{
        "Name": "bridge", "Id": "8cf35615e703257f7607f3bb654eeabce68aa8945beda5c04c8ad12ad5b291b5",
        "Scope": "local", "Driver": "bridge", "EnableIPv6": false,
        "IPAM": {"Driver": "default", "Options": null, "Config": [{"Subnet": "172.17.0.0/16"}]},
        "Containers": {"abc": {"Name": "n", "EndpointID": "e", "MacAddress": "02:42:ac:11:00:02",
                                "IPv4Address": "172.17.0.2/16", "IPv6Address": ""}},
        "Options": {"com.docker.network.bridge.name": "docker0",
                    "com.docker.network.driver.mtu": "1400"},
        "Labels": {}
    }"#;

    #[test]
    fn default_bridge_of_docker_20_10() {
        let n: NetworkInspect = serde_json::from_str(DEFAULT_BRIDGE_2010).unwrap();
        let info = network_info(n, "bridge").unwrap();
        assert_eq!(info.bridge, "docker0");
        assert_eq!(info.v4[0].subnet.to_string(), "172.17.0.0/16");
        assert_eq!(info.v4[0].gateway, None);
        assert!(info.v6.is_empty());
        assert_eq!(info.mtu, Some(1400));
        let ips: Vec<IpAddr> = info.endpoints.iter().map(|e| e.ip).collect();
        assert_eq!(ips, vec![ip("172.17.0.2")]);
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn user_defined_dual_stack_network_with_range_gateway_and_aux() {
        let json = r#"{"Name": "mynet", "Id": "0123456789abcdef0123", "Driver": "bridge",
            "EnableIPv6": true,
            "IPAM": {"Config": [{"Subnet": "fd00::/64", "Gateway": "fd00::1"},
                                {"Subnet": "10.9.0.0/16", "IPRange": "10.9.0.0/24",
                                 "Gateway": "10.9.0.1", "AuxiliaryAddresses": {"x": "10.9.0.9"}},
                                {"Subnet": "10.10.0.0/16"}]},
            "Containers": {"a": {"Name": "web", "IPv4Address": "10.9.0.2/16", "IPv6Address": "fd00::2/64"}},
            "Options": {}}"#;
        let info = network_info(serde_json::from_str(json).unwrap(), "mynet").unwrap();
        assert_eq!(info.bridge, "br-0123456789ab");
        assert_eq!(info.v4.len(), 2);
        assert_eq!(info.v4[0].gateway, Some(ip("10.9.0.1")));
        assert_eq!(info.v4[0].ip_range.unwrap().to_string(), "10.9.0.0/24");
        assert_eq!(info.v4[0].aux, vec![ip("10.9.0.9")]);
        assert_eq!(info.v4[1].subnet.to_string(), "10.10.0.0/16");
        assert_eq!(info.v6[0].gateway, Some(ip("fd00::1")));
        let ips: Vec<IpAddr> = info.endpoints.iter().map(|e| e.ip).collect();
        assert_eq!(ips, vec![ip("10.9.0.2"), ip("fd00::2")]);
        assert_eq!(info.endpoints[0].container, "web");
        assert_eq!(info.mtu, None);
        let no_v6 = json.replace("\"EnableIPv6\": true", "\"EnableIPv6\": false");
        let info = network_info(serde_json::from_str(&no_v6).unwrap(), "mynet").unwrap();
        assert!(info.v6.is_empty());
    }

    #[test]
    fn hostile_network_json_is_an_error_not_a_panic() {
        for json in [
            r#"{"Id": "x", "Driver": "bridge", "IPAM": {"Config": []}}"#,
            r#"{"Id": "x", "Driver": "bridge", "IPAM": {"Config": [{"Subnet": "10.0.0.0/8", "Gateway": "nope"}]}}"#,
            r#"{"Id": "x", "Driver": "bridge", "IPAM": {"Config": [{"Subnet": "10.0.0.0/8", "Gateway": "11.0.0.1"}]}}"#,
            r#"{"Id": "x", "Driver": "bridge", "IPAM": {"Config": [{"Subnet": "fd00::/64"}]}}"#,
            r#"{"Id": "x", "Driver": "bridge", "IPAM": {"Config": [{"Subnet": "10.0.0.0/8", "IPRange": "1/99"}]}}"#,
            r#"{"Id": "x", "Driver": "bridge", "Options": {"com.docker.network.driver.mtu": "-1"},
                "IPAM": {"Config": [{"Subnet": "10.0.0.0/8"}]}}"#,
            r#"{"IPAM": {"Config": [{"Subnet": "10.0.0.0/8"}]}}"#,
            r#"{"Id": "x", "Driver": "host", "IPAM": {"Config": []}}"#,
        ] {
            let n: NetworkInspect = serde_json::from_str(json).unwrap();
            assert!(network_info(n, "x").is_err(), "{json}");
        }
    }

    #[test]
    fn container_fields() {
        let json = r#"{"Id": "abc", "Name": "/web", "State": {"Running": true, "Pid": 42},
                       "HostConfig": {"NetworkMode": "none"}}"#;
        let c = container_info(serde_json::from_str(json).unwrap(), "web").unwrap();
        assert_eq!(c.name, "web");
        assert_eq!(c.pid, 42);
        assert!(c.running);
        assert_eq!(c.network_mode, "none");
        let stopped = r#"{"Id": "abc", "Name": "/web", "State": {"Running": false, "Pid": 0}}"#;
        assert!(
            !container_info(serde_json::from_str(stopped).unwrap(), "web")
                .unwrap()
                .running
        );
    }
}
