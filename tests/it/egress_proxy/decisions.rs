//! SPEC §11 decisions at the edges: the proxy's 407 to a token request, a name
//! `no_proxy` lists once pinned to its address, loopback without `no_proxy`.

use super::*;
use crate::support::corp_proxy::CorpProxy;

/// An http:// token URL goes to the proxy in absolute-form, so its 407 comes back as an
/// answer: it is the proxy's, not the IdP refusing the client. Transient (503, retried
/// within the fetch), naming the proxy but not the credentials.
#[tokio::test]
async fn a_407_to_an_absolute_form_token_request_is_the_proxys_and_transient() {
    const WRONG: &str = "wr0ng-hunter2-pass";
    let corp = CorpProxy::start(USER, PASSWORD).await;
    let idp = FakeIdp::builder().run().await;
    let api = FakeUpstream::ok().await;
    let token_url = format!("http://idp.corp.example:{}/oauth2/token", idp.addr.port());
    let yaml = format!(
        "egress_proxy: {}\nproviders:\n{}routes:\n  - {{ name: api, match: {{ path_prefix: /api }}, provider: crm, upstream: '{}', egress_proxy: '' }}\n",
        corp.url_with(USER, WRONG),
        provider("crm", &token_url, "    allow_http: true\n    retries: { max_attempts: 2, initial_backoff: 10ms, max_backoff: 10ms }\n"),
        api.url(),
    );
    let sc = TestSidecar::start(&yaml).await;
    let (status, text) = get(&sc, "/api/x").await;
    assert_eq!(status, 503, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["error"], "token_unavailable", "{v}");
    let detail = v["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!(
            "the egress proxy 127.0.0.1:{} answered 407 (proxy authentication required) to the token request for idp.corp.example:{}: it did not accept the credentials",
            corp.addr.port(),
            idp.addr.port()
        )),
        "{detail}"
    );
    assert!(!text.contains("wr0ng") && !text.contains(USER), "{text}");
    // Retried within the fetch, like a network error; the IdP was never reached.
    let tries = corp.seen().iter().filter(|s| s.target == token_url).count();
    assert_eq!(tries, 2, "{:?}", corp.seen());
    assert_eq!(idp.requests(), 0);
    assert!(api.seen().is_empty());
    sc.stop().await;
}

/// Unmatched plain-http traffic whose resolution is checked (here: the port is the
/// proxy listener's) goes to the address checked. When `no_proxy` lists the name, that
/// address, which the list does not name, still goes directly, not through the proxy.
#[tokio::test]
async fn a_listed_name_pinned_to_its_address_stays_direct() {
    let corp = CorpProxy::start(USER, PASSWORD).await;
    // The sidecar on 127.0.0.2:P, the destination on 127.0.0.1:P (what localhost is):
    // the same port, so the sidecar resolves the name to check it is not itself.
    let proxy = tokio::net::TcpListener::bind("127.0.0.2:0").await.unwrap();
    let port = proxy.local_addr().unwrap().port();
    let api = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("127.0.0.1 has the port that 127.0.0.2 was given");
    let hits = Arc::new(Mutex::new(Vec::new()));
    let record = hits.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = api.accept().await {
            let record = record.clone();
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                record.lock().unwrap().push(req.uri().to_string());
                async { Ok::<_, std::convert::Infallible>(Response::new(body("direct"))) }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc),
            );
        }
    });
    let yaml = format!("egress_proxy: {}\nno_proxy: [localhost]\n", corp.url());
    let config =
        token_sidecar::config::Config::from_text(std::path::Path::new("t.yaml"), &yaml, &|_| None)
            .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(token_sidecar::run(
        token_sidecar::Listeners {
            proxy,
            admin: None,
            proxy_workers: 1,
        },
        config,
        async {
            let _ = stopped.await;
        },
    ));
    let sidecar: SocketAddr = ([127, 0, 0, 2], port).into();
    let resp = proxied_client(sidecar)
        .get(format!("http://localhost:{port}/x"))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    assert_eq!(status, 200, "{}", resp.text().await.unwrap());
    assert_eq!(resp.text().await.unwrap(), "direct");
    assert_eq!(*hits.lock().unwrap(), ["/x"]);
    assert!(corp.seen().is_empty(), "{:?}", corp.seen());
    let _ = stop.send(());
    let _ = run.await;
}

/// Loopback is not special: with no `no_proxy`, a token request to an IdP on 127.0.0.1
/// and the upstream on 127.0.0.1 both go through the proxy. Plain http is allowed
/// without `allow_http` because the proxy is on loopback too (nothing crosses the
/// network in cleartext).
#[tokio::test]
async fn a_loopback_idp_and_upstream_go_through_the_proxy_unless_listed() {
    let corp = CorpProxy::start(USER, PASSWORD).await;
    let idp = FakeIdp::builder().run().await;
    let api = FakeUpstream::ok().await;
    let yaml = format!(
        "egress_proxy: {}\nproviders:\n{}routes:\n  - {{ name: api, match: {{ path_prefix: /api }}, provider: crm, upstream: '{}' }}\n",
        corp.url(),
        provider("crm", &idp.token_url(), ""),
        api.url(),
    );
    let sc = TestSidecar::start(&yaml).await;
    let (status, text) = get(&sc, "/api/x").await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        corp.forwards(),
        [idp.token_url(), format!("{}/api/x", api.url())]
    );
    assert_eq!(api.seen()[0].bearer(), Some(idp.issued()[0].as_str()));
    sc.stop().await;
}
