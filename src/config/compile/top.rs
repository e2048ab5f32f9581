//! The top level of a config file: listeners, log, process settings, `tls_intercept`,
//! and the lists of providers and routes.

use super::{
    route, Arc, BTreeSet, Config, Cx, Duration, LogConfig, LogFormat, Parsed, Path, PathBuf,
    ProviderConfig, RawConfig, RawLog, RawTlsIntercept, Readiness, RouteConfig, Unmatched,
    YamlPath, DEFAULT_LISTEN,
};
use crate::intercept::{InterceptConfig, Interceptor};
use crate::outbound::Egress;
use std::collections::BTreeMap;

impl Cx<'_> {
    pub(super) fn config(&mut self, source: &Path, parsed: Parsed) -> Config {
        let raw = &parsed.top;
        let root = YamlPath::default();
        let default_listen = DEFAULT_LISTEN
            .parse()
            .expect("default listen address is valid");
        let listen = self
            .socket_addr(&root.key("listen"), &raw.listen)
            .unwrap_or(default_listen);
        let admin_listen = self.socket_addr(&root.key("admin_listen"), &raw.admin_listen);
        let log = self.log(&root.key("log"), raw);
        // SPEC §4 Shared egress: other machines' clients reach a non-loopback listener, so
        // what matches no route is refused unless the file says otherwise.
        let shared = super::super::egress::is_shared_egress(listen.ip());
        let unmatched = self.choice(
            &root.key("unmatched"),
            &raw.unmatched,
            &[("forward", Unmatched::Forward), ("deny", Unmatched::Deny)],
            if shared {
                Unmatched::Deny
            } else {
                Unmatched::Forward
            },
        );
        let workers = self.workers(&root.key("workers"), raw);
        let readiness = self.choice(
            &root.key("readiness"),
            &raw.readiness,
            &[
                ("tokens", Readiness::Tokens),
                ("listening", Readiness::Listening),
            ],
            Readiness::Tokens,
        );
        let shutdown_grace = self.duration(
            &root.key("shutdown_grace"),
            &raw.shutdown_grace,
            Duration::from_secs(10),
        );
        let tls_intercept = raw
            .tls_intercept
            .as_ref()
            .and_then(|t| self.tls_intercept(&root.key("tls_intercept"), t));
        // SPEC §11: the top level's way out, which providers and then routes inherit.
        let top_egress = self
            .outbound(&root, &raw.egress_proxy, &raw.no_proxy)
            .over(&Egress::direct());
        let providers = self.providers(&root.key("providers"), &parsed, &top_egress);
        let routes = self.routes(&root.key("routes"), &parsed, &top_egress, &providers);
        let egress = self.egress(&parsed, shared);
        let token_store = raw
            .token_store
            .as_ref()
            .and_then(|t| self.token_store(&root.key("token_store"), t, &providers));
        let config = Config {
            source: source.to_path_buf(),
            listen,
            admin_listen,
            log,
            unmatched,
            workers,
            shutdown_grace,
            readiness,
            tls_intercept,
            providers,
            routes,
            limits: egress.limits,
            clients: egress.clients,
            tunnel_ports: egress.tunnel_ports,
            server_names: egress.server_names,
            admin_token_file: egress.admin_token_file,
            admin_token: egress.admin_token,
            egress: top_egress,
            token_store,
            warnings: Vec::new(),
        };
        self.advise(&config);
        config
    }

    fn log(&mut self, path: &YamlPath, raw: &RawConfig) -> LogConfig {
        let raw_log = raw.log.as_ref().map_or_else(Default::default, |l| RawLog {
            format: l.format.clone(),
            level: l.level.clone(),
        });
        let format = self.choice(
            &path.key("format"),
            &raw_log.format,
            &[("text", LogFormat::Text), ("json", LogFormat::Json)],
            LogFormat::Text,
        );
        let levels = [
            ("trace", "trace"),
            ("debug", "debug"),
            ("info", "info"),
            ("warn", "warn"),
            ("error", "error"),
        ];
        let level = self
            .choice(&path.key("level"), &raw_log.level, &levels, "info")
            .to_string();
        LogConfig { format, level }
    }

    fn workers(&mut self, path: &YamlPath, raw: &RawConfig) -> Option<usize> {
        let w = self.text(path, &raw.workers)?;
        match w.trim().parse::<usize>() {
            Ok(n) if (1..=1024).contains(&n) => Some(n),
            _ => {
                self.problem(
                    path,
                    format!("invalid worker count {w:?}: expected a whole number from 1 to 1024"),
                );
                None
            }
        }
    }

    /// `tls_intercept`: the CA is loaded here, once, so `validate` reports a bad one before
    /// anything starts and the runtime uses this one.
    fn tls_intercept(
        &mut self,
        path: &YamlPath,
        raw: &RawTlsIntercept,
    ) -> Option<Arc<Interceptor>> {
        let before = self.problems.len();
        let cert = self.required(
            &path.key("ca_cert_file"),
            &raw.ca_cert_file,
            "the CA certificate file (PEM)",
        );
        let key = self.required(
            &path.key("ca_key_file"),
            &raw.ca_key_file,
            "the CA key file (PEM)",
        );
        let leaf_validity = self.positive_duration(
            &path.key("leaf_validity"),
            &raw.leaf_validity,
            Duration::from_secs(24 * 3600),
        );
        if leaf_validity < Duration::from_secs(3600) {
            self.problem(&path.key("leaf_validity"), "must be at least 1h");
        }
        let cache_size = match self.text(&path.key("cache_size"), &raw.cache_size) {
            None => 1000,
            Some(t) => t
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=1_000_000).contains(n))
                .unwrap_or_else(|| {
                    self.problem(
                        &path.key("cache_size"),
                        format!("invalid cache size {t:?}: expected 1 to 1000000"),
                    );
                    1000
                }),
        };
        let cfg = InterceptConfig {
            ca_cert_file: PathBuf::from(cert?),
            ca_key_file: PathBuf::from(key?),
            leaf_validity,
            cache_size,
        };
        if self.problems.len() > before {
            return None;
        }
        match Interceptor::load(&cfg) {
            Ok(interceptor) => Some(Arc::new(interceptor)),
            Err(e) => {
                // Located at the file the message names, else at the block.
                let key_file = cfg.ca_key_file.display().to_string();
                let cert_file = cfg.ca_cert_file.display().to_string();
                let at = match () {
                    _ if e.contains(&key_file) => path.key("ca_key_file"),
                    _ if e.contains(&cert_file) => path.key("ca_cert_file"),
                    _ => path.clone(),
                };
                self.problem(&at, e);
                None
            }
        }
    }

    /// Every provider, sorted by name; each inherits `egress` where it sets nothing.
    fn providers(
        &mut self,
        path: &YamlPath,
        parsed: &Parsed,
        egress: &Egress,
    ) -> Vec<Arc<ProviderConfig>> {
        parsed
            .providers
            .iter()
            .filter_map(|(name, p)| {
                self.provider(&path.key(name), name, p, egress)
                    .map(Arc::new)
            })
            .collect()
    }

    /// Routes `first` and `again` (index, name written or not) have the same `name`: say
    /// which, and whether the name was written or is the default (`<host><path_prefix>`).
    fn duplicate_route_name(
        &mut self,
        routes: &YamlPath,
        name: &str,
        first: (usize, bool),
        again: (usize, bool),
    ) {
        let (i, j) = (first.0, again.0);
        // Only a written name can clash: a default one is made unique by the caller.
        let msg = match first.1 {
            true => format!("duplicate route name {name:?} (also routes[{i}])"),
            false => format!("duplicate route name {name:?}: it is the default name of routes[{i}] (host and path prefix); choose another, or give routes[{i}] a `name:`"),
        };
        let _ = again.1;
        self.problem(&routes.index(j).key("name"), msg);
    }

    /// Every route, in file order, with a warning for each one an earlier route shadows.
    /// A route inherits its provider's egress (else `egress`, the top level's).
    fn routes(
        &mut self,
        path: &YamlPath,
        parsed: &Parsed,
        egress: &Egress,
        providers: &[Arc<ProviderConfig>],
    ) -> Vec<Arc<RouteConfig>> {
        // Providers and clients that did not parse still count: a route naming one is not
        // flagged.
        let provider_names: BTreeSet<&str> = parsed
            .providers
            .keys()
            .chain(&parsed.broken_providers)
            .map(String::as_str)
            .collect();
        let client_names: Option<BTreeSet<&str>> = parsed.clients.as_ref().map(|c| {
            c.keys()
                .chain(&parsed.broken_clients)
                .map(String::as_str)
                .collect()
        });
        let dpop = dpop_keys(providers);
        let provider_egress = egress_by_provider(providers);
        let names = route::Names {
            providers: &provider_names,
            clients: client_names.as_ref(),
            egress: &provider_egress,
            top_egress: egress,
            dpop: &dpop,
        };
        // Each name with the route that has it, and whether it was written.
        let mut route_names: BTreeMap<String, (usize, bool)> = BTreeMap::new();
        let routes: Vec<Arc<RouteConfig>> = parsed
            .routes
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                let raw = r.as_ref()?;
                let (name, mut route) = self.route(&path.index(i), raw, &names);
                let written = raw.name.is_some();
                match name.as_ref().map(|n| (n, route_names.get(n))) {
                    // Two routes may well share a host and prefix (say, one per method):
                    // a default name that is taken gets the route's index, `host/path#i`.
                    Some((name, Some(_))) if !written => {
                        let mut unique = format!("{name}#{i}");
                        while route_names.contains_key(&unique) {
                            unique.push('_');
                        }
                        if let Some(r) = route.as_mut() {
                            r.name = unique.clone();
                        }
                        route_names.insert(unique, (i, false));
                    }
                    Some((name, Some(&first))) => {
                        self.duplicate_route_name(path, name, first, (i, written));
                    }
                    Some((name, None)) => {
                        route_names.insert(name.clone(), (i, written));
                    }
                    None => {}
                }
                route.map(Arc::new)
            })
            .collect();
        self.warn_unreachable(path, &routes);
        routes
    }

    /// Warns about routes an earlier one shadows, and about a file without routes.
    fn warn_unreachable(&mut self, path: &YamlPath, routes: &[Arc<RouteConfig>]) {
        for (i, later) in routes.iter().enumerate() {
            if let Some(earlier) = routes[..i].iter().find(|e| e.covers(later)) {
                self.warn(
                    &path.index(i),
                    format!(
                        "route {:?} can never match: route {:?} comes first and matches every request it would",
                        later.name, earlier.name
                    ),
                );
            }
        }
        if routes.is_empty() {
            let root = YamlPath::default();
            self.warn(&root, "no routes: every request is handled by `unmatched`");
        }
    }
}

/// Each provider's egress, which its routes inherit (SPEC §11).
fn egress_by_provider(providers: &[Arc<ProviderConfig>]) -> BTreeMap<&str, &Egress> {
    providers
        .iter()
        .map(|p| (p.name.as_str(), &p.egress))
        .collect()
}

/// The DPoP key of each provider that has `dpop`, by provider name.
fn dpop_keys(providers: &[Arc<ProviderConfig>]) -> BTreeMap<&str, Arc<crate::sender::DpopKey>> {
    providers
        .iter()
        .filter_map(|p| {
            let d = p.origin.oauth()?.dpop.as_ref()?;
            Some((p.name.as_str(), d.key.clone()))
        })
        .collect()
}
