//! The runtime model: what the compiled [`Config`] becomes when it serves traffic.
//!
//! A [`Snapshot`] is everything a request needs, immutable; a request keeps the snapshot
//! it started with. [`Runtime`] holds the current snapshot and the objects that outlive
//! snapshots (token sources, connection pools, metrics) and swaps in a new snapshot when
//! the config changes. This module sits below `proxy`, `admin` and `reload`: they are
//! handed a `Runtime`, never the other way round. It does no IO of its own beyond
//! starting and stopping token schedulers.

mod budget;
mod build;
mod drain;

use crate::config::{Config, Grant, ProviderConfig, RouteConfig, TokenOrigin};
use crate::metrics::{ProviderMetrics, RouteMetrics};
use crate::store::Store;
use crate::token::{ExchangeSource, ProviderStatus, StoreLink, TokenSource};
use crate::upstream::Client;
use std::collections::BTreeMap;
use std::sync::Arc;

pub use budget::{BodyBudget, Reservation};
pub use build::{Runtime, SetupError};
pub use drain::{TunnelGuard, Tunnels};

/// Everything a request needs, immutable. A request keeps the snapshot it started with.
pub struct Snapshot {
    pub config: Arc<Config>,
    /// In file order: the first matching route wins.
    pub routes: Vec<RouteRuntime>,
    /// By provider name.
    pub providers: BTreeMap<String, ProviderRuntime>,
    /// For traffic that matched no route.
    pub default_client: Client,
    /// For unmatched traffic pinned to the address it was checked at, when `no_proxy`
    /// lists its name: always direct (deciding again on the address could send it to the
    /// egress proxy). `default_client` itself when there is no egress proxy.
    pub direct_client: Client,
    /// Metrics of traffic that matched no route (`route="-"`).
    pub unmatched_metrics: Arc<RouteMetrics>,
    /// Mints certificates for intercepted CONNECTs (`tls_intercept`).
    pub interceptor: Option<Arc<crate::intercept::Interceptor>>,
    /// The shared token store (`token_store`), for `/status` and `/metrics`.
    pub store: Option<Arc<Store>>,
}

/// A route as configured, with the token source and clients it sends with.
pub struct RouteRuntime {
    pub config: Arc<RouteConfig>,
    pub tokens: Tokens,
    pub client: Client,
    pub h2c_client: Client,
    /// HTTP/1.1 only, for upgrades (WebSocket).
    pub h1_client: Client,
    pub metrics: Arc<RouteMetrics>,
}

impl AsRef<RouteConfig> for RouteRuntime {
    fn as_ref(&self) -> &RouteConfig {
        &self.config
    }
}

/// A provider as configured, and the token source serving it.
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
    fn new(config: Arc<ProviderConfig>, link: Option<&StoreLink>) -> Result<Tokens, String> {
        if let TokenOrigin::OAuth(client) = &config.origin {
            if let Grant::TokenExchange(x) = &client.grant {
                let (client, x, link) = (client.clone(), x.clone(), link.cloned());
                return Ok(Tokens::Exchange(ExchangeSource::new(
                    config, client, x, link,
                )?));
            }
        }
        Ok(Tokens::Single(TokenSource::with_store(config, link)?))
    }

    /// The single token source (not for token exchange).
    pub fn single(&self) -> Option<&Arc<TokenSource>> {
        match self {
            Tokens::Single(s) => Some(s),
            Tokens::Exchange(_) => None,
        }
    }

    pub fn metrics(&self) -> &ProviderMetrics {
        match self {
            Tokens::Single(s) => &s.metrics,
            Tokens::Exchange(x) => &x.metrics,
        }
    }

    pub fn status(&self) -> ProviderStatus {
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

    /// The same source (not just an equal one).
    fn same(&self, other: &Tokens) -> bool {
        match (self, other) {
            (Tokens::Single(a), Tokens::Single(b)) => Arc::ptr_eq(a, b),
            (Tokens::Exchange(a), Tokens::Exchange(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}
