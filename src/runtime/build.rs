//! [`Runtime`]: the current snapshot, and building the next one from a config. Token
//! sources, pools and route metrics are kept across snapshots when they still apply, so
//! an unchanged provider keeps its token and scheduler through a reload.
//!
//! The shared token store (`token_store`) is built once and kept while its settings stay
//! the same; a reload that changes them builds a new store, and new token sources for it
//! (sources are kept by provider name, token identity and store).

use super::{BodyBudget, ProviderRuntime, RouteRuntime, Snapshot, Tokens};
use crate::config::{Config, Grant, ProviderConfig, TokenKey};
use crate::metrics::{GlobalMetrics, RouteMetrics};
use crate::secret::Fingerprint;
use crate::store::Store;
use crate::token::StoreLink;
use crate::upstream::{Client, Pools, Protocol};
use arc_swap::ArcSwap;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The live runtime: the current [`Snapshot`] and what outlives it.
pub struct Runtime {
    snapshot: ArcSwap<Snapshot>,
    registry: Mutex<Registry>,
    pools: Pools,
    pub metrics: GlobalMetrics,
    /// All replay buffers together (`limits.max_buffered_bodies`).
    pub body_budget: Arc<BodyBudget>,
    /// The sockets the proxy listens on (proxy and admin): never a destination.
    pub own: Vec<SocketAddr>,
    /// Shutdown has begun: the proxy drains, `/readyz` answers 503 `draining`.
    draining: AtomicBool,
    /// Tunnels and upgrades running after their `200`/`101` (drained at shutdown too).
    pub tunnels: Arc<super::Tunnels>,
    /// The shared token store of the current config, by its settings' digest.
    store: Mutex<Option<CurrentStore>>,
    /// Where a store's background task runs (a reload may run on a blocking thread).
    handle: tokio::runtime::Handle,
}

/// A built store and the digest of the settings it was built from.
type CurrentStore = (Fingerprint, StoreLink);

/// A runtime object could not be built from a config that compiled.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SetupError(pub String);

/// Objects kept across snapshots: token sources by provider name and token identity (so
/// an unchanged provider keeps its token and scheduler), route metrics by route name.
#[derive(Default)]
struct Registry {
    sources: HashMap<SourceKey, Tokens>,
    route_metrics: HashMap<String, Arc<RouteMetrics>>,
    unmatched_metrics: Arc<RouteMetrics>,
}

impl Runtime {
    /// The runtime for `config`, serving on the sockets `own` (which it never forwards to)
    /// with `workers` proxy worker threads (each gets upstream pools of its own). Must be
    /// called within a tokio runtime.
    pub fn new(
        config: Config,
        own: Vec<SocketAddr>,
        workers: usize,
    ) -> Result<Arc<Self>, SetupError> {
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| SetupError("the runtime must be built within tokio".into()))?;
        let pools = Pools::new(workers);
        let registry = Mutex::new(Registry::default());
        let store = store_for(&config, None, &handle)?;
        let first = build(Arc::new(config), &registry, &pools, store.as_ref())?;
        let body_budget = BodyBudget::new(first.config.limits.max_buffered_bodies);
        Ok(Arc::new(Runtime {
            store: Mutex::new(store),
            handle,
            snapshot: ArcSwap::from_pointee(first),
            registry,
            pools,
            metrics: GlobalMetrics::default(),
            body_budget,
            own,
            draining: AtomicBool::new(false),
            tunnels: super::Tunnels::new(),
        }))
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Replaces the snapshot with one built from `config`. Token sources and pools that
    /// still apply are kept; sources no provider uses any more are stopped.
    pub fn replace(&self, config: Config) -> Result<(), SetupError> {
        let mut current = self.store.lock().unwrap_or_else(|p| p.into_inner());
        let store = store_for(&config, current.as_ref(), &self.handle)?;
        let snap = build(
            Arc::new(config),
            &self.registry,
            &self.pools,
            store.as_ref(),
        )?;
        *current = store;
        drop(current);
        let mut registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        registry.sources.retain(|_, s| {
            let keep = snap.providers.values().any(|p| p.tokens.same(s));
            if !keep {
                s.stop();
            }
            keep
        });
        registry
            .route_metrics
            .retain(|name, _| snap.routes.iter().any(|r| &r.config.name == name));
        drop(registry);
        self.body_budget
            .set_limit(snap.config.limits.max_buffered_bodies);
        self.snapshot.store(Arc::new(snap));
        self.start_schedulers();
        Ok(())
    }

    /// Starts the refresh scheduler of every source in the current snapshot (once each).
    pub fn start_schedulers(&self) {
        for p in self.snapshot().providers.values() {
            p.tokens.start_scheduler();
        }
    }

    /// Marks the start of shutdown (see [`Runtime::draining`]).
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
        self.tunnels.start_draining();
    }

    /// True once shutdown has begun.
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Stops every scheduler (shutdown).
    pub fn stop(&self) {
        for p in self.snapshot().providers.values() {
            p.tokens.stop();
        }
    }
}

