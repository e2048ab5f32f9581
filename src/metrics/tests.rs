//! Rendering tests: every family once, in order, with the right series.

use super::*;

#[test]
fn renders_counters_and_cumulative_histograms() {
    let r = RouteMetrics::default();
    r.request(200, Duration::from_millis(3));
    r.request(200, Duration::from_millis(30));
    r.request(503, Duration::from_secs(100));
    r.replay(ReplayOutcome::Success);
    r.upstream_error(UpstreamErrorKind::Tls);
    let p = ProviderMetrics::default();
    p.fetch(true, Duration::from_millis(20));
    p.set_expiry(1_900_000_000);
    let g = GlobalMetrics::default();
    g.reload(false);
    let text = render(
        [("a\"b", &r)].into_iter(),
        [("crm", &p)].into_iter(),
        &g,
        None,
    );
    for line in [
        "token_sidecar_requests_total{route=\"a\\\"b\",status=\"200\"} 2",
        "token_sidecar_requests_total{route=\"a\\\"b\",status=\"503\"} 1",
        "token_sidecar_request_duration_seconds_bucket{route=\"a\\\"b\",le=\"0.005\"} 1",
        "token_sidecar_request_duration_seconds_bucket{route=\"a\\\"b\",le=\"0.05\"} 2",
        "token_sidecar_request_duration_seconds_bucket{route=\"a\\\"b\",le=\"60\"} 2",
        "token_sidecar_request_duration_seconds_bucket{route=\"a\\\"b\",le=\"+Inf\"} 3",
        "token_sidecar_request_duration_seconds_count{route=\"a\\\"b\"} 3",
        "token_sidecar_token_fetches_total{provider=\"crm\",outcome=\"success\"} 1",
        "token_sidecar_token_expiry_timestamp_seconds{provider=\"crm\"} 1900000000",
        "token_sidecar_token_replays_total{route=\"a\\\"b\",outcome=\"2xx\"} 1",
        "token_sidecar_config_reloads_total{outcome=\"error\"} 1",
        "token_sidecar_upstream_errors_total{route=\"a\\\"b\",kind=\"tls\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line}\n{text}");
    }
}

/// Every family once, with HELP and TYPE, in the order `/metrics` has always used; one
/// line per series (histograms: 16 buckets, +Inf, sum, count).
#[test]
fn renders_each_family_once_in_order() {
    let (r, p, g) = (
        RouteMetrics::default(),
        ProviderMetrics::default(),
        GlobalMetrics::default(),
    );
    r.request(200, Duration::from_millis(3));
    let text = render(
        [("a", &r), ("b", &r)].into_iter(),
        [("crm", &p)].into_iter(),
        &g,
        None,
    );
    let types: Vec<_> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .collect();
    assert_eq!(
        types,
        [
            "token_sidecar_requests_total counter",
            "token_sidecar_request_duration_seconds histogram",
            "token_sidecar_token_fetches_total counter",
            "token_sidecar_token_fetch_duration_seconds histogram",
            "token_sidecar_token_expiry_timestamp_seconds gauge",
            "token_sidecar_token_exposed_total counter",
            "token_sidecar_token_adoptions_total counter",
            "token_sidecar_token_replays_total counter",
            "token_sidecar_config_reloads_total counter",
            "token_sidecar_tunnels_total counter",
            "token_sidecar_tunnels_active gauge",
            "token_sidecar_tunnels_refused_total counter",
            "token_sidecar_upstream_errors_total counter",
            "token_sidecar_build_info gauge",
            "token_sidecar_requests_in_flight gauge",
            "process_cpu_seconds_total counter",
            "process_resident_memory_bytes gauge",
            "process_open_fds gauge",
            "process_start_time_seconds gauge",
        ]
    );
    let series = text.lines().filter(|l| !l.starts_with('#')).count();
    // requests 2, durations 2×19, fetches 2, fetch duration 19, expiry 1, exposed 1,
    // adoptions 1, replays 2×3, reloads 2, tunnels 4, active 1, refused 3, upstream
    // errors 2×3, build 1, in flight 1, process 4.
    assert_eq!(
        series,
        2 + 38 + 2 + 19 + 1 + 1 + 1 + 6 + 2 + 4 + 1 + 3 + 6 + 1 + 1 + 4,
        "{text}"
    );
    assert_eq!(text.lines().count(), series + 2 * types.len());
    let last = "token_sidecar_upstream_errors_total{route=\"b\",kind=\"tls\"} 0\n";
    assert!(text.contains(last), "{text}");
    assert!(text.contains(&format!(
        "token_sidecar_build_info{{version=\"{}\"}} 1\n",
        env!("CARGO_PKG_VERSION")
    )));
    let rss: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        rss > 1e6,
        "a running test process has more than 1 MB resident: {rss}"
    );
}

#[test]
fn traffic_without_a_route_has_no_replay_series() {
    let (r, p, g) = (
        RouteMetrics::default(),
        ProviderMetrics::default(),
        GlobalMetrics::default(),
    );
    let text = render(
        [("a", &r), ("-", &r)].into_iter(),
        [("crm", &p)].into_iter(),
        &g,
        None,
    );
    assert!(text.contains("token_sidecar_token_replays_total{route=\"a\",outcome=\"2xx\"} 0"));
    assert!(
        !text.contains("token_sidecar_token_replays_total{route=\"-\""),
        "{text}"
    );
    assert!(
        text.contains("token_sidecar_request_duration_seconds_count{route=\"-\"}"),
        "{text}"
    );
    let guard = g.request_started();
    let text = render([("a", &r)].into_iter(), [("crm", &p)].into_iter(), &g, None);
    assert!(
        text.contains("token_sidecar_requests_in_flight 1\n"),
        "{text}"
    );
    drop(guard);
    let text = render([("a", &r)].into_iter(), [("crm", &p)].into_iter(), &g, None);
    assert!(
        text.contains("token_sidecar_requests_in_flight 0\n"),
        "{text}"
    );
}

#[tokio::test]
async fn store_series_appear_with_a_store_only() {
    use crate::secret::Secret;
    use crate::store::{Endpoint, Store, StoreConfig};
    let (r, p, g) = (
        RouteMetrics::default(),
        ProviderMetrics::default(),
        GlobalMetrics::default(),
    );
    p.adopted();
    p.adopted();
    let text = render([("a", &r)].into_iter(), [("crm", &p)].into_iter(), &g, None);
    assert!(text.contains("token_sidecar_token_adoptions_total{provider=\"crm\"} 2\n"));
    assert!(!text.contains("token_sidecar_store"), "{text}");
    // Nothing listens on port 1: the store is not up.
    let store = Store::new(&StoreConfig {
        endpoint: Endpoint::Standalone("redis://127.0.0.1:1".into()),
        username: None,
        password: None,
        ca_file: None,
        key_prefix: "p:".into(),
        timeout: Duration::from_millis(50),
        encryption_key: Secret::new("k".repeat(32)),
    })
    .unwrap();
    let text = render(
        [("a", &r)].into_iter(),
        [("crm", &p)].into_iter(),
        &g,
        Some(&store),
    );
    assert!(
        text.contains("# TYPE token_sidecar_store_up gauge\ntoken_sidecar_store_up 0\n"),
        "{text}"
    );
    assert!(
        text.contains("token_sidecar_store_operations_total{op=\"get\",outcome=\"ok\"} 0\n"),
        "{text}"
    );
    assert!(
        text.contains("token_sidecar_store_operations_total{op=\"lease\",outcome=\"lost\"} 0\n"),
        "{text}"
    );
}
