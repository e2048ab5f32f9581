//! Prometheus metrics (SPEC §7). Every series is a set of atomics owned by the thing it
//! measures (a route, a token source, the sidecar), so recording is a relaxed
//! `fetch_add` and never takes a lock; `/metrics` reads them all and renders text format
//! 0.0.4. Labels are route and provider names, never anything from a request.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds (seconds) of the latency histograms' buckets.
const BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// A latency histogram: per-bucket counts (not cumulative), a count and a sum.
#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_nanos
            .fetch_add(d.as_nanos().min(u64::MAX as u128) as u64, Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (bound, n) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += n.load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum{{{labels}}} {}",
            self.sum_nanos.load(Relaxed) as f64 / 1e9
        );
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

/// Final status class of a replayed request.
#[derive(Clone, Copy)]
pub enum ReplayOutcome {
    Success,
    ClientError,
    ServerError,
}

/// Kinds of upstream failure.
#[derive(Clone, Copy)]
pub enum UpstreamErrorKind {
    Connect,
    Timeout,
    Tls,
}

/// The series of one route (or of `-`, traffic that matched none).
pub struct RouteMetrics {
    /// Indexed by status code (0..=599).
    requests: Box<[AtomicU64]>,
    duration: Histogram,
    replays: [AtomicU64; 3],
    upstream_errors: [AtomicU64; 3],
}

impl Default for RouteMetrics {
    fn default() -> Self {
        Self {
            requests: (0..600).map(|_| AtomicU64::new(0)).collect(),
            duration: Histogram::default(),
            replays: Default::default(),
            upstream_errors: Default::default(),
        }
    }
}

impl RouteMetrics {
    pub fn request(&self, status: u16, took: Duration) {
        if let Some(c) = self.requests.get(usize::from(status)) {
            c.fetch_add(1, Relaxed);
        }
        self.duration.observe(took);
    }

    pub fn replay(&self, outcome: ReplayOutcome) {
        self.replays[outcome as usize].fetch_add(1, Relaxed);
    }

    pub fn upstream_error(&self, kind: UpstreamErrorKind) {
        self.upstream_errors[kind as usize].fetch_add(1, Relaxed);
    }
}

/// The series of one token source.
#[derive(Default)]
pub struct ProviderMetrics {
    fetch_success: AtomicU64,
    fetch_error: AtomicU64,
    fetch_duration: Histogram,
    /// Unix seconds at which the current token expires (0: none yet).
    expiry: AtomicU64,
    /// Tokens handed out by `GET /providers/{name}/token`.
    exposed: AtomicU64,
}

impl ProviderMetrics {
    pub fn fetch(&self, ok: bool, took: Duration) {
        if ok {
            &self.fetch_success
        } else {
            &self.fetch_error
        }
        .fetch_add(1, Relaxed);
        self.fetch_duration.observe(took);
    }

    pub fn exposed(&self) {
        self.exposed.fetch_add(1, Relaxed);
    }

    pub fn set_expiry(&self, unix_secs: u64) {
        self.expiry.store(unix_secs, Relaxed);
    }
}

/// Sidecar-wide series.
#[derive(Default)]
pub struct GlobalMetrics {
    reload_success: AtomicU64,
    reload_error: AtomicU64,
    tunnels: [AtomicU64; 3],
    tunnels_active: AtomicU64,
    in_flight: AtomicU64,
}

/// What a tunnel carries.
#[derive(Clone, Copy)]
pub enum TunnelKind {
    /// CONNECT to a host no intercepting route names: bytes pass untouched.
    Blind,
    /// CONNECT terminated with a minted certificate.
    Intercepted,
    /// An HTTP/1.1 upgrade (WebSocket) after `101`.
    Upgrade,
}

impl GlobalMetrics {
    pub fn reload(&self, ok: bool) {
        if ok {
            &self.reload_success
        } else {
            &self.reload_error
        }
        .fetch_add(1, Relaxed);
    }

    /// Counts a tunnel; the returned guard keeps it in the active gauge while it lives.
    pub fn tunnel_opened(&self, kind: TunnelKind) -> ActiveTunnel<'_> {
        self.tunnels[kind as usize].fetch_add(1, Relaxed);
        self.tunnels_active.fetch_add(1, Relaxed);
        ActiveTunnel(&self.tunnels_active)
    }
}

impl GlobalMetrics {
    /// Counts a request in flight until the returned guard is dropped.
    pub fn request_started(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Relaxed);
        InFlight(&self.in_flight)
    }
}

/// Decrements the in-flight gauge when dropped.
pub struct InFlight<'a>(&'a AtomicU64);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// Decrements the active-tunnel gauge when dropped.
pub struct ActiveTunnel<'a>(&'a AtomicU64);

