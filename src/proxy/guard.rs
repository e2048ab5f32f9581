//! Who may send what where (SPEC §4): proxy clients, browsers, and destinations. Each
//! check is a function the lifecycle in `mod.rs` calls at its place; none does IO except
//! [`destination`], which resolves a name only when the answer decides (its port is one
//! the proxy listens on, or unmatched traffic on a shared listener).

use crate::config::{
    is_loopback_host, normalize_origin, strip_port, Config, ProxyClient, RouteConfig,
};
use crate::error::ProxyError;
use base64::Engine;
use http::{HeaderMap, Request};
use std::net::{IpAddr, SocketAddr};

/// The proxy client a request authenticated as (`clients`), when clients are configured.
pub(super) fn authenticate<'c, B>(
    config: &'c Config,
    req: &Request<B>,
) -> Result<Option<&'c ProxyClient>, ProxyError> {
    if config.clients.is_empty() {
        return Ok(None);
    }
    let refused = || ProxyError::ProxyAuthRequired {
        detail: "this proxy needs Proxy-Authorization: Basic with a configured client".into(),
    };
    let value = req
        .headers()
        .get(http::header::PROXY_AUTHORIZATION)
        .ok_or_else(refused)?;
    let encoded = value
        .as_bytes()
        .strip_prefix(b"Basic ")
        .or_else(|| value.as_bytes().strip_prefix(b"basic "))
        .ok_or_else(refused)?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim_ascii())
        .map_err(|_| refused())?;
    let (name, password) = match decoded.iter().position(|b| *b == b':') {
        Some(i) => (&decoded[..i], &decoded[i + 1..]),
        None => return Err(refused()),
    };
    // Every client's password is compared (in constant time), so timing tells nothing
    // about which names exist.
    let mut found = None;
    for c in &config.clients {
        let ok = c.password.matches(password) & (c.name.as_bytes() == name);
        if ok {
            found = Some(c);
        }
    }
    found.map(Some).ok_or_else(refused)
}

/// A route with `clients` serves only those.
pub(super) fn client_allowed(
    route: &RouteConfig,
    client: Option<&ProxyClient>,
) -> Result<(), ProxyError> {
    let Some(allowed) = &route.clients else {
        return Ok(());
    };
    match client {
        Some(c) if allowed.contains(&c.name) => Ok(()),
        _ => Err(ProxyError::ClientForbidden {
            detail: format!("route {} does not serve this proxy client", route.name),
        }),
    }
}

/// SPEC §4 Browsers: a web page must not borrow the sidecar's tokens. Cross-site and
/// same-site fetches, and an `Origin` the route does not list, are refused; a route
/// without `match.host` accepts only a `Host` that names the proxy itself (DNS
/// rebinding).
pub(super) fn browser_allowed(
    config: &Config,
    route: &RouteConfig,
    headers: &HeaderMap,
    host: Option<&str>,
) -> Result<(), ProxyError> {
    let refuse = |detail: String| Err(ProxyError::BrowserRequestForbidden { detail });
    if let Some(site) = headers.get("sec-fetch-site") {
        if site.as_bytes().eq_ignore_ascii_case(b"cross-site")
            || site.as_bytes().eq_ignore_ascii_case(b"same-site")
        {
            return refuse(format!(
                "route {} refuses requests a web page sent from another site (Sec-Fetch-Site)",
                route.name
            ));
        }
    }
    if let Some(origin) = headers.get(http::header::ORIGIN) {
        let listed = origin
            .to_str()
            .ok()
            .and_then(|o| normalize_origin(o).ok())
            .is_some_and(|o| route.allowed_origins.contains(&o));
        if !listed {
            return refuse(format!(
                "route {} does not list this Origin in allowed_origins",
                route.name
            ));
        }
    }
    if route.host.is_none() {
        // No Host at all (HTTP/1.0; HTTP/1.1 without one is refused earlier) cannot be a
        // rebinding: browsers always send one.
        let name = host.map(strip_port);
        if !name.is_none_or(|h| config.is_own_name(h)) {
            return refuse(format!(
                "route {} has no match.host, so it answers only the proxy's own names (loopback, listen, server_names)",
                route.name
            ));
        }
    }
    Ok(())
}

