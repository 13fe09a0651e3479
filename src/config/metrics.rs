//! `[metrics]`: the optional HTTP listener for Prometheus (`/metrics`) and for health
//! checks (`/healthz`, `/readyz`).
//!
//! Off unless `listen` is written. The figures name guilds' activity and the host's
//! resources, and the listener has no authentication, so it serves loopback unless the
//! operator also says `allow_public = true`: a bare port binds 127.0.0.1, and any other
//! address (`0.0.0.0`, a LAN or public one) is refused when the config loads.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Where to listen: `"127.0.0.1:9110"`, or a port alone (`"9110"`), which binds
    /// 127.0.0.1. Unset: no listener at all.
    pub listen: Option<ListenAddr>,
    /// Lets `listen` be an address other machines can reach (for a container, or a
    /// Prometheus on another host behind a firewall). Off by default.
    pub allow_public: bool,
}

/// `metrics.listen` as parsed: always a full socket address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "ListenValue")]
pub struct ListenAddr(pub SocketAddr);

#[derive(Deserialize)]
#[serde(untagged)]
enum ListenValue {
    Port(i64),
    Text(String),
}

impl TryFrom<ListenValue> for ListenAddr {
    type Error = String;

    fn try_from(v: ListenValue) -> Result<Self, String> {
        match v {
            ListenValue::Port(p) => ListenAddr::parse(&p.to_string()),
            ListenValue::Text(s) => ListenAddr::parse(&s),
        }
    }
}

impl ListenAddr {
    /// `"ip:port"`, `"[v6]:port"`, or a port alone on 127.0.0.1.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Ok(port) = s.parse::<u16>() {
            return Ok(ListenAddr(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                port,
            )));
        }
        s.parse::<SocketAddr>().map(ListenAddr).map_err(|_| {
            format!("{s:?} is not an address to listen on (write \"127.0.0.1:9110\" or \"9110\")")
        })
    }

    /// Only this machine can connect.
    pub fn is_loopback(&self) -> bool {
        self.0.ip().is_loopback()
    }
}

impl MetricsConfig {
    /// The address to serve on, or why it may not be used.
    pub fn check(&self) -> Result<(), String> {
        match self.listen {
            Some(addr) if !addr.is_loopback() && !self.allow_public => Err(format!(
                "{} can be reached from other machines, and the figures have no password; \
                 listen on 127.0.0.1, or set metrics.allow_public = true to serve them there",
                addr.0
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn off_unless_listen_is_written() {
        assert!(Config::default().metrics.listen.is_none());
        let c = Config::from_toml("[metrics]\nallow_public = false\n").unwrap();
        assert!(c.metrics.listen.is_none());
    }

    #[test]
    fn a_port_alone_binds_loopback() {
        for text in [
            "[metrics]\nlisten = \"9110\"\n",
            "[metrics]\nlisten = 9110\n",
        ] {
            let c = Config::from_toml(text).unwrap();
            assert_eq!(
                c.metrics.listen.unwrap().0,
                "127.0.0.1:9110".parse().unwrap(),
                "{text}"
            );
            c.validate().unwrap();
        }
    }

    #[test]
    fn a_public_address_needs_the_explicit_setting() {
        for addr in [
            "0.0.0.0:9110",
            "192.168.1.5:9110",
            "[::]:9110",
            "203.0.113.7:9110",
        ] {
            let text = format!("[metrics]\nlisten = \"{addr}\"\n");
            let c = Config::from_toml(&text).unwrap();
            let e = c.validate().unwrap_err().to_string();
            assert!(
                e.contains("metrics.listen") && e.contains("allow_public"),
                "{addr}: {e}"
            );
            let c = Config::from_toml(&format!("{text}allow_public = true\n")).unwrap();
            c.validate().unwrap();
        }
        for addr in ["127.0.0.1:9110", "[::1]:9110", "127.0.0.2:1"] {
            let c = Config::from_toml(&format!("[metrics]\nlisten = \"{addr}\"\n")).unwrap();
            c.validate().unwrap();
        }
    }

    #[test]
    fn nonsense_is_refused_when_read() {
        let e = Config::from_toml("[metrics]\nlisten = \"localhost\"\n").unwrap_err();
        assert!(e.contains("127.0.0.1:9110"), "{e}");
        assert!(Config::from_toml("[metrics]\nlisten = 70000\n").is_err());
    }
}