/// Builds a snapshot for `config`. Nothing shared is changed unless every step succeeds,
/// so a config that fails here leaves the running one untouched.
fn build(
    config: Arc<Config>,
    registry: &Mutex<Registry>,
    pools: &Pools,
    store: Option<&CurrentStore>,
) -> Result<Snapshot, SetupError> {
    let mut registry = registry.lock().unwrap_or_else(|p| p.into_inner());
    let (providers, new_sources) = providers(&config, &registry, store)?;
    let mut routes = Vec::with_capacity(config.routes.len());
    for r in &config.routes {
        let tokens = providers
            .get(&r.provider)
            .map(|p| p.tokens.clone())
            .ok_or_else(|| {
                SetupError(format!(
                    "route {} names unknown provider {}",
                    r.name, r.provider
                ))
            })?;
        let client = |protocol| {
            client(
                pools,
                r.ca_file.as_ref(),
                r.connect_timeout,
                protocol,
                &r.egress,
            )
        };
        routes.push(RouteRuntime {
            config: r.clone(),
            tokens,
            client: client(Protocol::Auto)?,
            h2c_client: client(Protocol::H2c)?,
            h1_client: client(Protocol::Http1)?,
            metrics: Arc::new(RouteMetrics::default()),
        });
    }
    let (default_client, direct_client) = unmatched_clients(pools, &config)?;
    let interceptor = config.tls_intercept.clone();

    // Everything is built: now apply.
    registry.sources.extend(new_sources);
    for p in providers.values() {
        p.tokens.set_config(p.config.clone());
        p.tokens
            .set_prefixes(value_prefixes(&config, &p.config.name));
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
        direct_client,
        unmatched_metrics: registry.unmatched_metrics.clone(),
        interceptor,
        store: store.map(|(_, link)| link.store.clone()),
    })
}

/// The store `config` asks for: the `current` one while its settings are unchanged, a
/// new one (connecting in the background) when they changed, none without `token_store`.
fn store_for(
    config: &Config,
    current: Option<&CurrentStore>,
    handle: &tokio::runtime::Handle,
) -> Result<Option<CurrentStore>, SetupError> {
    let Some(cfg) = &config.token_store else {
        return Ok(None);
    };
    if let Some((id, link)) = current.filter(|(id, _)| *id == cfg.id) {
        return Ok(Some((*id, link.clone())));
    }
    let _in_runtime = handle.enter();
    let store: Arc<Store> = Store::new(&cfg.store).map_err(|e| SetupError(e.to_string()))?;
    let link = StoreLink {
        store,
        lease: cfg.lease,
    };
    Ok(Some((cfg.id, link)))
}

/// Token sources are kept by provider name, token identity and store (its digest).
type SourceKey = (String, TokenKey, Option<Fingerprint>);
type NewSources = Vec<(SourceKey, Tokens)>;

/// The provider runtimes of `config`: sources are kept per provider (name and token
/// identity), so an unchanged provider keeps its token across reloads, and each
/// provider's own settings (prefetch, idle_timeout, retries) apply to its own source.
fn providers(
    config: &Config,
    registry: &Registry,
    store: Option<&CurrentStore>,
) -> Result<(BTreeMap<String, ProviderRuntime>, NewSources), SetupError> {
    let mut providers = BTreeMap::new();
    let mut new_sources = Vec::new();
    for p in &config.providers {
        let key = (p.name.clone(), p.key.clone(), store.map(|(id, _)| *id));
        let tokens = match registry.sources.get(&key) {
            Some(s) => s.clone(),
            None => {
                let link = store.map(|(_, link)| link);
                let s = Tokens::new(p.clone(), link).map_err(SetupError)?;
                carry_refresh_token(&registry.sources, p, &s);
                new_sources.push((key, s.clone()));
                s
            }
        };
        let config = p.clone();
        providers.insert(p.name.clone(), ProviderRuntime { config, tokens });
    }
    Ok((providers, new_sources))
}

/// The clients of unmatched traffic. It is upstream traffic too: it leaves by the
/// top-level egress; and directly, whatever the address, once pinned to the address a
/// name `no_proxy` lists was checked at (the second client: the first when no proxy).
fn unmatched_clients(pools: &Pools, config: &Config) -> Result<(Client, Client), SetupError> {
    let by = |egress| client(pools, None, Duration::from_secs(5), Protocol::Auto, egress);
    let default_client = by(&config.egress)?;
    let direct_client = match config.egress.proxy() {
        None => default_client.clone(),
        Some(_) => by(&crate::outbound::Egress::direct())?,
    };
    Ok((default_client, direct_client))
}

fn client(
    pools: &Pools,
    ca_file: Option<&std::path::PathBuf>,
    connect_timeout: Duration,
    protocol: Protocol,
    egress: &crate::outbound::Egress,
) -> Result<Client, SetupError> {
    pools
        .client(ca_file, connect_timeout, protocol, egress)
        .map_err(SetupError)
}

/// The header prefixes the routes of `provider` use, so its tokens prebuild them.
fn value_prefixes(config: &Config, provider: &str) -> Vec<Box<str>> {
    let mut prefixes: Vec<Box<str>> = config
        .routes
        .iter()
        .filter(|r| r.provider == provider)
        .map(|r| r.value_prefix.as_str().into())
        .collect();
    prefixes.sort();
    prefixes.dedup();
    prefixes
}

/// A refresh token rotates: a provider rebuilt by a reload (say, new scopes) continues
/// from the token its predecessor last received, not from the configured one, which the
/// IdP has already replaced — unless the operator configured a new one.
fn carry_refresh_token(sources: &HashMap<SourceKey, Tokens>, p: &ProviderConfig, new: &Tokens) {
    let (Some(Grant::RefreshToken { configured, .. }), Some(new)) =
        (p.origin.grant(), new.single())
    else {
        return;
    };
    let previous = sources.iter().filter(|((name, _, _), _)| *name == p.name).find_map(|(_, t)| t.single()).filter(|old| {
        matches!(old.config().origin.grant(), Some(Grant::RefreshToken { configured: c, .. }) if c == configured)
    });
    if let Some(token) = previous.and_then(|old| old.refresh_token()) {
        new.adopt_refresh_token(token);
    }
}