/// SPEC §4 Plaintext: a token travels over plain http only to a loopback destination, or
/// when the route says so. The destination is the route's `upstream`, else the request's
/// own target; decided before any token is fetched. Through an egress proxy (SPEC §11)
/// the request goes to the proxy in cleartext, so a loopback destination is safe only
/// when it is reached directly (`no_proxy`) or the proxy is on loopback too.
pub(super) fn plaintext_allowed(route: &RouteConfig, target: &http::Uri) -> Result<(), ProxyError> {
    if route.allow_http {
        return Ok(());
    }
    let (scheme, host) = match &route.upstream {
        Some(up) => (Some(&up.scheme), Some(up.authority.host())),
        None => (target.scheme(), target.host()),
    };
    if scheme != Some(&http::uri::Scheme::HTTP) {
        return Ok(());
    }
    if let Some(host) = host.filter(|h| is_loopback_host(h)) {
        let Some(proxy) = route.egress.remote_proxy_for(host) else {
            return Ok(());
        };
        return Err(ProxyError::InsecureDestination {
            detail: format!(
                "route {} would send its token over plain http to {host} through the egress proxy {proxy}, across the network; list {host} in no_proxy, or set upstream: https://… (or allow_http: true)",
                route.name
            ),
        });
    }
    Err(ProxyError::InsecureDestination {
        detail: format!(
            "route {} would send its token over plain http to {}; set upstream: https://… (or allow_http: true)",
            route.name,
            host.unwrap_or("-")
        ),
    })
}

/// What a destination may be, beyond the route's own choice.
#[derive(Clone, Copy)]
pub(super) struct Reach<'a> {
    /// The sockets the proxy listens on (proxy and admin).
    pub own: &'a [SocketAddr],
    /// Unmatched traffic on a shared listener: loopback and link-local are refused too.
    pub no_local: bool,
}

/// Resolves `host:port` when the answer matters and refuses the proxy's own listeners
/// (and, for [`Reach::no_local`], loopback and link-local addresses), whatever name was
/// used. Returns the checked address when it resolved one, so the caller connects to
/// exactly that address (a second lookup could answer differently).
pub(super) async fn destination(
    host: &str,
    port: u16,
    reach: Reach<'_>,
) -> Result<Option<SocketAddr>, ProxyError> {
    let listens_here = reach.own.iter().any(|a| a.port() == port);
    if !listens_here && !reach.no_local {
        return Ok(None);
    }
    let forbidden = || ProxyError::DestinationForbidden {
        detail: format!("the proxy does not forward to {host}:{port}"),
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((bare, port))
            .await
            .map_err(|_| ProxyError::UpstreamUnavailable {
                detail: format!("cannot resolve {host}"),
            })?
            .collect(),
    };
    if addrs.is_empty() {
        return Err(ProxyError::UpstreamUnavailable {
            detail: format!("cannot resolve {host}"),
        });
    }
    for addr in &addrs {
        if is_own(addr, reach.own) || (reach.no_local && is_local(addr.ip())) {
            return Err(forbidden());
        }
    }
    Ok(Some(addrs[0]))
}

/// True when `addr` reaches one of the proxy's listeners: the same address, or any local
/// address on the port of a listener bound to the unspecified address.
fn is_own(addr: &SocketAddr, own: &[SocketAddr]) -> bool {
    let ip = addr.ip().to_canonical();
    // Connecting to 0.0.0.0 or [::] reaches this machine, on whatever address listens.
    if ip.is_unspecified() {
        return own.iter().any(|l| l.port() == addr.port());
    }
    own.iter().any(|l| {
        l.port() == addr.port()
            && (l.ip().to_canonical() == ip
                || (l.ip().is_unspecified()
                    && (ip.is_loopback() || ip.is_unspecified() || is_local_interface(ip))))
    })
}

