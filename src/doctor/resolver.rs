//! Which DNS resolvers this machine uses, and whether the shipped systemd unit lets the bot
//! reach them: its `IPAddressDeny=` walls off the private networks (see
//! `deploy/encore.service`), so a resolver on a LAN address (a home router handing out
//! 192.168.1.1) would leave the bot unable to resolve anything under that unit.

use std::net::IpAddr;

use super::check::Check;
use crate::sources::egress::policy::is_forbidden_ip;

/// Where the system's resolvers are listed.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";

/// The `nameserver` addresses of a resolv.conf (zone suffixes such as `%eth0` dropped).
fn nameservers(text: &str) -> Vec<IpAddr> {
    text.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next()? == "nameserver").then_some(())?;
            words.next()?.split('%').next()?.parse().ok()
        })
        .collect()
}

/// Warns about resolvers the unit's `IPAddressDeny=` blocks, and says how to allow them.
/// `text` is the content of [`RESOLV_CONF`] (`None` when it cannot be read).
pub fn check_resolvers(text: Option<&str>) -> Check {
    let Some(text) = text else {
        return Check::warn(
            "dns",
            format!("cannot read {RESOLV_CONF}"),
            "make sure the machine can resolve names (discord.com, your media hosts)",
        );
    };
    let servers = nameservers(text);
    if servers.is_empty() {
        return Check::warn(
            "dns",
            format!("{RESOLV_CONF} lists no nameserver"),
            "configure a DNS resolver (systemd-resolved, or a nameserver line)",
        );
    }
    let blocked: Vec<String> = servers
        .iter()
        .filter(|ip| is_forbidden_ip(**ip) && !ip.is_loopback())
        .map(IpAddr::to_string)
        .collect();
    let list = servers
        .iter()
        .map(IpAddr::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    if blocked.is_empty() {
        return Check::ok("dns", format!("resolvers {list}"));
    }
    Check::warn(
        "dns",
        format!(
            "resolver {} is on a private network, which the systemd unit's IPAddressDeny= blocks",
            blocked.join(", ")
        ),
        format!(
            "if you run deploy/encore.service, allow it in a drop-in (systemctl edit encore): \
             [Service] IPAddressAllow={}",
            blocked.join(" ")
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::check::Status;

    #[test]
    fn loopback_and_public_resolvers_pass() {
        let c = check_resolvers(Some("# stub\nnameserver 127.0.0.53\noptions edns0\n"));
        assert_eq!(c.status, Status::Ok, "{c:?}");
        assert!(c.detail.contains("127.0.0.53"));
        let c = check_resolvers(Some("nameserver 1.1.1.1\nnameserver 2606:4700::1111\n"));
        assert_eq!(c.status, Status::Ok, "{c:?}");
    }

    #[test]
    fn a_lan_resolver_is_named_with_the_drop_in_that_allows_it() {
        let c = check_resolvers(Some(
            "search lan\nnameserver 192.168.1.1\nnameserver fe80::1%eth0\nnameserver 9.9.9.9\n",
        ));
        assert_eq!(c.status, Status::Warn, "{c:?}");
        assert!(c.detail.contains("192.168.1.1, fe80::1"), "{}", c.detail);
        assert!(!c.detail.contains("9.9.9.9"), "{}", c.detail);
        assert!(
            c.fix
                .as_deref()
                .unwrap()
                .contains("IPAddressAllow=192.168.1.1 fe80::1"),
            "{c:?}"
        );
    }

    #[test]
    fn no_resolver_is_a_warning() {
        assert_eq!(check_resolvers(Some("")).status, Status::Warn);
        assert_eq!(check_resolvers(None).status, Status::Warn);
    }
}
