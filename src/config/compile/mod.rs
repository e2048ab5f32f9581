//! Raw config → validated [`Config`]: interpolation, defaults, and every check, with all
//! problems collected rather than stopping at the first.

use super::locate::{Locations, YamlPath};
use super::raw::{RawLog, RawProvider, RawRoute, Text};
use super::units::{parse_duration, parse_size};
use super::*;
use std::collections::BTreeSet;
use std::net::IpAddr;

const DEFAULT_LISTEN: &str = "127.0.0.1:4140";

pub fn compile(
    source: &Path,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let file = source.display().to_string();
    let (parsed, structural) = super::parse::parse(text).map_err(|e| ConfigError {
        problems: vec![serde_problem(&file, &e)],
    })?;
    let mut cx = Cx {
        env,
        problems: Vec::new(),
        warnings: Vec::new(),
        interpolated: Vec::new(),
    };
    let mut key_paths = Vec::new();
    for p in structural {
        if p.at_key {
            key_paths.push(p.path.clone());
        }
        cx.problems.push((p.path, p.message));
    }
    let config = cx.config(source, parsed);
    if cx.problems.is_empty() {
        return Ok(Config {
            warnings: cx.warnings,
            ..config
        });
    }
    // A value that came from `${…}` may be a secret: it never appears in a message.
    cx.interpolated.sort_by_key(|v| std::cmp::Reverse(v.len()));
    for (_, msg) in &mut cx.problems {
        for value in cx.interpolated.iter().filter(|v| v.len() >= 3) {
            if msg.contains(value.as_str()) {
                *msg = msg.replace(value.as_str(), "[interpolated value]");
            }
        }
    }
    let locations = Locations::index(text);
    let problems = cx
        .problems
        .into_iter()
        .map(
            |(path, msg)| match locations.find(&path, key_paths.contains(&path)) {
                Some((line, col)) => format!("{file}:{line}:{col}: {path}: {msg}"),
                None => format!("{file}: {path}: {msg}"),
            },
        )
        .collect();
    Err(ConfigError { problems })
}

/// A deserialization error as `FILE:LINE:COLUMN: message`, with any quoted value in the
/// message blanked out: the value might be a secret typed into the wrong place.
pub(super) fn serde_problem(file: &str, e: &serde_saphyr::Error) -> String {
    let msg = redact_quoted(&e.without_snippet().to_string());
    match e.location() {
        Some(loc) if loc.line() > 0 => format!(
            "{file}:{}:{}: {}",
            loc.line(),
            loc.column(),
            strip_location_suffix(&msg)
        ),
        _ => format!("{file}: {msg}"),
    }
}

pub(super) fn redact_quoted(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut inside = false;
    for c in msg.chars() {
        if c == '"' {
            if inside {
                out.push_str("…\"");
            } else {
                out.push('"');
            }
            inside = !inside;
        } else if !inside {
            out.push(c);
        }
    }
    out
}

/// serde-saphyr appends " at line L column C"; we print the location up front instead.
fn strip_location_suffix(msg: &str) -> &str {
    match msg.rfind(" at line ") {
        Some(i) => &msg[..i],
        None => msg,
    }
}

struct Cx<'a> {
    env: &'a dyn Fn(&str) -> Option<String>,
    problems: Vec<(YamlPath, String)>,
    warnings: Vec<String>,
    /// Every value produced by interpolation, to keep out of messages.
    interpolated: Vec<String>,
}

