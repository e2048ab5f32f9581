//! Host names as the config writes them: `match.host` patterns (name and port), the
//! names in `server_names`, and browser origins in `allowed_origins`.
//!
//! Pure text functions, shared by validation (which parses them) and by `route` (which
//! matches requests against the parsed form). No IO, and no allocation when matching.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

/// What `match.host` selects: a host name and the ports it applies to (SPEC §4 Ports).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPattern {
    pub name: HostName,
    pub port: PortMatch,
}

/// The name part of a [`HostPattern`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostName {
    /// One host, lowercase; an IPv6 address in brackets, in its canonical form.
    Exact(String),
    /// `*.example.com`, stored as `.example.com`: any subdomain at any depth, not the apex.
    Suffix(String),
}

/// The port part of a [`HostPattern`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortMatch {
    /// No port written: only the request scheme's default port (80 for `http`, 443 for
    /// `https` and CONNECT).
    Default,
    /// `host:8443`: that port only, whatever the scheme.
    Only(u16),
    /// `host:*`: any port.
    Any,
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            HostName::Exact(h) => f.write_str(h)?,
            HostName::Suffix(s) => write!(f, "*{s}")?,
        }
        match self.port {
            PortMatch::Default => Ok(()),
            PortMatch::Only(p) => write!(f, ":{p}"),
            PortMatch::Any => f.write_str(":*"),
        }
    }
}

impl HostPattern {
    /// True when `host` (IPv6 in brackets; any case) on `port` is selected, for a request
    /// whose scheme's default port is `default_port`. A request that names no port is on
    /// its default port.
    pub fn matches(&self, host: &str, port: Option<u16>, default_port: u16) -> bool {
        let port = port.unwrap_or(default_port);
        let port_ok = match self.port {
            PortMatch::Default => port == default_port,
            PortMatch::Only(p) => port == p,
            PortMatch::Any => true,
        };
        port_ok && self.name.matches(host)
    }

    /// True when every (host, port, scheme) that `other` selects is selected by `self`.
    pub fn covers(&self, other: &HostPattern) -> bool {
        let port = match (self.port, other.port) {
            (PortMatch::Any, _) => true,
            (PortMatch::Default, PortMatch::Default) => true,
            (PortMatch::Only(p), PortMatch::Only(q)) => p == q,
            // `host:443` and `host` differ for plain http to port 443 (or https to 80).
            _ => false,
        };
        let name = match (&self.name, &other.name) {
            (HostName::Exact(x), HostName::Exact(y)) => x == y,
            (HostName::Suffix(_), HostName::Exact(h)) => self.name.matches(h),
            (HostName::Suffix(s), HostName::Suffix(t)) => t.ends_with(s.as_str()),
            (HostName::Exact(_), HostName::Suffix(_)) => false,
        };
        port && name
    }

    /// True when every host this pattern selects is a loopback name or address.
    pub fn is_loopback(&self) -> bool {
        matches!(&self.name, HostName::Exact(h) if is_loopback_host(h))
    }
}

impl HostName {
    /// True when `host` (any case; IPv6 in brackets) is this name.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostName::Exact(h) => same_host(h, host),
            HostName::Suffix(s) => {
                host.len() > s.len()
                    && host.is_char_boundary(host.len() - s.len())
                    && host[host.len() - s.len()..].eq_ignore_ascii_case(s)
            }
        }
    }
}

/// True when `a` and `b` name the same host: equal but for case, or the same IPv6
/// address (`[::1]` and `[0:0::1]`).
pub(crate) fn same_host(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
        || match (bracketed_ipv6(a), bracketed_ipv6(b)) {
            (Some(x), Some(y)) => x == y,
            _ => false,
        }
}

fn bracketed_ipv6(h: &str) -> Option<Ipv6Addr> {
    h.strip_prefix('[')?.strip_suffix(']')?.parse().ok()
}