impl Drop for ActiveTunnel<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// Renders every series. `routes` and `providers` are (name, series) in display order.
pub fn render<'a>(
    routes: impl Iterator<Item = (&'a str, &'a RouteMetrics)> + Clone,
    providers: impl Iterator<Item = (&'a str, &'a ProviderMetrics)> + Clone,
    global: &GlobalMetrics,
) -> String {
    let mut out = String::with_capacity(8192);
    render_requests(&mut out, routes.clone());
    render_tokens(&mut out, providers);
    render_replays(&mut out, routes.clone());
    render_reloads_and_tunnels(&mut out, global);
    render_upstream_errors(&mut out, routes);
    render_process(&mut out, global);
    out
}

/// Writes a family's `# HELP` and `# TYPE` lines.
fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Requests by route and status (statuses never seen are left out), then their latency.
fn render_requests<'a>(
    out: &mut String,
    routes: impl Iterator<Item = (&'a str, &'a RouteMetrics)> + Clone,
) {
    let name = "token_sidecar_requests_total";
    let help = "Requests served, by route and final status.";
    header(out, name, "counter", help);
    for (route, m) in routes.clone() {
        let route = escape(route);
        for (status, c) in m.requests.iter().enumerate() {
            let n = c.load(Relaxed);
            if n > 0 {
                let _ = writeln!(out, "{name}{{route=\"{route}\",status=\"{status}\"}} {n}");
            }
        }
    }
    let name = "token_sidecar_request_duration_seconds";
    let help = "Time to the response headers, by route.";
    header(out, name, "histogram", help);
    for (route, m) in routes {
        let labels = format!("route=\"{}\"", escape(route));
        m.duration.render(out, name, &labels);
    }
}

/// The token sources' series: fetches by outcome, fetch latency, expiry, exposures.
fn render_tokens<'a>(
    out: &mut String,
    providers: impl Iterator<Item = (&'a str, &'a ProviderMetrics)> + Clone,
) {
    let name = "token_sidecar_token_fetches_total";
    let help = "Token requests to the IdP, by outcome.";
    header(out, name, "counter", help);
    for (p, m) in providers.clone() {
        let p = escape(p);
        for (outcome, c) in [("success", &m.fetch_success), ("error", &m.fetch_error)] {
            let n = c.load(Relaxed);
            let _ = writeln!(out, "{name}{{provider=\"{p}\",outcome=\"{outcome}\"}} {n}");
        }
    }
    let name = "token_sidecar_token_fetch_duration_seconds";
    let help = "Duration of token requests to the IdP.";
    header(out, name, "histogram", help);
    for (p, m) in providers.clone() {
        let labels = format!("provider=\"{}\"", escape(p));
        m.fetch_duration.render(out, name, &labels);
    }
    let name = "token_sidecar_token_expiry_timestamp_seconds";
    let help = "Unix time at which the current token expires (0: none).";
    header(out, name, "gauge", help);
    for (p, m) in providers.clone() {
        let (p, n) = (escape(p), m.expiry.load(Relaxed));
        let _ = writeln!(out, "{name}{{provider=\"{p}\"}} {n}");
    }
    let name = "token_sidecar_token_exposed_total";
    let help = "Tokens served by GET /providers/{name}/token (expose_token).";
    header(out, name, "counter", help);
    for (p, m) in providers {
        let (p, n) = (escape(p), m.exposed.load(Relaxed));
        let _ = writeln!(out, "{name}{{provider=\"{p}\"}} {n}");
    }
}

/// Replays by route and final status class, in [`ReplayOutcome`] order.
fn render_replays<'a>(out: &mut String, routes: impl Iterator<Item = (&'a str, &'a RouteMetrics)>) {
    let name = "token_sidecar_token_replays_total";
    let help = "Requests replayed with a renewed token, by final status class.";
    header(out, name, "counter", help);
    // Traffic that matched no route (`route="-"`) carries no token and is never replayed.
    for (route, m) in routes.filter(|(r, _)| *r != "-") {
        let route = escape(route);
        for (outcome, c) in ["2xx", "4xx", "5xx"].iter().zip(&m.replays) {
            let n = c.load(Relaxed);
            let _ = writeln!(out, "{name}{{route=\"{route}\",outcome=\"{outcome}\"}} {n}");
        }
    }
}

/// The sidecar-wide series: config reloads by outcome, tunnels by kind, open tunnels.
fn render_reloads_and_tunnels(out: &mut String, global: &GlobalMetrics) {
    let name = "token_sidecar_config_reloads_total";
    let help = "Config reloads, by outcome.";
    header(out, name, "counter", help);
    let reloads = [
        ("success", &global.reload_success),
        ("error", &global.reload_error),
    ];
    for (outcome, c) in reloads {
        let n = c.load(Relaxed);
        let _ = writeln!(out, "{name}{{outcome=\"{outcome}\"}} {n}");
    }
    let name = "token_sidecar_tunnels_total";
    let help = "CONNECT tunnels opened, by kind.";
    header(out, name, "counter", help);
    let kinds = ["blind", "intercepted", "upgrade"]; // `TunnelKind` order
    for (kind, c) in kinds.iter().zip(&global.tunnels) {
        let n = c.load(Relaxed);
        let _ = writeln!(out, "{name}{{kind=\"{kind}\"}} {n}");
    }
    let name = "token_sidecar_tunnels_active";
    let help = "CONNECT tunnels open now.";
    header(out, name, "gauge", help);
    let _ = writeln!(out, "{name} {}", global.tunnels_active.load(Relaxed));
}