/// True when `ip` is one of this machine's addresses (binding to it succeeds).
fn is_local_interface(ip: IpAddr) -> bool {
    std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

/// Loopback, unspecified, link-local (169.254.0.0/16, fe80::/10) and the cloud metadata
/// addresses that are not link-local.
fn is_local(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_unspecified()
                || v4.is_link_local()
                // Alibaba Cloud's metadata service.
                || v4.octets() == [100, 100, 100, 200]
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || (v6.segments()[0] & 0xffc0) == 0xfe80
                // AWS's IPv6 metadata service.
                || v6 == std::net::Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_addresses_are_recognised() {
        for ip in [
            "127.0.0.1",
            "127.5.5.5",
            "::1",
            "0.0.0.0",
            "169.254.169.254",
            "fe80::1",
            "100.100.100.200",
            "fd00:ec2::254",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_local(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "10.0.0.1",
            "192.168.1.1",
            "8.8.8.8",
            "2001:db8::1",
            "fd00::1",
        ] {
            assert!(!is_local(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn own_listeners_are_recognised_by_address_and_port() {
        let own: Vec<SocketAddr> = vec![
            "127.0.0.1:4480".parse().unwrap(),
            "0.0.0.0:4481".parse().unwrap(),
        ];
        assert!(is_own(&"127.0.0.1:4480".parse().unwrap(), &own));
        assert!(is_own(&"[::ffff:127.0.0.1]:4480".parse().unwrap(), &own));
        assert!(
            !is_own(&"127.0.0.2:4480".parse().unwrap(), &own),
            "a listener on 127.0.0.1 only"
        );
        assert!(
            is_own(&"127.0.0.2:4481".parse().unwrap(), &own),
            "0.0.0.0 takes every loopback address"
        );
        assert!(
            is_own(&"[::1]:4481".parse().unwrap(), &own)
                || !is_local_interface("::1".parse().unwrap())
        );
        assert!(!is_own(&"127.0.0.1:4482".parse().unwrap(), &own));
        assert!(
            is_own(&"0.0.0.0:4480".parse().unwrap(), &own),
            "0.0.0.0 reaches 127.0.0.1"
        );
        assert!(is_own(&"[::]:4480".parse().unwrap(), &own));
        assert!(!is_own(&"0.0.0.0:4482".parse().unwrap(), &own));
    }

    #[tokio::test]
    async fn names_are_resolved_only_when_the_answer_matters() {
        let own: Vec<SocketAddr> = vec!["127.0.0.1:4480".parse().unwrap()];
        let reach = Reach {
            own: &own,
            no_local: false,
        };
        // Another port: no lookup (an unresolvable name passes untouched).
        assert!(matches!(
            destination("no-such-host.invalid", 80, reach).await,
            Ok(None)
        ));
        assert!(matches!(
            destination("localhost", 4480, reach).await,
            Err(ProxyError::DestinationForbidden { .. })
        ));
        assert!(matches!(
            destination("127.0.0.1", 4480, reach).await,
            Err(ProxyError::DestinationForbidden { .. })
        ));
        let shared = Reach {
            own: &own,
            no_local: true,
        };
        assert!(matches!(
            destination("localhost", 8080, shared).await,
            Err(ProxyError::DestinationForbidden { .. })
        ));
        assert!(matches!(
            destination("169.254.169.254", 80, shared).await,
            Err(ProxyError::DestinationForbidden { .. })
        ));
        assert!(matches!(
            destination("[::1]", 80, shared).await,
            Err(ProxyError::DestinationForbidden { .. })
        ));
    }

    #[test]
    fn a_loopback_destination_through_a_remote_egress_proxy_is_not_local() {
        let config = crate::config::Config::from_text(
            std::path::Path::new("t.yaml"),
            "egress_proxy: http://u:hunter2@proxy.corp.example:3128\nproviders:\n  p: { token_url: 'https://idp.example/token', client_id: c, client_secret: s }\nroutes:\n  - { name: through, match: { path_prefix: /a }, provider: p, upstream: 'http://127.0.0.1:9' }\n  - { name: listed, match: { path_prefix: /b }, provider: p, upstream: 'http://127.0.0.1:9', no_proxy: ['127.0.0.1'] }\n  - { name: local, match: { path_prefix: /c }, provider: p, upstream: 'http://localhost:9', egress_proxy: 'http://127.0.0.1:3128' }\n  - { name: allowed, match: { path_prefix: /d }, provider: p, upstream: 'http://127.0.0.1:9', allow_http: true }\n  - { name: target, match: { host: localhost }, provider: p }\n",
            &|_| None,
        )
        .map_err(|e| e.problems)
        .unwrap();
        let target: http::Uri = "http://localhost:8080/e".parse().unwrap();
        let verdict = |name: &str| {
            let route = config.routes.iter().find(|r| r.name == name).unwrap();
            plaintext_allowed(route, &target)
        };
        for name in ["through", "target"] {
            match verdict(name) {
                Err(ProxyError::InsecureDestination { detail }) => assert!(
                    detail.contains("through the egress proxy proxy.corp.example:3128")
                        && !detail.contains("hunter2"),
                    "{detail}"
                ),
                other => panic!("{name}: {other:?}"),
            }
        }
        for name in ["listed", "local", "allowed"] {
            assert!(verdict(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn ports_are_stripped_from_host_headers() {
        assert_eq!(strip_port("a.example:8080"), "a.example");
        assert_eq!(strip_port("a.example"), "a.example");
        assert_eq!(strip_port("[::1]:8080"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
    }
}
