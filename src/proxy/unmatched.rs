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
        return Err(ProxyError::NoRoute {
            detail: format!(
                "no route matches {} {host}{}",
                req.method(),
                req.uri().path()
            ),
        });
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
    let reach = Reach {
        own: &runtime.own,
        no_local: shared,
    };
    let mut client = &snap.default_client;
    if let (Some(h), Some(port)) = (dest.uri.host(), target::port_of(&dest.uri)) {
        let checked = guard::destination(h, port, reach)
            .await
            .map_err(|e| match e {
                ProxyError::UpstreamUnavailable { .. } if shared => {
                    ProxyError::UpstreamUnavailable {
                        detail: format!("cannot reach {host}"),
                    }
                }
                other => other,
            })?;
        // Through the egress proxy (SPEC §11), the proxy connects: it gets the name, and
        // the check above has refused what must not be reached whatever it resolves to.
        // Directly (no_proxy lists the name), the connection goes to the address checked,
        // by a direct client: the address itself may not be listed.
        let proxied = snap.config.egress.proxy_for(h).is_some();
        if let (Some(checked), false) = (checked, proxied) {
            let pinned_uri = pinned(&dest.uri, checked);
            if pinned_uri != dest.uri {
                dest.uri = pinned_uri;
                client = &snap.direct_client;
            }
        }
    }
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

/// For plain http, `uri` with its authority replaced by the address that was checked,
/// so the connection goes where the check looked (the Host header keeps the name). TLS
/// needs the name for its certificate check; an https URI is left as it is.
fn pinned(uri: &Uri, addr: SocketAddr) -> Uri {
    if uri.scheme() != Some(&Scheme::HTTP) {
        return uri.clone();
    }
    let mut parts = uri.clone().into_parts();
    parts.authority = Authority::try_from(addr.to_string()).ok();
    Uri::from_parts(parts).unwrap_or_else(|_| uri.clone())
}
