//! `token-sidecar demo`: a self-contained tour on loopback. It starts a small OAuth2 IdP,
//! an echo API that insists on a valid token from that IdP, and the real proxy with a
//! built-in config (compiled by the same code as any config file), then prints the
//! commands to try. Tokens here are demo tokens; the echo API shows their claims, never
//! the token itself.

use crate::config::{Config, Limits};
use crate::error::{json_response, Body};
use crate::runtime::SetupError;
use crate::sidecar::{run, Listeners};
use base64::Engine;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::json;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio::sync::watch;

const CLIENT_ID: &str = "demo-client";
const CLIENT_SECRET: &str = "demo-secret";
const ISSUER: &str = "token-sidecar-demo-idp";
const TOKEN_TTL: u64 = 120;

pub async fn run_demo(shutdown: impl Future<Output = ()>) -> Result<(), SetupError> {
    let io = |e: std::io::Error| SetupError(format!("demo: cannot listen on loopback: {e}"));
    let idp = TcpListener::bind("127.0.0.1:0").await.map_err(io)?;
    let api = TcpListener::bind("127.0.0.1:0").await.map_err(io)?;
    let proxy = bind_preferred(4480).await.map_err(io)?;
    let admin = bind_preferred(4481).await.map_err(io)?;
    let addr = |l: &TcpListener| l.local_addr().map_err(io);
    let (idp_addr, api_addr, proxy_addr, admin_addr) =
        (addr(&idp)?, addr(&api)?, addr(&proxy)?, addr(&admin)?);

    let yaml = demo_config(idp_addr, api_addr, proxy_addr, admin_addr);
    let config = Config::from_text(Path::new("<demo>"), &yaml, &|_| None)
        .map_err(|e| SetupError(format!("demo config: {e}")))?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let idp_task = tokio::spawn(crate::listener::serve(
        idp,
        |_, req| idp_handle(req),
        Limits::default(),
        stop_rx.clone(),
        Duration::from_secs(1),
        "demo-idp",
    ));
    let api_task = tokio::spawn(crate::listener::serve(
        api,
        |_, req| api_handle(req),
        Limits::default(),
        stop_rx,
        Duration::from_secs(1),
        "demo-api",
    ));

    println!(
        "{}",
        instructions(proxy_addr, admin_addr, idp_addr, api_addr)
    );
    let result = run(
        Listeners {
            proxy,
            admin: Some(admin),
            proxy_workers: 1,
        },
        config,
        shutdown,
    )
    .await;
    let _ = stop_tx.send(true);
    let _ = tokio::join!(idp_task, api_task);
    result
}

async fn bind_preferred(port: u16) -> std::io::Result<TcpListener> {
    match TcpListener::bind(("127.0.0.1", port)).await {
        Ok(l) => Ok(l),
        Err(_) => TcpListener::bind("127.0.0.1:0").await,
    }
}

fn demo_config(idp: SocketAddr, api: SocketAddr, proxy: SocketAddr, admin: SocketAddr) -> String {
    format!(
        "listen: {proxy}
admin_listen: {admin}
providers:
  demo:
    token_url: http://{idp}/oauth2/token
    client_id: {CLIENT_ID}
    client_secret: {CLIENT_SECRET}
    scopes: [echo.read]
    prefetch: true
routes:
  - name: forward-demo
    match: {{ host: api.demo.local }}
    provider: demo
    upstream: http://{api}
  - name: reverse-demo
    match: {{ path_prefix: /echo }}
    provider: demo
    upstream: http://{api}
    strip_prefix: true
"
    )
}

fn instructions(proxy: SocketAddr, admin: SocketAddr, idp: SocketAddr, api: SocketAddr) -> String {
    format!(
        "token-sidecar demo is running (Ctrl-C to stop)

  demo IdP   http://{idp}/oauth2/token   (client {CLIENT_ID})
  demo API   http://{api}                (answers 401 without a valid token)
  proxy      http://{proxy}
  admin      http://{admin}

Try it:

  # 1. the API alone refuses you:
  curl -i http://{api}/hello

  # 2. forward proxy (http_proxy; curl reads only the lowercase name): the app names
  #    the API, the sidecar adds the token
  curl -x http://{proxy} http://api.demo.local/hello
  http_proxy=http://{proxy} curl http://api.demo.local/hello

  # 3. reverse proxy: the app's base URL is the sidecar
  curl http://{proxy}/echo/hello

  # 4. what the sidecar knows (never the token itself)
  curl http://{admin}/status
  curl http://{admin}/readyz
  curl -X POST http://{admin}/providers/demo/refresh
"
    )
}

/// The demo IdP: client credentials with HTTP Basic, unsigned demo JWTs.
async fn idp_handle(req: Request<Incoming>) -> Response<Body> {
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
    );
    let authorized = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .is_some_and(|v| v.as_bytes() == expected.as_bytes());
    if req.method() != http::Method::POST || req.uri().path() != "/oauth2/token" {
        return json_response(StatusCode::NOT_FOUND, &json!({"error": "not_found"}));
    }
    let form = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let scope = form_urlencoded::parse(&form)
        .find(|(k, _)| k == "scope")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    if !authorized {
        return json_response(
            StatusCode::UNAUTHORIZED,
            &json!({"error": "invalid_client", "error_description": "Client authentication failed"}),
        );
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let enc = |v: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let claims = json!({"iss": ISSUER, "sub": CLIENT_ID, "scope": scope, "iat": now, "exp": now + TOKEN_TTL, "jti": fastrand::u64(..)});
    let token = format!(
        "{}.{}.demo-signature",
        enc(json!({"alg": "none", "typ": "JWT"})),
        enc(claims)
    );
    json_response(
        StatusCode::OK,
        &json!({"access_token": token, "token_type": "Bearer", "expires_in": TOKEN_TTL, "scope": scope}),
    )
}

/// The demo API: echoes the request and the claims of the token it received.
async fn api_handle(req: Request<Incoming>) -> Response<Body> {
    let bearer = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let claims = bearer.as_deref().and_then(crate::token::jwt::claims);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let valid = claims.as_ref().is_some_and(|c| {
        c.get("iss").and_then(|i| i.as_str()) == Some(ISSUER)
            && c.get("exp")
                .and_then(|e| e.as_u64())
                .is_some_and(|e| e > now)
    });
    if !valid {
        let mut resp = json_response(
            StatusCode::UNAUTHORIZED,
            &json!({"error": "unauthorized", "detail": "this API needs a Bearer token from the demo IdP: send the request through token-sidecar"}),
        );
        resp.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Bearer"),
        );
        return resp;
    }
    tracing::info!(target: "demo_api", path = %req.uri().path(), "demo API received a request with a valid token");
    let mut resp = json_response(
        StatusCode::OK,
        &json!({
            "message": "hello from the demo API: the request arrived with a valid bearer token",
            "method": req.method().as_str(),
            "path": req.uri().path(),
            "host": req.headers().get(http::header::HOST).and_then(|h| h.to_str().ok()),
            "token_claims": claims,
        }),
    );
    resp.headers_mut()
        .insert("x-demo-api", http::HeaderValue::from_static("1"));
    resp
}
