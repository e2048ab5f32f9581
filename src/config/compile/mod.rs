//! Raw config → validated [`Config`]: interpolation, defaults, and every check, with all
//! problems collected rather than stopping at the first.
//!
//! One step per part of the file, each a method of [`Cx`], which collects the problems:
//! `top` (listeners, log, `tls_intercept`, the lists), `provider` (an OAuth2 provider),
//! `static_file`, `grant` (`grant_type` and its keys), `auth` (`client_auth` and its keys,
//! where key material is loaded), `route` and `outbound` (`egress_proxy`, `no_proxy` at
//! every level, and which level wins). This file holds the shared value checks.

mod advice;
mod auth;
mod dpop;
mod egress;
mod grant;
mod method;
mod outbound;
mod provider;
mod route;
mod sign;
mod static_file;
mod store;
mod top;

use super::locate::{Locations, YamlPath};
use super::parse::{Parsed, Place};
use super::raw::{RawConfig, RawLog, RawProvider, RawRoute, RawTlsIntercept, Text};
use super::units::{parse_duration, parse_size};
use super::{
    format_duration, interp, is_loopback_host, normalize_origin, parse_host_pattern,
    parse_server_name, Arc, ClientAuth, Config, ConfigError, Duration, Exchange, Grant, HeaderName,
    HostPattern, Limits, LogConfig, LogFormat, Method, OAuthClient, OnTokenError, Path, PathBuf,
    PrivateKeyJwt, ProviderConfig, ProxyClient, Readiness, Retries, RouteConfig, Secret,
    SocketAddr, StatusCode, TokenKey, TokenOrigin, TunnelPorts, Unmatched, Upstream,
};
use std::collections::BTreeSet;

const DEFAULT_LISTEN: &str = "127.0.0.1:4480";

/// Compiles config `text` from `source`: every problem, located, in file order and with
/// interpolated values blanked out, or the config with its warnings.
pub fn compile(
    source: &Path,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let file = source.display().to_string();
    let tree = super::parse::read(text).map_err(|e| ConfigError {
        problems: vec![serde_problem(&file, text, &e)],
    })?;
    let locations = Locations::index(text);
    let (mut parsed, structural) = super::parse::split(tree, &locations);
    let mut cx = Cx {
        env,
        problems: Vec::new(),
        warnings: Vec::new(),
        interpolated: Vec::new(),
        poisoned: std::mem::take(&mut parsed.poisoned),
    };
    let mut places = Vec::new();
    for p in structural {
        places.push((p.path.clone(), p.place));
        cx.problems.push((p.path, p.message));
    }
    let config = cx.config(source, parsed);
    let locate = |path: &YamlPath, place: Place| match place {
        Place::At(line, col) => Some((line, col)),
        Place::Key => locations.find(path, true),
        Place::Value => locations.find(path, false),
    };
    let show = |path: &YamlPath, msg: &str, at: Option<(u64, u64)>| match at {
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
                false => show(path, msg, locate(path, Place::Value)),
            })
            .collect();
        return Ok(Config { warnings, ..config });
    }
    cx.redact_interpolated();
    // In file order, as a compiler lists them; problems without a place come last.
    let mut located: Vec<(Option<(u64, u64)>, String)> = cx
        .problems
        .iter()
        .enumerate()
        .map(|(i, (path, msg))| {
            let place = places.get(i).map_or(Place::Value, |p| p.1);
            let at = locate(path, place);
            (at, show(path, msg, at))
        })
        .collect();
    located.sort_by_key(|(at, _)| at.map_or((u64::MAX, u64::MAX), |a| a));
    Err(ConfigError {
        problems: located.into_iter().map(|(_, p)| p).collect(),
    })
}

