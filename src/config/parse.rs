//! YAML text → [`RawConfig`], reporting every structural problem (unknown keys, wrong
//! types) at once with its YAML path, instead of serde's first-error-only.
//!
//! The text is parsed once into a generic tree; unknown keys are found by comparing with
//! the field lists serde derives for the raw structs, then each provider and each route
//! is deserialized on its own, so one bad entry does not hide the problems of the next.

use super::locate::YamlPath;
use super::raw::{
    RawClient, RawConfig, RawLimits, RawLog, RawMatch, RawProvider, RawRetries, RawRoute,
    RawTlsIntercept, Text,
};
use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// A structural problem: where, what, and whether the location is the key's (unknown
/// fields) or the value's.
pub struct Problem {
    pub path: YamlPath,
    pub message: String,
    pub at_key: bool,
}

/// A config file as written, split into its entries.
#[derive(Debug, Default)]
pub struct Parsed {
    /// The top-level keys (its `providers`, `routes` and `clients` are always `None`).
    pub top: RawConfig,
    /// `clients`: `None` when the key is absent (or null).
    pub clients: Option<BTreeMap<String, RawClient>>,
    /// Clients that exist but did not parse (so routes naming them are not flagged).
    pub broken_clients: Vec<String>,
    pub providers: BTreeMap<String, RawProvider>,
    /// Providers that exist but did not parse (so routes naming them are not flagged).
    pub broken_providers: Vec<String>,
    /// One slot per route in file order; `None` where the route did not parse.
    pub routes: Vec<Option<RawRoute>>,
}

/// Parses `text`: `Err` is a YAML syntax error. Structural problems come back with
/// whatever entries did parse, so their semantic problems can be reported too.
pub fn parse(text: &str) -> Result<(Parsed, Vec<Problem>), serde_saphyr::Error> {
    let mut value: Value = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_saphyr::from_str(text)?
    };
    let mut problems = Vec::new();
    let root = YamlPath::default();
    if value.is_null() {
        value = Value::Object(Map::new());
    }
    let Some(top) = value.as_object_mut() else {
        problems.push(Problem {
            path: root,
            message: "the config file must be a mapping of keys".into(),
            at_key: false,
        });
        return Ok((Parsed::default(), problems));
    };
    unknown_keys(top, &root, fields_of::<RawConfig>(), &mut problems);
    if let Some(Value::Object(t)) = top.get_mut("tls_intercept") {
        unknown_keys(
            t,
            &root.key("tls_intercept"),
            fields_of::<RawTlsIntercept>(),
            &mut problems,
        );
    }
    if let Some(Value::Object(log)) = top.get_mut("log") {
        unknown_keys(log, &root.key("log"), fields_of::<RawLog>(), &mut problems);
    }
    if let Some(Value::Object(limits)) = top.get_mut("limits") {
        let path = root.key("limits");
        unknown_keys(limits, &path, fields_of::<RawLimits>(), &mut problems);
    }
    let providers = top.remove("providers").unwrap_or(Value::Null);
    let routes = top.remove("routes").unwrap_or(Value::Null);
    let clients = top.remove("clients").unwrap_or(Value::Null);

    let mut raw = Parsed {
        top: typed(value, &root, &mut problems).unwrap_or_default(),
        ..Parsed::default()
    };
    parse_providers(providers, &root.key("providers"), &mut raw, &mut problems);
    parse_routes(routes, &root.key("routes"), &mut raw, &mut problems);
    parse_clients(clients, &root.key("clients"), &mut raw, &mut problems);
    Ok((raw, problems))
}

/// The `clients` mapping, entry by entry: `name: { password: ... }` or `name: password`.
fn parse_clients(clients: Value, base: &YamlPath, raw: &mut Parsed, problems: &mut Vec<Problem>) {
    let map = match clients {
        Value::Null => return,
        Value::Object(map) => map,
        _ => {
            problems.push(Problem {
                path: base.clone(),
                message: "expected a mapping of client names to passwords".into(),
                at_key: false,
            });
            return;
        }
    };
    let mut parsed = BTreeMap::new();
    for (name, mut c) in map {
        // `app:s3cret` in a flow mapping is one key: an invalid name may hold a password,
        // so it appears neither in the message nor in the YAML path.
        if !super::egress::valid_client_name(&name) {
            problems.push(Problem {
                path: base.clone(),
                message: "a client name is not a valid Basic-auth user name (1 to 128 visible ASCII characters, no ':'); it is not shown, in case it holds a password".into(),
                at_key: false,
            });
            raw.broken_clients.push(name);
            continue;
        }
        let path = base.key(&name);
        let client = match &mut c {
            Value::Object(obj) => {
                unknown_keys(obj, &path, fields_of::<RawClient>(), problems);
                typed::<RawClient>(c, &path, problems)
            }
            Value::Null => Some(RawClient {
                password: None,
                short: true,
            }),
            Value::Array(_) => {
                problems.push(Problem {
                    path,
                    message: "expected a password, or a mapping with `password`".into(),
                    at_key: false,
                });
                None
            }
            _ => typed::<Text>(c, &path, problems).map(|password| RawClient {
                password: Some(password),
                short: true,
            }),
        };
        match client {
            Some(client) => {
                parsed.insert(name, client);
            }
            None => raw.broken_clients.push(name),
        }
    }
    raw.clients = Some(parsed);
}