/// Upstream failures by route and kind, in [`UpstreamErrorKind`] order.
fn render_upstream_errors<'a>(
    out: &mut String,
    routes: impl Iterator<Item = (&'a str, &'a RouteMetrics)>,
) {
    let name = "token_sidecar_upstream_errors_total";
    let help = "Upstream failures, by route and kind.";
    header(out, name, "counter", help);
    for (route, m) in routes {
        let route = escape(route);
        for (kind, c) in ["connect", "timeout", "tls"].iter().zip(&m.upstream_errors) {
            let n = c.load(Relaxed);
            let _ = writeln!(out, "{name}{{route=\"{route}\",kind=\"{kind}\"}} {n}");
        }
    }
}

/// The build, requests in flight, and the process (the Prometheus client libraries'
/// standard `process_*` names; read from `/proc`, left out where there is none).
fn render_process(out: &mut String, global: &GlobalMetrics) {
    let name = "token_sidecar_build_info";
    header(out, name, "gauge", "The running build; always 1.");
    let _ = writeln!(out, "{name}{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"));
    let name = "token_sidecar_requests_in_flight";
    header(out, name, "gauge", "Proxy requests being served now.");
    let _ = writeln!(out, "{name} {}", global.in_flight.load(Relaxed));
    let Some(p) = process::read() else {
        return;
    };
    let families = [
        (
            "process_cpu_seconds_total",
            "counter",
            "User and system CPU time spent, in seconds.",
            p.cpu_seconds,
        ),
        (
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size, in bytes.",
            p.resident_bytes as f64,
        ),
        (
            "process_open_fds",
            "gauge",
            "Open file descriptors.",
            p.open_fds as f64,
        ),
        (
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since the Unix epoch, in seconds.",
            p.start_time_seconds,
        ),
    ];
    for (name, kind, help, value) in families {
        header(out, name, kind, help);
        let _ = writeln!(out, "{name} {value}");
    }
}

/// Process figures from `/proc` (Linux).
mod process {
    /// `/proc` reports CPU times and start times in clock ticks of this length on every
    /// Linux (USER_HZ), whatever the kernel's own tick rate.
    const TICKS_PER_SECOND: f64 = 100.0;

    pub struct Process {
        pub cpu_seconds: f64,
        pub resident_bytes: u64,
        pub open_fds: usize,
        pub start_time_seconds: f64,
    }

    pub fn read() -> Option<Process> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the command name, which is in parentheses and may hold spaces.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3)?.parse::<f64>().ok();
        let (utime, stime, start_ticks) = (field(14)?, field(15)?, field(22)?);
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let rss_kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        let boot: f64 = std::fs::read_to_string("/proc/stat")
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("btime "))?
            .trim()
            .parse()
            .ok()?;
        Some(Process {
            cpu_seconds: (utime + stime) / TICKS_PER_SECOND,
            resident_bytes: rss_kib * 1024,
            open_fds: std::fs::read_dir("/proc/self/fd")
                .map(|d| d.count())
                .unwrap_or(0),
            start_time_seconds: boot + start_ticks / TICKS_PER_SECOND,
        })
    }
}

/// Prometheus label-value escaping.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
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
        let text = render([("a\"b", &r)].into_iter(), [("crm", &p)].into_iter(), &g);
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
                "token_sidecar_token_replays_total counter",
                "token_sidecar_config_reloads_total counter",
                "token_sidecar_tunnels_total counter",
                "token_sidecar_tunnels_active gauge",
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
        // replays 2×3, reloads 2, tunnels 3, active 1, upstream errors 2×3, build 1,
        // in flight 1, process 4.
        assert_eq!(
            series,
            2 + 38 + 2 + 19 + 1 + 1 + 6 + 2 + 3 + 1 + 6 + 1 + 1 + 4,
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
        let text = render([("a", &r)].into_iter(), [("crm", &p)].into_iter(), &g);
        assert!(
            text.contains("token_sidecar_requests_in_flight 1\n"),
            "{text}"
        );
        drop(guard);
        let text = render([("a", &r)].into_iter(), [("crm", &p)].into_iter(), &g);
        assert!(
            text.contains("token_sidecar_requests_in_flight 0\n"),
            "{text}"
        );
    }
}
