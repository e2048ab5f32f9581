//! The running sidecar: the current [`Snapshot`] (config plus the runtime objects it
//! needs), the token sources and connection pools that outlive snapshots, and [`run`].

use crate::config::{Config, ProviderConfig, RouteConfig};
use crate::token::TokenSource;
use crate::upstream::{Client, Pools};
use arc_swap::ArcSwap;
use std::collections::{BTreeMap, HashMap};
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
}

/// A provider as configured, and the token source serving it. Providers whose token
/// would be identical (same IdP, client, scopes, …) share one source and one token.
pub struct ProviderRuntime {
    pub config: Arc<ProviderConfig>,
    pub source: Arc<TokenSource>,
}

pub struct RouteRuntime {
    pub config: Arc<RouteConfig>,
    pub source: Arc<TokenSource>,
    pub client: Client,
    pub h2c_client: Client,
}

/// Process-wide state shared by the proxy and admin listeners.
pub struct Sidecar {
    snapshot: ArcSwap<Snapshot>,
    /// Token sources by provider identity, so that a snapshot rebuilt from an equivalent
    /// provider keeps its cached token.
    sources: Mutex<HashMap<String, Arc<TokenSource>>>,
    pools: Pools,
}

/// The sockets the sidecar serves; the caller binds them (tests bind port 0).
pub struct Listeners {
    pub proxy: TcpListener,
    pub admin: Option<TcpListener>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SetupError(pub String);

impl Sidecar {
    pub fn new(config: Config) -> Result<Arc<Self>, SetupError> {
        let pools = Pools::default();
        let sources = Mutex::new(HashMap::new());
        let placeholder = Self::build(Arc::new(config), &sources, &pools)?;
        Ok(Arc::new(Sidecar {
            snapshot: ArcSwap::from_pointee(placeholder),
            sources,
            pools,
        }))
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Replaces the snapshot with one built from `config`; token sources and pools that
    /// still apply are kept.
    pub fn replace(&self, config: Config) -> Result<(), SetupError> {
        let snap = Self::build(Arc::new(config), &self.sources, &self.pools)?;
        self.snapshot.store(Arc::new(snap));
        Ok(())
    }

    fn build(
        config: Arc<Config>,
        registry: &Mutex<HashMap<String, Arc<TokenSource>>>,
        pools: &Pools,
    ) -> Result<Snapshot, SetupError> {
        let mut registry = registry.lock().unwrap_or_else(|p| p.into_inner());
        let mut providers = BTreeMap::new();
        let mut prefixes: HashMap<String, Vec<Box<str>>> = HashMap::new();
        for p in &config.providers {
            let identity = p.identity();
            let source = match registry.get(&identity) {
                Some(s) => {
                    s.set_config(p.clone());
                    s.clone()
                }
                None => {
                    let s = TokenSource::new(p.clone()).map_err(SetupError)?;
                    registry.insert(identity.clone(), s.clone());
                    s
                }
            };
            let used = prefixes.entry(identity).or_default();
            used.extend(
                config
                    .routes
                    .iter()
                    .filter(|r| r.provider == p.name)
                    .map(|r| r.value_prefix.as_str().into()),
            );
            providers.insert(
                p.name.clone(),
                ProviderRuntime {
                    config: p.clone(),
                    source,
                },
            );
        }
        for (identity, mut used) in prefixes {
            used.sort();
            used.dedup();
            if let Some(source) = registry.get(&identity) {
                source.set_prefixes(used);
            }
        }
        let mut routes = Vec::with_capacity(config.routes.len());
        for r in &config.routes {
            let source = providers
                .get(&r.provider)
                .map(|p| p.source.clone())
                .ok_or_else(|| {
                    SetupError(format!(
                        "route {} names unknown provider {}",
                        r.name, r.provider
                    ))
                })?;
            routes.push(RouteRuntime {
                config: r.clone(),
                source,
                client: pools
                    .client(r.ca_file.as_ref(), r.connect_timeout, false)
                    .map_err(SetupError)?,
                h2c_client: pools
                    .client(r.ca_file.as_ref(), r.connect_timeout, true)
                    .map_err(SetupError)?,
            });
        }
        let default_client = pools
            .client(None, Duration::from_secs(5), false)
            .map_err(SetupError)?;
        Ok(Snapshot {
            config,
            routes,
            providers,
            default_client,
        })
    }
}

/// Runs the sidecar on `listeners` until `shutdown` completes, then drains in-flight
/// requests for up to `shutdown_grace`.
pub async fn run(
    listeners: Listeners,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), SetupError> {
    let grace = config.shutdown_grace;
    let sidecar = Sidecar::new(config)?;
    let (stop_tx, stop_rx) = watch::channel(false);

    for (name, p) in &sidecar.snapshot().providers {
        if p.config.prefetch {
            tokio::spawn(prefetch(name.clone(), p.source.clone(), stop_rx.clone()));
        }
    }

    let mut tasks = tokio::task::JoinSet::new();
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
    let handler = move |req| crate::proxy::handle(sc.snapshot(), req);
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
    Ok(())
}

/// Fetches a `prefetch` provider's first token at start-up, trying again with backoff
/// until it succeeds (so `/readyz` turns 200 without waiting for app traffic) or the
/// sidecar stops.
async fn prefetch(name: String, source: Arc<TokenSource>, mut stop: watch::Receiver<bool>) {
    let mut attempt = 0;
    loop {
        match source.get().await {
            Ok(_) => return,
            Err(e) => {
                attempt += 1;
                let wait = crate::token::backoff(attempt, &source.config().retries, None)
                    .max(source.config().retries.initial_backoff);
                tracing::warn!(provider = %name, error = %e, retry_in_ms = wait.as_millis() as u64, "prefetch failed; trying again");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        }
    }
}
