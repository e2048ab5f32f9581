//! The running sidecar: the current [`Snapshot`] (config plus the runtime objects it
//! needs), the token sources, connection pools and metrics that outlive snapshots,
//! config reloads, and [`run`].

use crate::config::{Config, Grant, ProviderConfig, RouteConfig, TokenKey};
use crate::metrics::{GlobalMetrics, RouteMetrics};
use crate::token::{ExchangeSource, TokenSource};
use crate::upstream::{Client, Pools, Protocol};
use arc_swap::ArcSwap;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Everything a request needs, immutable. A request keeps the snapshot it started with.
pub struct Snapshot {
    pub config: Arc<Config>,
    /// Parallel to `config.routes`.
    pub routes: Vec<RouteRuntime>,
    /// By provider name.
    pub providers: BTreeMap<String, ProviderRuntime>,
    /// For traffic that matched no route.
    pub default_client: Client,
    /// Metrics of traffic that matched no route (`route="-"`).
    pub unmatched_metrics: Arc<RouteMetrics>,
    /// Mints certificates for intercepted CONNECTs (`tls_intercept`).
    pub interceptor: Option<Arc<crate::intercept::Interceptor>>,
}

/// A provider as configured, and the token source serving it. Providers whose token
/// would be identical (same IdP, client, scopes, …) share one source and one token.
pub struct ProviderRuntime {
    pub config: Arc<ProviderConfig>,
    pub tokens: Tokens,
}

/// Where a provider's tokens come from: one cached token, or one per subject (token
/// exchange).
#[derive(Clone)]
pub enum Tokens {
    Single(Arc<TokenSource>),
    Exchange(Arc<ExchangeSource>),
}

impl Tokens {
    fn new(config: Arc<ProviderConfig>) -> Result<Tokens, String> {
        Ok(match config.grant {
            Grant::TokenExchange(_) => Tokens::Exchange(ExchangeSource::new(config)?),
            _ => Tokens::Single(TokenSource::new(config)?),
        })
    }

    /// The single token source (not for token exchange).
    pub fn single(&self) -> Option<&Arc<TokenSource>> {
        match self {
            Tokens::Single(s) => Some(s),
            Tokens::Exchange(_) => None,
        }
    }

    pub fn metrics(&self) -> &crate::metrics::ProviderMetrics {
        match self {
            Tokens::Single(s) => &s.metrics,
            Tokens::Exchange(x) => &x.metrics,
        }
    }

    pub fn status(&self) -> crate::token::ProviderStatus {
        match self {
            Tokens::Single(s) => s.status(),
            Tokens::Exchange(x) => x.status(),
        }
    }

    fn set_config(&self, c: Arc<ProviderConfig>) {
        match self {
            Tokens::Single(s) => s.set_config(c),
            Tokens::Exchange(x) => x.set_config(c),
        }
    }

    fn set_prefixes(&self, p: Vec<Box<str>>) {
        match self {
            Tokens::Single(s) => s.set_prefixes(p),
            Tokens::Exchange(x) => x.set_prefixes(p),
        }
    }

    fn start_scheduler(&self) {
        if let Tokens::Single(s) = self {
            s.start_scheduler();
        }
    }

    fn stop(&self) {
        if let Tokens::Single(s) = self {
            s.stop();
        }
    }

    fn ptr(&self) -> *const () {
        match self {
            Tokens::Single(s) => Arc::as_ptr(s) as *const (),
            Tokens::Exchange(x) => Arc::as_ptr(x) as *const (),
        }
    }
}

pub struct RouteRuntime {
    pub config: Arc<RouteConfig>,
    pub tokens: Tokens,
    pub client: Client,
    pub h2c_client: Client,
    /// HTTP/1.1 only, for upgrades (WebSocket).
    pub h1_client: Client,
    pub metrics: Arc<RouteMetrics>,
}

/// Process-wide state shared by the proxy and admin listeners.
pub struct Sidecar {
    snapshot: ArcSwap<Snapshot>,
    registry: Mutex<Registry>,
    pools: Pools,
    pub metrics: GlobalMetrics,
    /// One reload at a time.
    reloading: Mutex<()>,
    /// Hash of the config text last loaded (or rejected), so the file watcher reloads
    /// only on real changes.
    loaded_hash: Mutex<Option<u64>>,
}

/// Objects kept across snapshots: token sources by provider name and token identity (so
/// an unchanged provider keeps its token and scheduler), route metrics by route name.
#[derive(Default)]
struct Registry {
    sources: HashMap<(String, TokenKey), Tokens>,
    route_metrics: HashMap<String, Arc<RouteMetrics>>,
    unmatched_metrics: Arc<RouteMetrics>,
}