/// Parses `match.host`: `api.example.com`, `*.example.com`, `[::1]`, each optionally
/// followed by `:PORT` or `:*`.
pub fn parse_host_pattern(text: &str) -> Result<HostPattern, String> {
    let t = text.trim().to_ascii_lowercase();
    let bad = || {
        format!(
            "invalid host {text:?}: expected a name (api.example.com), *.example.com, or either with :PORT or :* (any port)"
        )
    };
    let (host, port) = split_port(&t).ok_or_else(bad)?;
    let port = match port {
        None => PortMatch::Default,
        Some("*") => PortMatch::Any,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .map(PortMatch::Only)
            .ok_or_else(bad)?,
    };
    let name = if let Some(suffix) = host.strip_prefix("*.") {
        valid_hostname(suffix).then(|| HostName::Suffix(format!(".{suffix}")))
    } else if host.starts_with('[') {
        bracketed_ipv6(host).map(|ip| HostName::Exact(format!("[{ip}]")))
    } else {
        valid_hostname(host).then(|| HostName::Exact(host.to_string()))
    };
    Ok(HostPattern {
        name: name.ok_or_else(bad)?,
        port,
    })
}

/// `[v6]:port`, `[v6]`, `host:port`, `host` → host and port text; `None` when malformed.
fn split_port(t: &str) -> Option<(&str, Option<&str>)> {
    if t.starts_with('[') {
        let end = t.find(']')?;
        let after = &t[end + 1..];
        return match after.strip_prefix(':') {
            Some(p) => Some((&t[..=end], Some(p))),
            None if after.is_empty() => Some((t, None)),
            None => None,
        };
    }
    Some(match t.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (t, None),
    })
}

/// Parses a `server_names` entry: a host name or an IP address, lowercase, without a
/// port (the port of a `Host` header is not compared). IPv6 is stored in brackets, as a
/// `Host` header writes it.
pub fn parse_server_name(text: &str) -> Result<String, String> {
    let t = text.trim().to_ascii_lowercase();
    if let Ok(ip) = t.parse::<IpAddr>() {
        return Ok(match ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        });
    }
    if let Some(v6) = bracketed_ipv6(&t) {
        return Ok(format!("[{v6}]"));
    }
    if let Some((_, port)) = t.rsplit_once(':') {
        if port.parse::<u16>().is_ok() {
            return Err(format!(
                "server name {text:?} has a port: write the name only (the Host header's port is not compared)"
            ));
        }
    }
    if valid_hostname(&t) {
        Ok(t)
    } else {
        Err(format!(
            "invalid server name {text:?}: expected a host name (sidecar.ns.svc) or an IP address"
        ))
    }
}

/// Normalises a browser origin (`allowed_origins`, or an `Origin` header) to the form
/// browsers send: lowercase scheme and host, no default port, no path. Only `http` and
/// `https` origins with a host are accepted (not `null`, not a wildcard).
pub fn normalize_origin(text: &str) -> Result<String, String> {
    let t = text.trim();
    let bad = |why: &str| format!("invalid origin {t:?}: {why}");
    let url = reqwest::Url::parse(t)
        .map_err(|_| bad("expected scheme://host[:port], e.g. https://app.example.com"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("the scheme must be http or https"));
    }
    if url
        .host_str()
        .is_none_or(|h| h.is_empty() || h.contains('*'))
    {
        return Err(bad("an origin names one host (no wildcards)"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("an origin has no credentials"));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(bad("an origin has no path, query or fragment"));
    }
    Ok(url.origin().ascii_serialization())
}

/// True for hosts whose traffic never leaves the machine: `localhost` and loopback
/// addresses (IPv6 with or without brackets).
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<IpAddr>()
            .map(|ip| ip.to_canonical().is_loopback())
            .unwrap_or(false)
}

pub(crate) fn valid_hostname(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

#[cfg(test)]
mod tests;

/// `host` (a `Host` header's value) without its `:port`; IPv6 in brackets keeps its
/// brackets.
pub fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}
