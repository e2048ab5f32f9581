//! Traffic that matched no route: refused under `unmatched: deny`, otherwise forwarded
//! untouched and without a token when it names its own target. On a shared listener
//! (SPEC §4 Shared egress) it never reaches loopback or link-local addresses, whatever
//! name it uses: the name is resolved once, checked, and that address is what the proxy
//! connects to.

use super::forward;
use super::guard::{self, Reach};
use super::target::{self, RequestTarget};
use super::{body::AppBody, rewrite, strip_hop_by_hop};
use crate::config::Unmatched;
use crate::error::{Body, ProxyError};
use crate::runtime::{Runtime, Snapshot};
use crate::upstream::Client;
use http::uri::{Authority, Scheme};
use http::{Request, Response, Uri, Version};
use hyper::body::Incoming;
use std::net::SocketAddr;
use std::time::Duration;

/// `upstream_timeout` for traffic that matched no route (routes default to the same).
const UNMATCHED_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);

pub(super) async fn forward(
    runtime: &Runtime,
    snap: &Snapshot,
    req: Request<Incoming>,
    target: &RequestTarget,
) -> Result<Response<Body>, ProxyError> {
    let host =
        target::request_host(req.uri(), req.headers().get(http::header::HOST)).unwrap_or("-");
    if snap.config.unmatched == Unmatched::Deny {
        return Err(denied(runtime, snap, &req, host).await);
    }
    if !target.absolute {
        return Err(ProxyError::BadRequest {
            detail: format!("no route matches {host}{}, and an origin-form request names no target to forward to", req.uri().path()),
        });
    }
    let host = host.to_string();
    let (mut parts, body) = req.into_parts();
    let mut dest = rewrite::own_target(&parts.uri, None)?;
    let shared = snap.config.shared_egress();
    let client = checked_route(runtime, snap, &mut dest.uri, &host).await?;
    strip_hop_by_hop(&mut parts.headers);
    parts.headers.insert(http::header::HOST, dest.host);
    let body = forward::boxed(AppBody::new(body, snap.config.limits.body_read_timeout));
    let req = forward::request(
        parts.method,
        dest.uri,
        Version::HTTP_11,
        parts.headers,
        body,
    );
    let sent = forward::send(
        client,
        req,
        UNMATCHED_UPSTREAM_TIMEOUT,
        &snap.unmatched_metrics,
    )
    .await;
    // On a shared listener every failure to reach a destination reads the same, so the
    // proxy cannot be used to tell open ports from closed ones.
    sent.map_err(|e| match e {
        ProxyError::UpstreamUnavailable { .. } | ProxyError::UpstreamTimeout { .. } if shared => {
            ProxyError::UpstreamUnavailable {
                detail: format!("cannot reach {host}"),
            }
        }
        other => other,
    })
}

/// The refusal of traffic `unmatched: deny` does not serve: `no_route`, except for the
/// proxy's own listeners, refused as such whatever `unmatched` says (SPEC §4 Own
/// listeners): addresses, and the proxy's own names (loopback names, `listen`,
/// `server_names`). Names are not resolved: denied traffic costs no DNS lookup.
async fn denied(
    runtime: &Runtime,
    snap: &Snapshot,
    req: &Request<Incoming>,
    host: &str,
) -> ProxyError {
    if let (Some(h), Some(port)) = (req.uri().host(), target::port_of(req.uri())) {
        if snap.config.is_own_name(h) && runtime.own.iter().any(|a| a.port() == port) {
            return ProxyError::DestinationForbidden {
                detail: format!("the proxy does not forward to {h}:{port}"),
            };
        }
        // Addresses in any notation the resolver reads without DNS (`127.1`,
        // `2130706433`, `0x7f.1`, IPv6).
        let literal = h.trim_start_matches('[').trim_end_matches(']');
        let numeric = literal
            .chars()
            .all(|c| c.is_ascii_hexdigit() || matches!(c, '.' | ':' | 'x' | 'X'));
        let reach = Reach {
            own: &runtime.own,
            no_local: false,
        };
        if numeric {
            if let Err(e @ ProxyError::DestinationForbidden { .. }) =
                guard::destination(h, port, reach).await
            {
                return e;
            }
        }
    }
    ProxyError::NoRoute {
        detail: format!(
            "no route matches {} {host}{}",
            req.method(),
            req.uri().path()
        ),
    }
}

/// Checks where `uri` leads (SPEC §4 Shared egress), pins it to the address checked
/// when the connection goes there directly, and returns the client that sends it.
async fn checked_route<'s>(
    runtime: &Runtime,
    snap: &'s Snapshot,
    uri: &mut Uri,
    host: &str,
) -> Result<&'s Client, ProxyError> {
    let shared = snap.config.shared_egress();
    let reach = Reach {
        own: &runtime.own,
        no_local: shared,
    };
    let (Some(h), Some(port)) = (uri.host(), target::port_of(uri)) else {
        return Ok(&snap.default_client);
    };
    let checked = guard::destination(h, port, reach)
        .await
        .map_err(|e| match e {
            ProxyError::UpstreamUnavailable { .. } if shared => ProxyError::UpstreamUnavailable {
                detail: format!("cannot reach {host}"),
            },
            other => other,
        })?;
    // Through the egress proxy (SPEC §11), the proxy connects: it gets the name, and the
    // check above has refused what must not be reached whatever it resolves to. Directly
    // (no_proxy lists the name), the connection goes to the address checked, by a direct
    // client: the address itself may not be listed.
    let proxied = snap.config.egress.proxy_for(h).is_some();
    match checked.filter(|_| !proxied).and_then(|a| pinned(uri, a)) {
        Some(pinned) => {
            *uri = pinned;
            Ok(&snap.direct_client)
        }
        None => Ok(&snap.default_client),
    }
}

/// For plain http, `uri` with its authority replaced by the address that was checked,
/// so the connection goes where the check looked (the Host header keeps the name). TLS
/// needs the name for its certificate check: `None` for an https URI, left as it is.
fn pinned(uri: &Uri, addr: SocketAddr) -> Option<Uri> {
    if uri.scheme() != Some(&Scheme::HTTP) {
        return None;
    }
    let mut parts = uri.clone().into_parts();
    parts.authority = Some(Authority::try_from(addr.to_string()).ok()?);
    Uri::from_parts(parts).ok()
}