/// The sockets the sidecar serves; the caller binds them (tests bind port 0).
pub struct Listeners {
    pub proxy: TcpListener,
    pub admin: Option<TcpListener>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SetupError(pub String);

/// What a successful reload changed.
#[derive(Debug, Serialize)]
pub struct ReloadSummary {
    pub outcome: &'static str,
    pub providers_added: Vec<String>,
    pub providers_removed: Vec<String>,
    pub routes: usize,
}

impl Sidecar {
    pub fn new(config: Config) -> Result<Arc<Self>, SetupError> {
        let pools = Pools::default();
        let registry = Mutex::new(Registry::default());
        let loaded_hash = Mutex::new(std::fs::read(&config.source).ok().map(|t| hash(&t)));
        let first = Self::build(Arc::new(config), &registry, &pools)?;
        Ok(Arc::new(Sidecar {
            snapshot: ArcSwap::from_pointee(first),
            registry,
            pools,
            metrics: GlobalMetrics::default(),
            reloading: Mutex::new(()),
            loaded_hash,
        }))
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Replaces the snapshot with one built from `config`. Token sources and pools that
    /// still apply are kept; sources no provider uses any more are stopped.
    pub fn replace(&self, config: Config) -> Result<(), SetupError> {
        let snap = Self::build(Arc::new(config), &self.registry, &self.pools)?;
        let live: BTreeSet<*const ()> = snap.providers.values().map(|p| p.tokens.ptr()).collect();
        let routes: BTreeSet<&str> = snap.routes.iter().map(|r| r.config.name.as_str()).collect();
        let mut registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        registry.sources.retain(|_, s| {
            let keep = live.contains(&s.ptr());
            if !keep {
                s.stop();
            }
            keep
        });
        registry
            .route_metrics
            .retain(|name, _| routes.contains(name.as_str()));
        drop(registry);
        self.snapshot.store(Arc::new(snap));
        self.start_schedulers();
        Ok(())
    }

    /// Reloads the config file the current snapshot came from. A file that does not
    /// compile changes nothing: the old config keeps serving.
    pub fn reload(&self, trigger: &str) -> Result<ReloadSummary, Vec<String>> {
        let _one = self.reloading.lock().unwrap_or_else(|p| p.into_inner());
        let old = self.snapshot();
        let path = old.config.source.clone();
        *self.loaded_hash.lock().unwrap_or_else(|p| p.into_inner()) =
            std::fs::read(&path).ok().map(|t| hash(&t));
        let result = Config::load(&path)
            .map_err(|e| e.problems)
            .and_then(|config| {
                if config.listen != old.config.listen
                    || config.admin_listen != old.config.admin_listen
                    || config.workers != old.config.workers
                {
                    tracing::warn!(
                        "listen, admin_listen and workers take effect only after a restart"
                    );
                }
                for w in &config.warnings {
                    tracing::warn!("{w}");
                }
                self.replace(config).map_err(|e| vec![e.0])
            });
        match result {
            Ok(()) => {
                let new = self.snapshot();
                let before: BTreeSet<&String> = old.providers.keys().collect();
                let after: BTreeSet<&String> = new.providers.keys().collect();
                let summary = ReloadSummary {
                    outcome: "success",
                    providers_added: after.difference(&before).map(|s| s.to_string()).collect(),
                    providers_removed: before.difference(&after).map(|s| s.to_string()).collect(),
                    routes: new.routes.len(),
                };
                self.metrics.reload(true);
                tracing::info!(trigger, routes = summary.routes, "config reloaded");
                tracing::info!(
                    target: "audit",
                    event = "config_reloaded",
                    outcome = "success",
                    providers_added = %summary.providers_added.join(","),
                    providers_removed = %summary.providers_removed.join(","),
                    routes = summary.routes,
                );
                Ok(summary)
            }
            Err(problems) => {
                self.metrics.reload(false);
                for p in &problems {
                    tracing::error!(trigger, "config reload rejected: {p}");
                }
                tracing::warn!(target: "audit", event = "config_reloaded", outcome = "error", problems = problems.len());
                Err(problems)
            }
        }
    }

    /// Builds a snapshot for `config`. Nothing shared is changed unless every step
    /// succeeds, so a config that fails here leaves the running one untouched.
    fn build(
        config: Arc<Config>,
        registry: &Mutex<Registry>,
        pools: &Pools,
    ) -> Result<Snapshot, SetupError> {
        let mut registry = registry.lock().unwrap_or_else(|p| p.into_inner());
        // Sources are kept per provider (name and token identity): an unchanged provider
        // keeps its token across reloads, and each provider's own settings (prefetch,
        // idle_timeout, retries) apply to its own source.
        let mut providers = BTreeMap::new();
        let mut new_sources = Vec::new();
        for p in &config.providers {
            let key = source_key(p);
            let source = match registry.sources.get(&key) {
                Some(s) => s.clone(),
                None => {
                    let s = Tokens::new(p.clone()).map_err(SetupError)?;
                    carry_refresh_token(&registry.sources, p, &s);
                    new_sources.push((key, s.clone()));
                    s
                }
            };
            providers.insert(
                p.name.clone(),
                ProviderRuntime {
                    config: p.clone(),
                    tokens: source,
                },
            );
        }
        let mut routes = Vec::with_capacity(config.routes.len());
        for r in &config.routes {
            let source = providers
                .get(&r.provider)
                .map(|p| p.tokens.clone())
                .ok_or_else(|| {
                    SetupError(format!(
                        "route {} names unknown provider {}",
                        r.name, r.provider
                    ))
                })?;
            routes.push(RouteRuntime {
                config: r.clone(),
                tokens: source,
                client: pools
                    .client(r.ca_file.as_ref(), r.connect_timeout, Protocol::Auto)
                    .map_err(SetupError)?,
                h2c_client: pools
                    .client(r.ca_file.as_ref(), r.connect_timeout, Protocol::H2c)
                    .map_err(SetupError)?,
                h1_client: pools
                    .client(r.ca_file.as_ref(), r.connect_timeout, Protocol::Http1)
                    .map_err(SetupError)?,
                metrics: Arc::new(RouteMetrics::default()),
            });
        }
        let default_client = pools
            .client(None, Duration::from_secs(5), Protocol::Auto)
            .map_err(SetupError)?;
        let interceptor = config.tls_intercept.clone();

        // Everything is built: now apply.
        registry.sources.extend(new_sources);
        for p in providers.values() {
            p.tokens.set_config(p.config.clone());
            let mut prefixes: Vec<Box<str>> = config
                .routes
                .iter()
                .filter(|r| r.provider == p.config.name)
                .map(|r| r.value_prefix.as_str().into())
                .collect();
            prefixes.sort();
            prefixes.dedup();
            p.tokens.set_prefixes(prefixes);
        }
        for r in &mut routes {
            r.metrics = registry
                .route_metrics
                .entry(r.config.name.clone())
                .or_default()
                .clone();
        }
        Ok(Snapshot {
            config,
            routes,
            providers,
            default_client,
            unmatched_metrics: registry.unmatched_metrics.clone(),
            interceptor,
        })
    }

    /// Starts the refresh scheduler of every source in the current snapshot (once each).
    fn start_schedulers(&self) {
        for p in self.snapshot().providers.values() {
            p.tokens.start_scheduler();
        }
    }

    /// True when the config file's content differs from what was last loaded.
    fn file_changed(&self) -> bool {
        let path = self.snapshot().config.source.clone();
        let now = std::fs::read(&path).ok().map(|t| hash(&t));
        now.is_some() && now != *self.loaded_hash.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A refresh token rotates: a provider rebuilt by a reload (say, new scopes) continues
/// from the token its predecessor last received, not from the configured one, which the
/// IdP has already replaced — unless the operator configured a new one.
fn carry_refresh_token(
    sources: &HashMap<(String, TokenKey), Tokens>,
    p: &ProviderConfig,
    new: &Tokens,
) {
    let (Grant::RefreshToken { configured, .. }, Some(new)) = (&p.grant, new.single()) else {
        return;
    };
    let previous = sources.iter().filter(|((name, _), _)| *name == p.name).find_map(|(_, t)| t.single()).filter(|old| {
        matches!(&old.config().grant, Grant::RefreshToken { configured: c, .. } if c == configured)
    });
    if let Some(token) = previous.and_then(|old| old.refresh_token()) {
        new.adopt_refresh_token(token);
    }
}

/// What a token source is kept by across reloads.
fn source_key(p: &ProviderConfig) -> (String, TokenKey) {
    (p.name.clone(), p.key.clone())
}

fn hash(bytes: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

/// Runs the sidecar on `listeners` until `shutdown` completes, then drains in-flight
/// requests for up to `shutdown_grace`. Reloads the config on file change, SIGHUP and
/// `POST /reload` when it came from a file.
pub async fn run(
    listeners: Listeners,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), SetupError> {
    let grace = config.shutdown_grace;
    let source = config.source.clone();
    let sidecar = Sidecar::new(config)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    sidecar.start_schedulers();

    let mut tasks = tokio::task::JoinSet::new();
    if source.is_file() {
        tokio::spawn(crate::reload::watch(
            sidecar.clone(),
            source,
            stop_rx.clone(),
        ));
        tokio::spawn(crate::reload::on_sighup(sidecar.clone(), stop_rx.clone()));
    }
    if let Some(admin) = listeners.admin {
        let sc = sidecar.clone();
        let handler = move |req| crate::admin::handle(sc.clone(), req);
        tasks.spawn(crate::listener::serve(
            admin,
            handler,
            stop_rx.clone(),
            grace,
            "admin",
        ));
    }
    let sc = sidecar.clone();
    let handler = move |req| crate::proxy::handle(sc.clone(), req);
    tasks.spawn(crate::listener::serve(
        listeners.proxy,
        handler,
        stop_rx,
        grace,
        "proxy",
    ));

    shutdown.await;
    tracing::info!(grace = %crate::config::format_duration(grace), "shutting down: no new connections; draining in-flight requests");
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
    for p in sidecar.snapshot().providers.values() {
        p.tokens.stop();
    }
    Ok(())
}

impl Sidecar {
    /// Reloads when the watched file really changed (called by the watcher).
    pub(crate) fn reload_if_changed(&self) {
        if self.file_changed() {
            let _ = self.reload("file change");
        }
    }
}
