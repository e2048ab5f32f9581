//! `egress_proxy` URLs and the proxy-or-direct decision.

use super::{Egress, NoProxy, ProxyEndpoint};
use std::sync::Arc;

fn endpoint(url: &str) -> ProxyEndpoint {
    ProxyEndpoint::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"))
}

#[test]
fn urls_with_and_without_credentials() {
    let p = endpoint("http://user:pa%24%24w%40rd@Corp-Proxy.example:3128");
    assert_eq!(p.authority(), "corp-proxy.example:3128");
    assert_eq!(p.uri().to_string(), "http://corp-proxy.example:3128/");
    // base64("user:pa$$w@rd")
    assert_eq!(p.auth().unwrap().as_bytes(), b"Basic dXNlcjpwYSQkd0ByZA==");
    assert!(p.auth().unwrap().is_sensitive());
    let p = endpoint("http://[::1]:8080/");
    assert_eq!(p.authority(), "[::1]:8080");
    assert!(p.auth().is_none());
    // A user without a password, and an empty one.
    assert_eq!(
        endpoint("http://alice@p:1").auth().unwrap().as_bytes(),
        b"Basic YWxpY2U6"
    );
    assert_eq!(
        endpoint("http://alice:@p:1").auth().unwrap().as_bytes(),
        b"Basic YWxpY2U6"
    );
}

#[test]
fn bad_urls_are_refused_without_quoting_them() {
    for (url, why) in [
        ("https://u:hunter2@p:3128", "https:// proxy"),
        ("socks5://u:hunter2@p:1080", "must be an http:// URL"),
        ("u:hunter2@p:3128", "must be an http:// URL"),
        ("http://u:hunter2@p", "port is missing"),
        ("http://u:hunter2@p:0", "port is missing"),
        ("http://u:hunter2@p:99999", "not 1 to 65535"),
        ("http://u:hunter2@:3128", "not valid"),
        ("http://u:hunter2@p:3128/path", "no path, query or fragment"),
        ("http://u:hunter2@p:3128?x=1", "no path, query or fragment"),
        ("http://u:hunter2%zz@p:3128", "percent-encoded"),
        ("http://u:hunter2%ff@p:3128", "percent-encoded"),
        ("http://u:hunter2%+1@p:3128", "percent-encoded"),
    ] {
        let e = ProxyEndpoint::parse(url)
            .err()
            .unwrap_or_else(|| panic!("{url} accepted"));
        assert!(e.contains(why), "{url}: {e}");
        assert!(!e.contains("hunter2") && !e.contains("u:"), "{url}: {e}");
    }
}

#[test]
fn credentials_are_never_printed_but_tell_endpoints_apart() {
    let a = endpoint("http://user:hunter2@p.example:3128");
    for shown in [format!("{a:?}"), a.to_string()] {
        assert!(
            !shown.contains("hunter2") && !shown.contains("user"),
            "{shown}"
        );
        assert!(shown.contains("p.example:3128"), "{shown}");
    }
    assert_eq!(a, endpoint("http://user:hunter2@P.example:3128/"));
    assert_ne!(a, endpoint("http://user:other@p.example:3128"));
    assert_ne!(a, endpoint("http://p.example:3128"));
    let egress = Egress::new(Some(Arc::new(a)), Arc::new(NoProxy::default()));
    assert!(!format!("{egress:?}").contains("hunter2"));
}

#[test]
fn no_proxy_is_the_only_bypass() {
    let proxy = Arc::new(endpoint("http://p.example:3128"));
    let no_proxy = Arc::new(NoProxy::parse(&["*.internal.example", "10.0.0.0/8"]).unwrap());
    let egress = Egress::new(Some(proxy), no_proxy);
    for host in [
        "localhost",
        "127.0.0.1",
        "[::1]",
        "api.example",
        "internal.example",
    ] {
        assert!(
            egress.proxy_for(host).is_some(),
            "{host} goes through the proxy"
        );
    }
    for host in ["a.internal.example", "10.9.8.7"] {
        assert!(egress.proxy_for(host).is_none(), "{host} is direct");
    }
    assert!(Egress::direct().proxy_for("api.example").is_none());
}

#[test]
fn cleartext_leaves_the_machine_only_through_a_remote_proxy() {
    let listed = Arc::new(NoProxy::parse(&["localhost"]).unwrap());
    for (url, remote) in [
        ("http://p.example:3128", true),
        ("http://10.1.2.3:3128", true),
        ("http://127.0.0.1:3128", false),
        ("http://u:p@LOCALHOST:3128", false),
        ("http://[::1]:3128", false),
        ("http://[::ffff:127.0.0.1]:3128", false),
    ] {
        let proxy = Arc::new(endpoint(url));
        assert_eq!(proxy.is_loopback(), !remote, "{url}");
        let egress = Egress::new(Some(proxy), listed.clone());
        assert_eq!(
            egress.remote_proxy_for("127.0.0.1").is_some(),
            remote,
            "{url}"
        );
        assert!(egress.remote_proxy_for("localhost").is_none(), "{url}");
    }
    assert_eq!(endpoint("http://[::1]:3128").host(), "[::1]");
    assert!(Egress::direct().remote_proxy_for("127.0.0.1").is_none());
}

#[test]
fn the_idp_clients_proxy_prints_no_credentials() {
    let proxy = endpoint("http://u:p@p.example:3128");
    let shown = format!("{:?}", super::reqwest_proxy(&proxy).unwrap());
    assert!(!shown.contains("u:p") && !shown.contains("dTpw"), "{shown}");
}