/// The `providers` mapping, entry by entry.
fn parse_providers(
    providers: Value,
    base: &YamlPath,
    raw: &mut Parsed,
    problems: &mut Vec<Problem>,
) {
    let map = match providers {
        Value::Null => return,
        Value::Object(map) => map,
        _ => {
            problems.push(Problem {
                path: base.clone(),
                message: "expected a mapping of provider names to providers".into(),
                at_key: false,
            });
            return;
        }
    };
    for (name, mut p) in map {
        let path = base.key(&name);
        if let Value::Object(obj) = &mut p {
            unknown_keys(obj, &path, fields_of::<RawProvider>(), problems);
            if let Some(Value::Object(r)) = obj.get_mut("retries") {
                unknown_keys(r, &path.key("retries"), fields_of::<RawRetries>(), problems);
            }
        }
        match typed::<RawProvider>(p, &path, problems) {
            Some(p) => {
                raw.providers.insert(name, p);
            }
            None => raw.broken_providers.push(name),
        }
    }
}

/// The `routes` list, entry by entry.
fn parse_routes(routes: Value, base: &YamlPath, raw: &mut Parsed, problems: &mut Vec<Problem>) {
    let items = match routes {
        Value::Null => return,
        Value::Array(items) => items,
        _ => {
            problems.push(Problem {
                path: base.clone(),
                message: "expected a list of routes".into(),
                at_key: false,
            });
            return;
        }
    };
    for (i, mut r) in items.into_iter().enumerate() {
        let path = base.index(i);
        if let Value::Object(obj) = &mut r {
            unknown_keys(obj, &path, fields_of::<RawRoute>(), problems);
            if let Some(Value::Object(m)) = obj.get_mut("match") {
                unknown_keys(m, &path.key("match"), fields_of::<RawMatch>(), problems);
            }
        }
        // A route that does not parse keeps its slot, so later indexes stay right.
        raw.routes.push(typed::<RawRoute>(r, &path, problems));
    }
}

/// Removes (and reports) keys that `fields` does not know.
fn unknown_keys(
    obj: &mut Map<String, Value>,
    path: &YamlPath,
    fields: &'static [&'static str],
    problems: &mut Vec<Problem>,
) {
    let unknown: Vec<String> = obj
        .keys()
        .filter(|k| !fields.contains(&k.as_str()))
        .cloned()
        .collect();
    for key in unknown {
        obj.remove(&key);
        problems.push(Problem {
            path: path.key(&key),
            message: format!(
                "unknown field `{key}`, expected one of: {}",
                fields.join(", ")
            ),
            at_key: true,
        });
    }
}

/// Deserializes one entry, turning a failure into a problem at the failing field.
fn typed<T: for<'de> Deserialize<'de>>(
    value: Value,
    base: &YamlPath,
    problems: &mut Vec<Problem>,
) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(v) => Some(v),
        Err(e) => {
            let mut path = base.clone();
            for seg in e.path().iter() {
                path = match seg {
                    serde_path_to_error::Segment::Map { key } => path.key(key),
                    serde_path_to_error::Segment::Seq { index } => path.index(*index),
                    _ => path,
                };
            }
            problems.push(Problem {
                path,
                message: super::compile::redact_quoted(&e.inner().to_string()),
                at_key: false,
            });
            None
        }
    }
}

/// The field names serde derived for `T` (its `deserialize_struct` call), so unknown keys
/// are judged by exactly the list the deserializer would use.
fn fields_of<T: for<'de> Deserialize<'de>>() -> &'static [&'static str] {
    struct Probe<'a>(&'a mut &'static [&'static str]);
    impl<'de> Deserializer<'de> for Probe<'_> {
        type Error = de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("probe"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("probe"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
            unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Probe(&mut fields));
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_lists_come_from_serde() {
        assert!(fields_of::<RawRoute>().contains(&"match"));
        assert!(fields_of::<RawProvider>().contains(&"client_secret"));
        assert_eq!(fields_of::<RawLog>(), &["format", "level"]);
    }

    #[test]
    fn reports_problems_of_every_entry() {
        let yaml = "bogus_top: 1\nlog: { formt: json }\nproviders:\n  a:\n    timeoutt: 1s\n    prefetch: hunter2\n  b:\n    retries: { tries: 3 }\nroutes:\n  - match: { hots: x }\n  - methods: GET\n  - provider: a\n";
        let (raw, problems) = parse(yaml).unwrap();
        let paths: Vec<String> = problems.iter().map(|p| p.path.to_string()).collect();
        assert_eq!(
            paths,
            [
                "bogus_top",
                "log.formt",
                "providers.a.timeoutt",
                "providers.a.prefetch",
                "providers.b.retries.tries",
                "routes[0].match.hots",
                "routes[1].methods"
            ]
        );
        assert!(!problems.iter().any(|p| p.message.contains("hunter2")));
        assert_eq!(raw.routes.len(), 3, "route slots are kept");
        assert!(raw.routes[2].is_some());
        assert_eq!(raw.broken_providers, ["a"]);
    }
}
