//! SPEC §11 tunnels to destinations that speak first (an h2 server's SETTINGS, an SSH
//! banner) through a proxy that hands their first bytes over with its `200`.

use super::*;
use crate::support::corp_proxy::CorpProxy;

/// An h2c-only server (no HTTP/1.1 sniffing): like real h2 servers it sends its SETTINGS
/// as soon as it accepts, before the client's preface. Records each request's version and
/// `Authorization`.
async fn h2c_only_api() -> (SocketAddr, Arc<Mutex<Vec<(http::Version, Option<String>)>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let record = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let record = record.clone();
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let auth = req
                    .headers()
                    .get("authorization")
                    .map(|v| v.to_str().unwrap().to_string());
                record.lock().unwrap().push((req.version(), auth));
                async { Ok::<_, std::convert::Infallible>(Response::new(body("ok"))) }
            });
            tokio::spawn(
                hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc),
            );
        }
    });
    (addr, seen)
}

/// gRPC to a plain-http upstream goes h2c (prior knowledge) in a `CONNECT` tunnel. The
/// upstream speaks first and this proxy hands its SETTINGS over in the same write as its
/// `200`: they belong to the tunnel, not to the proxy's answer.
#[tokio::test]
async fn a_destination_that_speaks_first_through_the_tunnel() {
    let corp = CorpProxy::start_eager(USER, PASSWORD).await;
    let idp = FakeIdp::builder().run().await;
    let (api, seen) = h2c_only_api().await;
    let yaml = format!(
        "egress_proxy: {}\nproviders:\n{}routes:\n  - {{ name: grpc, match: {{ path_prefix: /grpc }}, provider: crm, upstream: 'http://grpc.corp.example:{}', allow_http: true }}\n",
        corp.url(),
        provider("crm", &idp.token_url(), "    no_proxy: ['127.0.0.1']\n"),
        api.port(),
    );
    let sc = TestSidecar::start(&yaml).await;
    let _ = direct_client();
    let client = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    for _ in 0..2 {
        let resp = client
            .post(sc.url("/grpc/pkg.Service/Method"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(vec![0u8, 0, 0, 0, 0])
            .send()
            .await
            .unwrap();
        let status = resp.status();
        assert_eq!(status, 200, "{}", resp.text().await.unwrap());
    }
    let bearer = Some(format!("Bearer {}", idp.issued()[0]));
    assert_eq!(
        *seen.lock().unwrap(),
        vec![(http::Version::HTTP_2, bearer); 2]
    );
    assert_eq!(
        corp.connects(),
        [format!("grpc.corp.example:{}", api.port())],
        "one pooled h2c tunnel"
    );
    sc.stop().await;
}

/// A blind tunnel (unmatched CONNECT) to a server that speaks first, an SSH-like banner,
/// through a proxy that sends the banner with its `200`: the app reads the banner.
#[tokio::test]
async fn a_blind_tunnel_to_a_server_that_speaks_first() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let corp = CorpProxy::start_eager(USER, PASSWORD).await;
    let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = server.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = server.accept().await {
            tokio::spawn(async move {
                tcp.write_all(b"SSH-2.0-fake\r\n").await.unwrap();
                let mut buf = [0u8; 64];
                while let Ok(n) = tcp.read(&mut buf).await {
                    if n == 0 || tcp.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    let sc = TestSidecar::start(&format!("egress_proxy: {}\n", corp.url())).await;
    let authority = format!("ssh.corp.example:{port}");
    let mut tcp = tokio::net::TcpStream::connect(sc.proxy).await.unwrap();
    tcp.write_all(format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while !got.ends_with(b"SSH-2.0-fake\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
            .await
            .expect("the banner arrives")
            .unwrap();
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got).to_string();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    tcp.write_all(b"ping").await.unwrap();
    let mut echo = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), tcp.read_exact(&mut echo))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&echo, b"ping");
    assert_eq!(corp.connects(), [authority]);
    sc.stop().await;
}
