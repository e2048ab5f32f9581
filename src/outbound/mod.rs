//! Going out through another proxy (SPEC §11): the `egress_proxy` a connection goes
//! through, the `no_proxy` destinations it does not, and the connector that does it.
//!
//! What it owns: parsing the proxy's URL ([`ProxyEndpoint`]) and the `no_proxy` list
//! ([`NoProxy`]); the decision, per destination host, between the proxy and a direct
//! connection ([`Egress::proxy_for`], the one place that decides, used by both clients);
//! the upstream connector ([`Connector`]: a `CONNECT` tunnel for TLS destinations, or a
//! connection on which requests go in absolute-form); and the IdP client's proxy setting
//! ([`reqwest_proxy`]).
//!
//! What it must not do: bypass the proxy for a destination `no_proxy` does not list
//! (loopback included; the process environment's `*_proxy` variables are never read), or
//! let the proxy's credentials out: they live in a sensitive header value built once,
//! `Debug` and `Display` show the proxy as `host:port`, and no error names more than that.
//!
//! A leaf: it imports only `secret`; `config` parses into its types and `upstream` and
//! `token::idp` build their clients with them.

mod connector;
mod handshake;
mod no_proxy;
#[cfg(test)]
mod props;

use crate::secret::{fingerprint, Fingerprint};
use base64::Engine;
use http::HeaderValue;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

pub use connector::{Connector, Stream};
pub use handshake::{tunnel_through, TunnelError};
pub use no_proxy::NoProxy;

/// An HTTP proxy to go out through: where it listens, and the `Proxy-Authorization` its
/// URL's userinfo makes. Two endpoints are equal when address and credentials are.
pub struct ProxyEndpoint {
    /// `host:port`, the host lowercase (IPv6 in brackets): what messages name.
    authority: String,
    /// `http://host:port`: where the connector connects.
    uri: http::Uri,
    /// `Basic base64(user:password)`, marked sensitive; `None` without userinfo.
    auth: Option<HeaderValue>,
    /// Address and credentials, hashed: identifies the endpoint without holding them.
    identity: Fingerprint,
}

impl ProxyEndpoint {
    /// Parses `http://[user[:password]@]host:port[/]`. The user and password are
    /// percent-decoded. Errors never quote `url` (it may hold the password).
    pub fn parse(url: &str) -> Result<ProxyEndpoint, String> {
        const EXAMPLE: &str = "e.g. http://user:password@proxy.example:3128";
        let url = url.trim();
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(format!("must be an http:// URL, {EXAMPLE}"));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "http" => {}
            "https" => return Err("an https:// proxy (TLS to the proxy itself) is not supported: use its http:// port; traffic to https destinations stays TLS end to end inside the CONNECT tunnel".into()),
            _ => return Err(format!("must be an http:// URL, {EXAMPLE}")),
        }
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        if !tail.is_empty() && tail != "/" {
            return Err("must be the proxy's address only: no path, query or fragment".into());
        }
        let (userinfo, host_port) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let parsed = host_port
            .parse::<http::uri::Authority>()
            .ok()
            .filter(|a| !a.host().is_empty())
            .ok_or_else(|| format!("the proxy's host and port are not valid, {EXAMPLE}"))?;
        let port = match parsed.port_u16() {
            Some(p) if p > 0 => p,
            _ => {
                return Err(format!(
                    "the proxy's port is missing or not 1 to 65535, {EXAMPLE}"
                ))
            }
        };
        let host = parsed.host().to_ascii_lowercase();
        let authority = format!("{host}:{port}");
        let uri = format!("http://{authority}")
            .parse::<http::Uri>()
            .map_err(|_| format!("the proxy's host and port are not valid, {EXAMPLE}"))?;
        let (auth, credentials) = match userinfo {
            None => (None, String::new()),
            Some(u) => {
                let (header, credentials) = basic_auth(u)?;
                (Some(header), credentials)
            }
        };
        // `user:password` is what goes on the wire: equal text, equal credentials.
        let identity = fingerprint(format!("{authority}\0{credentials}").as_bytes());
        Ok(ProxyEndpoint {
            authority,
            uri,
            auth,
            identity,
        })
    }

    /// `host:port`: the only way messages name the proxy.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// `Proxy-Authorization` for this proxy (sensitive), if its URL had userinfo.
    pub fn auth(&self) -> Option<&HeaderValue> {
        self.auth.as_ref()
    }

    /// The proxy's host as in a URI (an IPv6 address in brackets), lowercase.
    pub fn host(&self) -> &str {
        self.uri.host().unwrap_or_default()
    }

    /// Whether the proxy listens on this machine (`localhost` or a loopback address):
    /// what is sent to it in cleartext does not cross the network.
    pub fn is_loopback(&self) -> bool {
        let host = self.host().trim_start_matches('[').trim_end_matches(']');
        host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.to_canonical().is_loopback())
    }

    /// Why the proxy answered 407, as far as we can tell: for messages after a 407.
    pub fn auth_refusal(&self) -> &'static str {
        match self.auth {
            Some(_) => "it did not accept the credentials in egress_proxy",
            None => "egress_proxy has no credentials (http://user:password@host:port)",
        }
    }

    pub(crate) fn uri(&self) -> &http::Uri {
        &self.uri
    }
}

