//! Raw config → validated [`Config`]: interpolation, defaults, and every check, with all
//! problems collected rather than stopping at the first.
//!
//! One step per part of the file, each a method of [`Cx`], which collects the problems:
//! `top` (listeners, log, `tls_intercept`, the lists), `provider` (an OAuth2 provider),
//! `static_file`, `grant` (`grant_type` and its keys), `auth` (`client_auth` and its keys,
//! where key material is loaded) and `route`. This file holds the shared value checks.

mod advice;
mod auth;
mod egress;
mod grant;
mod provider;
mod route;
mod static_file;
mod top;

use super::locate::{Locations, YamlPath};
use super::parse::Parsed;
use super::raw::{RawConfig, RawLog, RawProvider, RawRoute, RawTlsIntercept, Text};
use super::units::{parse_duration, parse_size};
use super::{
    format_duration, interp, is_loopback_host, normalize_origin, parse_host_pattern,
    parse_server_name, Arc, ClientAuth, Config, ConfigError, Duration, Exchange, Grant, HeaderName,
    HostPattern, Limits, LogConfig, LogFormat, Method, OAuthClient, OnTokenError, Path, PathBuf,
    PrivateKeyJwt, ProviderConfig, ProxyClient, Retries, RouteConfig, Secret, SocketAddr,
    StatusCode, TokenKey, TokenOrigin, TunnelPorts, Unmatched, Upstream,
};
use std::collections::BTreeSet;

const DEFAULT_LISTEN: &str = "127.0.0.1:4480";

/// Compiles config `text` from `source`: every problem, located and with interpolated
/// values blanked out, or the config with its warnings.
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
    let locations = match cx.problems.is_empty() && cx.warnings.is_empty() {
        true => Locations::default(),
        false => Locations::index(text),
    };
    let locate = |path: &YamlPath, msg: &str, at_key: bool| match locations.find(path, at_key) {
        Some((line, col)) => format!("{file}:{line}:{col}: {path}: {msg}"),
        None => format!("{file}: {path}: {msg}"),
    };
    if cx.problems.is_empty() {
        // A warning about the whole file has no place in it.
        let warnings = cx
            .warnings
            .iter()
            .map(|(path, msg)| match path.0.is_empty() {
                true => format!("{file}: {msg}"),
                false => locate(path, msg, false),
            })
            .collect();
        return Ok(Config { warnings, ..config });
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
    let problems = cx
        .problems
        .iter()
        .map(|(path, msg)| locate(path, msg, key_paths.contains(path)))
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

/// The compile context: the environment for `${…}`, and what was found so far.
struct Cx<'a> {
    env: &'a dyn Fn(&str) -> Option<String>,
    problems: Vec<(YamlPath, String)>,
    /// Located like problems when the config compiles.
    warnings: Vec<(YamlPath, String)>,
    /// Every value produced by interpolation, to keep out of messages.
    interpolated: Vec<String>,
}

impl Cx<'_> {
    fn problem(&mut self, path: &YamlPath, msg: impl Into<String>) {
        self.problems.push((path.clone(), msg.into()));
    }

    /// A warning about the value at `path` (the root path: about the whole file).
    fn warn(&mut self, path: &YamlPath, msg: impl Into<String>) {
        self.warnings.push((path.clone(), msg.into()));
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

    /// Reports each present key of `owned` (key, present, the `selector` value it belongs
    /// to) whose value is not the chosen one.
    fn keys_belong_to(
        &mut self,
        path: &YamlPath,
        selector: &str,
        chosen: &str,
        owned: &[(&str, bool, &str)],
    ) {
        for (key, present, belongs) in owned {
            if *present && chosen != *belongs {
                self.problem(&path.key(key), format!("only with {selector}: {belongs}"));
            }
        }
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
                format!("invalid address {text:?}: expected IP:PORT, e.g. 127.0.0.1:4480"),
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
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_advice;
#[cfg(test)]
mod tests_egress;
#[cfg(test)]
mod tests_keys;
