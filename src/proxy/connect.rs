//! CONNECT (`HTTPS_PROXY` traffic). A header cannot be added inside TLS that the sidecar
//! does not terminate, so a CONNECT to a routed host is refused with an explanation
//! (interception is not built yet). Other CONNECTs follow `unmatched`: a blind tunnel,
//! or 403 `no_route`.

use super::Snapshot;
use crate::config::Unmatched;
use crate::error::{Body, ProxyError};
use crate::route;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::time::Duration;
use tokio::net::TcpStream;

const TUNNEL_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn handle(snap: &Snapshot, req: Request<Incoming>) -> Result<Response<Body>, ProxyError> {
    let bad = |d: &str| ProxyError::BadRequest {
        detail: d.to_string(),
    };
    let authority = req
        .uri()
        .authority()
        .cloned()
        .ok_or_else(|| bad("CONNECT needs a host:port target"))?;
    let port = authority
        .port_u16()
        .ok_or_else(|| bad("CONNECT needs a host:port target"))?;
    let host = authority.host();
    if route::names_host(&snap.config.routes, host, port) {
        return Err(ProxyError::InterceptUnavailable {
            detail: format!(
                "{host}:{port} is routed, but its traffic is TLS-encrypted and tls_intercept is not configured, so no header can be added; \
                 send plain http:// through the proxy and let the route's upstream speak https"
            ),
        });
    }
    if snap.config.unmatched == Unmatched::Deny {
        return Err(ProxyError::NoRoute {
            detail: format!("no route matches CONNECT {host}:{port}"),
        });
    }
    let mut upstream = match tokio::time::timeout(
        TUNNEL_CONNECT_TIMEOUT,
        TcpStream::connect(authority.as_str()),
    )
    .await
    {
        Err(_) => {
            return Err(ProxyError::UpstreamTimeout {
                detail: format!("connecting to {authority} timed out"),
            })
        }
        Ok(Err(e)) => {
            return Err(ProxyError::UpstreamUnavailable {
                detail: format!("cannot connect to {authority}: {e}"),
            })
        }
        Ok(Ok(s)) => s,
    };
    let _ = upstream.set_nodelay(true);
    tokio::spawn(async move {
        match hyper::upgrade::on(req).await {
            Ok(upgraded) => {
                let mut client = TokioIo::new(upgraded);
                if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                    tracing::debug!(error = %e, "tunnel closed with an error");
                }
            }
            Err(e) => tracing::debug!(error = %e, "CONNECT upgrade failed"),
        }
    });
    let mut resp = Response::new(crate::error::full(""));
    *resp.status_mut() = StatusCode::OK;
    Ok(resp)
}