/// A YAML syntax error as `FILE:LINE:COLUMN: message`, with any quoted value in the
/// message blanked out (the value might be a secret typed into the wrong place), and a
/// hint for the most common cause: `${…}` unquoted inside `{ }` or `[ ]`, where `{`, `}`
/// and `,` are YAML syntax.
pub(super) fn serde_problem(file: &str, text: &str, e: &serde_saphyr::Error) -> String {
    let msg = redact_quoted(&e.without_snippet().to_string());
    let Some(loc) = e.location().filter(|l| l.line() > 0) else {
        return format!("{file}: {msg}");
    };
    let mut msg = format!(
        "{file}:{}:{}: {}",
        loc.line(),
        loc.column(),
        strip_location_suffix(&msg)
    );
    let line = text.lines().nth(loc.line() as usize - 1).unwrap_or("");
    let flow = line.contains('{') || line.contains('[');
    if flow && line.contains("${") {
        msg.push_str(" (inside { } or [ ], quote a value that holds ${…}: \"${file:/path}\")");
    }
    msg
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

/// What [`Cx::keyword`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Keyword {
    /// The key is not there: the default applies.
    Absent,
    Known(&'static str),
    /// There, but not one of the options, or unreadable (reported). With the option it
    /// is nearest to, if one is near: the checks that depend on the choice go on as if
    /// that had been written (a typo should not hide the next problem); without, they
    /// are skipped.
    Invalid(Option<&'static str>),
}

/// The compile context: the environment for `${…}`, and what was found so far.
struct Cx<'a> {
    env: &'a dyn Fn(&str) -> Option<String>,
    problems: Vec<(YamlPath, String)>,
    /// Located like problems when the config compiles.
    warnings: Vec<(YamlPath, String)>,
    /// Every value produced by interpolation, to keep out of messages.
    interpolated: Vec<String>,
    /// Paths whose value could not be read ([`Parsed::poisoned`]): a problem there has
    /// been reported, so nothing at or below them is.
    poisoned: Vec<YamlPath>,
}

impl Cx<'_> {
    /// A problem at `path`, unless it lies at or below a value that could not be read
    /// (whose own problem says it all).
    fn problem(&mut self, path: &YamlPath, msg: impl Into<String>) {
        if !self.is_poisoned(path) {
            self.problems.push((path.clone(), msg.into()));
        }
    }

    /// True when the value at `path` (or above it) could not be read: checks that depend
    /// on it are skipped rather than made against a default it does not have.
    fn is_poisoned(&self, path: &YamlPath) -> bool {
        self.poisoned.iter().any(|p| path.starts_with(p))
    }

    /// A value that came from `${…}` may be a secret: it never appears in a message.
    fn redact_interpolated(&mut self) {
        self.interpolated
            .sort_by_key(|v| std::cmp::Reverse(v.len()));
        for (_, msg) in &mut self.problems {
            for value in self.interpolated.iter().filter(|v| v.len() >= 3) {
                if msg.contains(value.as_str()) {
                    *msg = msg.replace(value.as_str(), "[interpolated value]");
                }
            }
        }
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

    /// The value at `path`, one of `options` (each with what it stands for), else
    /// `default`.
    fn choice<T: Copy>(
        &mut self,
        path: &YamlPath,
        raw: &Option<Text>,
        options: &[(&'static str, T)],
        default: T,
    ) -> T {
        let names: Vec<&'static str> = options.iter().map(|(n, _)| *n).collect();
        match self.keyword(path, raw, &names) {
            Keyword::Known(k) => options
                .iter()
                .find(|(n, _)| *n == k)
                .map_or(default, |o| o.1),
            Keyword::Absent | Keyword::Invalid(_) => default,
        }
    }

    /// The value at `path` as one of `options`. An unknown value is reported with the
    /// options and the nearest of them.
    fn keyword(
        &mut self,
        path: &YamlPath,
        raw: &Option<Text>,
        options: &[&'static str],
    ) -> Keyword {
        if self.is_poisoned(path) {
            return Keyword::Invalid(None);
        }
        let Some(value) = self.text(path, raw) else {
            return match raw {
                None => Keyword::Absent,
                Some(_) => Keyword::Invalid(None),
            };
        };
        match options.iter().find(|o| **o == value) {
            Some(o) => Keyword::Known(o),
            None => {
                self.problem(path, super::suggest::unknown_value(&value, options));
                Keyword::Invalid(super::suggest::closest(&value, options))
            }
        }
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
mod tests_example;
#[cfg(test)]
mod tests_keys;
#[cfg(test)]
mod tests_sender;
#[cfg(test)]
mod tests_validate;
