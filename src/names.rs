//! Pure: the one validator for names that reach the kernel or the file system — interface
//! names (`--ifname`, `--bridge`, lease records, watch labels) and netns names (a file name
//! under /var/run/netns). No side effects.

use anyhow::{Result, bail};

/// Linux interface names are at most 15 bytes (IFNAMSIZ - 1).
pub const IFNAMSIZ_MAX: usize = 15;

/// An interface name the kernel takes literally: what `dev_valid_name()` accepts (1..=15 bytes,
/// not `.` or `..`, no `/`, `:` or white space), and no `%` (the kernel expands `%d` in a new
/// link's name to a free number, so the interface would get a name we did not choose) and no
/// control characters (they garble every listing that prints the name).
pub fn validate_ifname(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > IFNAMSIZ_MAX {
        bail!(
            "interface name '{}' must be 1 to {IFNAMSIZ_MAX} bytes long; choose a shorter --ifname",
            name.escape_debug()
        );
    }
    if name == "." || name == ".." {
        bail!("interface name '{name}' is not usable: '.' and '..' are reserved");
    }
    if let Some(c) = name
        .chars()
        .find(|c| matches!(c, '/' | ':' | '%') || c.is_whitespace() || c.is_control())
    {
        bail!(
            "interface name '{}' may not contain {:?}: use letters, digits, '-', '_' or '.' (no '/', ':', '%', spaces or control characters)",
            name.escape_debug(),
            c
        );
    }
    Ok(())
}

/// A name under /var/run/netns (and /etc/netns): a single path component of 1 to 64
/// characters from [A-Za-z0-9_.-], not `.` or `..`.
pub fn validate_netns_name(name: &str) -> Result<()> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if name.is_empty() || name.len() > 64 || name == "." || name == ".." || !ok_chars {
        bail!(
            "netns name '{}' is not usable: use 1 to 64 characters from [A-Za-z0-9_.-], not '.' or '..' (set --netns-name)",
            name.escape_debug()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_as_the_kernel_takes_them() {
        for good in [
            "eth0",
            "eth1",
            "a",
            "fifteen-bytes-x",
            "br.lab",
            "a_b",
            "...",
            "é",
        ] {
            validate_ifname(good).unwrap();
        }
        for bad in [
            "",
            "sixteen-bytes-xx",
            ".",
            "..",
            "a/b",
            "a:b",
            "a b",
            "a\tb",
            "a\nb",
            "eth%d",
            "%",
            "e\u{1}",
            "e\u{7f}",
            "e\0",
        ] {
            let err = validate_ifname(bad).unwrap_err().to_string();
            assert!(err.starts_with("interface name '"), "{bad:?}: {err}");
        }
        // Byte length, not characters: 8 two-byte characters are 16 bytes.
        assert!(validate_ifname(&"é".repeat(8)).is_err());
    }

    #[test]
    fn netns_names_are_one_plain_path_component() {
        for good in ["web", "my-net_ns.1"] {
            validate_netns_name(good).unwrap();
        }
        let long = "x".repeat(65);
        for bad in [
            "",
            ".",
            "..",
            "../etc",
            "a/b",
            "a b",
            "a%b",
            "a\nb",
            long.as_str(),
        ] {
            assert!(validate_netns_name(bad).is_err(), "{bad:?}");
        }
    }
}
