//! Prometheus metrics (SPEC §7). Every series is a set of atomics owned by the thing it
//! measures (a route, a token source, the sidecar), so recording is a relaxed
//! `fetch_add` and never takes a lock; `/metrics` reads them all and renders text format
//! 0.0.4. Labels are route and provider names, never anything from a request.

use crate::store::Store;
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
    /// Tokens taken from the shared store instead of the IdP.
    adoptions: AtomicU64,
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

    pub fn adopted(&self) {
        self.adoptions.fetch_add(1, Relaxed);
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
    tunnels: [AtomicU64; 4],
    tunnels_active: AtomicU64,
    tunnels_refused: [AtomicU64; 3],
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
    /// CONNECT to a routed host whose first bytes were plain HTTP (h2c or HTTP/1.1).
    Plaintext,
}

/// Why a tunnel to a routed host was closed after its `200`, before anything was served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TunnelRefusal {
    /// TLS arrived and `tls_intercept` is not configured: no header can be added.
    TlsNotIntercepted,
    /// Nothing decisive arrived within `header_read_timeout`.
    HeaderReadTimeout,
    /// TLS arrived in a tunnel that only a plain-http route names, and `unmatched: deny`.
    NoRoute,
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

    /// Counts a tunnel closed after its `200` without being served.
    pub fn tunnel_refused(&self, why: TunnelRefusal) {
        self.tunnels_refused[why as usize].fetch_add(1, Relaxed);
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
/// `store`: the shared token store, when configured (its series are left out otherwise).
pub fn render<'a>(
    routes: impl Iterator<Item = (&'a str, &'a RouteMetrics)> + Clone,
    providers: impl Iterator<Item = (&'a str, &'a ProviderMetrics)> + Clone,
    global: &GlobalMetrics,
    store: Option<&Store>,
) -> String {
    let mut out = String::with_capacity(8192);
    render_requests(&mut out, routes.clone());
    render_tokens(&mut out, providers);
    if let Some(store) = store {
        render_store(&mut out, store);
    }
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
    for (p, m) in providers.clone() {
        let (p, n) = (escape(p), m.exposed.load(Relaxed));
        let _ = writeln!(out, "{name}{{provider=\"{p}\"}} {n}");
    }
    let name = "token_sidecar_token_adoptions_total";
    let help = "Tokens taken from the shared token store instead of the IdP.";
    header(out, name, "counter", help);
    for (p, m) in providers {
        let (p, n) = (escape(p), m.adoptions.load(Relaxed));
        let _ = writeln!(out, "{name}{{provider=\"{p}\"}} {n}");
    }
}

/// The shared token store: whether it answers, and its operations by outcome (every
/// combination, zeros included, so rates work from the first scrape).
fn render_store(out: &mut String, store: &Store) {
    let name = "token_sidecar_store_up";
    header(
        out,
        name,
        "gauge",
        "1 while the shared token store answers, else 0.",
    );
    let _ = writeln!(out, "{name} {}", u8::from(store.up()));
    let name = "token_sidecar_store_operations_total";
    let help = "Shared token store operations, by operation and outcome.";
    header(out, name, "counter", help);
    for (op, outcome, n) in store.operations() {
        let (op, outcome) = (op.as_str(), outcome.as_str());
        let _ = writeln!(out, "{name}{{op=\"{op}\",outcome=\"{outcome}\"}} {n}");
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

/// The sidecar-wide series: config reloads by outcome, tunnels by kind, open tunnels,
/// tunnels refused after their `200` by reason.
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
    let kinds = ["blind", "intercepted", "upgrade", "plaintext"]; // `TunnelKind` order
    for (kind, c) in kinds.iter().zip(&global.tunnels) {
        let n = c.load(Relaxed);
        let _ = writeln!(out, "{name}{{kind=\"{kind}\"}} {n}");
    }
    let name = "token_sidecar_tunnels_active";
    let help = "CONNECT tunnels open now.";
    header(out, name, "gauge", help);
    let _ = writeln!(out, "{name} {}", global.tunnels_active.load(Relaxed));
    let name = "token_sidecar_tunnels_refused_total";
    let help =
        "CONNECT tunnels to routed hosts closed after their 200 without being served, by reason.";
    header(out, name, "counter", help);
    // `TunnelRefusal` order
    let reasons = ["tls_not_intercepted", "header_read_timeout", "no_route"];
    for (reason, c) in reasons.iter().zip(&global.tunnels_refused) {
        let n = c.load(Relaxed);
        let _ = writeln!(out, "{name}{{reason=\"{reason}\"}} {n}");
    }
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

mod process;

/// Prometheus label-value escaping.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests;