impl PartialEq for ProxyEndpoint {
    fn eq(&self, other: &Self) -> bool {
        self.identity == other.identity
    }
}

impl Eq for ProxyEndpoint {}

impl Hash for ProxyEndpoint {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.identity.hash(state);
    }
}

impl fmt::Debug for ProxyEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.auth {
            Some(_) => write!(f, "{} (credentials [redacted])", self.authority),
            None => f.write_str(&self.authority),
        }
    }
}

impl fmt::Display for ProxyEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.authority)
    }
}

/// How connections of one client go out: through `proxy` unless `no_proxy` lists the
/// destination, or directly when there is no proxy. Equal settings compare equal, so
/// clients (and token sources) are kept per egress.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Egress {
    proxy: Option<Arc<ProxyEndpoint>>,
    no_proxy: Arc<NoProxy>,
}

impl Egress {
    pub fn new(proxy: Option<Arc<ProxyEndpoint>>, no_proxy: Arc<NoProxy>) -> Egress {
        Egress { proxy, no_proxy }
    }

    /// Direct connections for every destination.
    pub fn direct() -> Egress {
        Egress::default()
    }

    /// The proxy a connection to `host` goes through, or `None`: directly. `host` as in
    /// a URI (an IPv6 address in brackets). `no_proxy` is the only bypass.
    pub fn proxy_for(&self, host: &str) -> Option<&Arc<ProxyEndpoint>> {
        self.proxy.as_ref().filter(|_| !self.no_proxy.matches(host))
    }

    /// The proxy requests to `url` go through: [`Egress::proxy_for`] its host.
    pub fn proxy_for_url(&self, url: &reqwest::Url) -> Option<&Arc<ProxyEndpoint>> {
        self.proxy_for(url.host_str()?)
    }

    /// The proxy that would carry cleartext for `host` off this machine: the one
    /// [`Egress::proxy_for`] picks, unless it listens on loopback. A loopback destination
    /// reached over plain http is safe only when this is `None`.
    pub fn remote_proxy_for(&self, host: &str) -> Option<&Arc<ProxyEndpoint>> {
        self.proxy_for(host).filter(|p| !p.is_loopback())
    }

    /// The configured proxy, whatever the destination.
    pub fn proxy(&self) -> Option<&Arc<ProxyEndpoint>> {
        self.proxy.as_ref()
    }

    pub fn no_proxy(&self) -> &Arc<NoProxy> {
        &self.no_proxy
    }
}

/// The IdP client's proxy, `proxy`: what [`Egress::proxy_for`] decided for the token
/// URL's host (one client per token URL, so the decision is made once, and a `no_proxy`
/// edit that leaves it as it was changes nothing). The credentials go as a prebuilt
/// `Proxy-Authorization` (on the `CONNECT` for https token URLs, on the request itself for
/// http ones), never inside a URL reqwest could print. The client must also be built
/// with `no_proxy()`, so the environment adds nothing.
pub fn reqwest_proxy(proxy: &ProxyEndpoint) -> Result<reqwest::Proxy, String> {
    let bad = || format!("the egress proxy {proxy} is not a valid URL for the IdP client");
    let url = reqwest::Url::parse(&proxy.uri.to_string()).map_err(|_| bad())?;
    let target = reqwest::Proxy::all(url).map_err(|_| bad())?;
    Ok(match proxy.auth.clone() {
        Some(auth) => target.custom_http_auth(auth),
        None => target,
    })
}

/// `Basic base64(user:password)` (sensitive) for a URL's `userinfo`, and the decoded
/// `user:password` it encodes.
fn basic_auth(userinfo: &str) -> Result<(HeaderValue, String), String> {
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let decode = |s: &str| {
        percent_decode(s).ok_or_else(|| {
            "the proxy's user or password is not valid percent-encoded UTF-8 (write `@` as %40, `:` in a user as %3A)".to_string()
        })
    };
    let credentials = format!("{}:{}", decode(user)?, decode(password)?);
    let encoded = base64::engine::general_purpose::STANDARD.encode(&credentials);
    let mut value = HeaderValue::try_from(format!("Basic {encoded}"))
        .map_err(|_| "the proxy's credentials cannot be sent in a header".to_string())?;
    value.set_sensitive(true);
    Ok((value, credentials))
}

/// RFC 3986 percent-decoding to UTF-8; `None` for a bad escape or bytes that are not
/// UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests;