impl Cx<'_> {
    fn problem(&mut self, path: &YamlPath, msg: impl Into<String>) {
        self.problems.push((path.clone(), msg.into()));
    }

    /// The interpolated text of an optional scalar.
    fn text(&mut self, path: &YamlPath, raw: &Option<Text>) -> Option<String> {
        let raw = raw.as_ref()?;
        match interp::expand(&raw.0, self.env) {
            Ok(v) => {
                if v != raw.0 {
                    self.interpolated.push(v.clone());
                }
                Some(v)
            }
            Err(e) => {
                self.problem(path, e);
                None
            }
        }
    }

    fn required(&mut self, path: &YamlPath, raw: &Option<Text>, what: &str) -> Option<String> {
        match self.text(path, raw) {
            Some(v) if !v.trim().is_empty() => Some(v),
            Some(_) => {
                self.problem(path, format!("{what} must not be empty"));
                None
            }
            None if raw.is_none() => {
                self.problem(path, format!("missing required field ({what})"));
                None
            }
            None => None,
        }
    }

    fn duration(&mut self, path: &YamlPath, raw: &Option<Text>, default: Duration) -> Duration {
        match self.text(path, raw).map(|t| parse_duration(&t)) {
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                self.problem(path, e);
                default
            }
            None => default,
        }
    }

    fn positive_duration(
        &mut self,
        path: &YamlPath,
        raw: &Option<Text>,
        default: Duration,
    ) -> Duration {
        let d = self.duration(path, raw, default);
        if d.is_zero() {
            self.problem(path, "must be greater than zero");
        }
        d
    }

    fn choice<T: Copy>(
        &mut self,
        path: &YamlPath,
        raw: &Option<Text>,
        options: &[(&str, T)],
        default: T,
    ) -> T {
        let Some(value) = self.text(path, raw) else {
            return default;
        };
        if let Some((_, v)) = options.iter().find(|(name, _)| *name == value) {
            return *v;
        }
        let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
        self.problem(
            path,
            format!(
                "unknown value {value:?}: expected one of {}",
                names.join(", ")
            ),
        );
        default
    }

    fn socket_addr(&mut self, path: &YamlPath, raw: &Option<Text>) -> Option<SocketAddr> {
        let text = self.text(path, raw)?;
        let text = text.trim();
        let parsed = text.parse::<SocketAddr>().ok().or_else(|| {
            // `localhost:PORT` is common enough to accept; it means loopback.
            let port = text.strip_prefix("localhost:")?.parse::<u16>().ok()?;
            Some(SocketAddr::from(([127, 0, 0, 1], port)))
        });
        if parsed.is_none() {
            self.problem(
                path,
                format!("invalid address {text:?}: expected IP:PORT, e.g. 127.0.0.1:4140"),
            );
        }
        parsed
    }

    fn ca_file(&mut self, path: &YamlPath, raw: &Option<Text>) -> Option<PathBuf> {
        let file = PathBuf::from(self.text(path, raw)?);
        // The same check the TLS setup makes, so `validate` and a reload agree.
        if let Err(e) = crate::trust::client_config(Some(&file), &[]) {
            self.problem(path, e);
        }
        Some(file)
    }

    fn tls_intercept(
        &mut self,
        path: &YamlPath,
        raw: &super::raw::RawTlsIntercept,
    ) -> Option<Arc<crate::intercept::Interceptor>> {
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
        let cfg = crate::intercept::InterceptConfig {
            ca_cert_file: PathBuf::from(cert?),
            ca_key_file: PathBuf::from(key?),
            leaf_validity,
            cache_size,
        };
        if self.problems.len() > before {
            return None;
        }
        // Loaded here, once: `validate` reports a bad CA before anything starts, and the
        // runtime uses this one.
        match crate::intercept::Interceptor::load(&cfg) {
            Ok(interceptor) => Some(Arc::new(interceptor)),
            Err(e) => {
                self.problem(path, e);
                None
            }
        }
    }

    fn config(&mut self, source: &Path, parsed: super::parse::Parsed) -> Config {
        let raw = &parsed.top;
        let root = YamlPath::default();
        let default_listen = DEFAULT_LISTEN
            .parse()
            .expect("default listen address is valid");
        let listen = self
            .socket_addr(&root.key("listen"), &raw.listen)
            .unwrap_or(default_listen);
        let admin_listen = self.socket_addr(&root.key("admin_listen"), &raw.admin_listen);
        let raw_log = raw.log.as_ref().map_or_else(Default::default, |l| RawLog {
            format: l.format.clone(),
            level: l.level.clone(),
        });
        let log_path = root.key("log");
        let format = self.choice(
            &log_path.key("format"),
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
            .choice(&log_path.key("level"), &raw_log.level, &levels, "info")
            .to_string();
        let unmatched = self.choice(
            &root.key("unmatched"),
            &raw.unmatched,
            &[("forward", Unmatched::Forward), ("deny", Unmatched::Deny)],
            Unmatched::Forward,
        );
        let workers = self.text(&root.key("workers"), &raw.workers).and_then(|w| {
            match w.trim().parse::<usize>() {
                Ok(n) if (1..=1024).contains(&n) => Some(n),
                _ => {
                    self.problem(
                        &root.key("workers"),
                        format!(
                            "invalid worker count {w:?}: expected a whole number from 1 to 1024"
                        ),
                    );
                    None
                }
            }
        });
        let shutdown_grace = self.duration(
            &root.key("shutdown_grace"),
            &raw.shutdown_grace,
            Duration::from_secs(10),
        );
        let tls_intercept = raw
            .tls_intercept
            .as_ref()
            .and_then(|t| self.tls_intercept(&root.key("tls_intercept"), t));
        let provider_names: BTreeSet<&str> = parsed
            .providers
            .keys()
            .chain(&parsed.broken_providers)
            .map(String::as_str)
            .collect();
        let providers: Vec<Arc<ProviderConfig>> = parsed
            .providers
            .iter()
            .filter_map(|(name, p)| {
                self.provider(&root.key("providers").key(name), name, p)
                    .map(Arc::new)
            })
            .collect();
        let mut names = BTreeSet::new();
        let routes: Vec<Arc<RouteConfig>> = parsed
            .routes
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                let path = root.key("routes").index(i);
                let route = self.route(&path, r.as_ref()?, &provider_names)?;
                if !names.insert(route.name.clone()) {
                    self.problem(
                        &path.key("name"),
                        format!("duplicate route name {:?}", route.name),
                    );
                }
                Some(Arc::new(route))
            })
            .collect();
        for (i, later) in routes.iter().enumerate() {
            if let Some(earlier) = routes[..i].iter().find(|e| e.covers(later)) {
                self.warnings.push(format!(
                    "routes[{i}] ({:?}) can never match: route {:?} comes first and matches every request it would",
                    later.name, earlier.name
                ));
            }
        }
        if routes.is_empty() {
            self.warnings
                .push("no routes: every request is handled by `unmatched`".to_string());
        }
        Config {
            source: source.to_path_buf(),
            listen,
            admin_listen,
            log: LogConfig { format, level },
            unmatched,
            workers,
            shutdown_grace,
            tls_intercept,
            providers,
            routes,
            warnings: Vec::new(),
        }
    }
}

mod auth;
mod provider;
mod route;

/// True for hosts whose traffic never leaves the machine.
pub(super) fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

#[cfg(test)]
mod tests;
