//! YAML text → [`RawConfig`], reporting every structural problem (unknown keys, wrong
//! types) at once with its YAML path, instead of serde's first-error-only.
//!
//! The text is parsed once into a generic tree; unknown keys are found by comparing with
//! the field lists serde derives for the raw structs, then each provider and each route
//! is deserialized on its own, so one bad entry does not hide the problems of the next.

use super::locate::{Locations, Seg, YamlPath};
use super::raw::{RawClient, RawConfig, RawProvider, RawRoute, Text};
use super::schema::{block_named, blocks, Block, TOP};
use super::suggest::closest;
use serde::de::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// A structural problem: where, and what.
pub struct Problem {
    pub path: YamlPath,
    pub message: String,
    pub place: Place,
}

/// Where a structural problem is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// At the value of the path.
    Value,
    /// At the path's last key (an unknown field).
    Key,
    /// At this line and column (a key written twice: the second time).
    At(u64, u64),
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
    /// Paths whose value could not be read (wrong type, key written twice, or the key a
    /// misspelt one most likely meant). A structural problem has been reported for each,
    /// so checks that would only repeat it there, or below it, are not made.
    pub poisoned: Vec<YamlPath>,
}

/// Reads YAML `text` into a tree: `Err` is a syntax error. A key written twice keeps its
/// first value here; [`split`] reports it.
pub fn read(text: &str) -> Result<Value, serde_saphyr::Error> {
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    // The tree is untyped, so plain scalars are inferred: keep the spellings that are
    // strings to anyone reading the file (`no`, `on`, `y`, `0123`, `1_000`), so that a
    // client id or secret like those is sent as written. Only YAML 1.2 booleans are
    // booleans.
    let options = serde_saphyr::options! {
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::FirstWins,
        strict_booleans: true,
        leading_zero_numbers_as_strings: true,
        underscored_numbers_as_strings: true,
    };
    serde_saphyr::from_str_with_options(text, options)
}

/// Splits the tree [`read`] returned into its entries. Structural problems come back with
/// whatever entries did parse, so their semantic problems can be reported too.
pub fn split(mut value: Value, locations: &Locations) -> (Parsed, Vec<Problem>) {
    let mut ck = Checker {
        locations,
        problems: Vec::new(),
        poisoned: Vec::new(),
    };
    ck.duplicates();
    let root = YamlPath::default();
    if value.is_null() {
        value = Value::Object(Map::new());
    }
    let Some(top) = value.as_object_mut() else {
        ck.problems.push(Problem {
            path: root,
            message: "the config file must be a mapping of keys".into(),
            place: Place::Value,
        });
        return (Parsed::default(), ck.problems);
    };
    ck.unknown_keys(top, &root, TOP);
    for key in ["tls_intercept", "log", "limits", "token_store"] {
        if let Some(Value::Object(block)) = top.get_mut(key) {
            ck.unknown_keys(block, &root.key(key), key);
        }
    }
    if let Some(Value::Object(store)) = top.get_mut("token_store") {
        if let Some(Value::Object(redis)) = store.get_mut("redis") {
            let path = root.key("token_store").key("redis");
            ck.unknown_keys(redis, &path, "token_store.redis");
        }
    }
    let providers = top.remove("providers").unwrap_or(Value::Null);
    let routes = top.remove("routes").unwrap_or(Value::Null);
    let clients = top.remove("clients").unwrap_or(Value::Null);

    let mut raw = Parsed {
        top: ck.typed(value, &root).unwrap_or_default(),
        ..Parsed::default()
    };
    ck.providers(providers, &root.key("providers"), &mut raw);
    ck.routes(routes, &root.key("routes"), &mut raw);
    ck.clients(clients, &root.key("clients"), &mut raw);
    raw.poisoned = ck.poisoned;
    (raw, ck.problems)
}

/// The structural problems found so far, and the paths they poisoned.
struct Checker<'a> {
    locations: &'a Locations,
    problems: Vec<Problem>,
    poisoned: Vec<YamlPath>,
}

impl Checker<'_> {
    /// Every key written twice, at its second place, naming the first. The path is
    /// poisoned: which value was meant is unknown.
    fn duplicates(&mut self) {
        for d in self.locations.duplicates() {
            let (path, key) = match d.path.0.as_slice() {
                // An invalid client name may hold a password (`app:s3cret`): not shown.
                [Seg::Key(c), Seg::Key(name)]
                    if c == "clients" && !super::egress::valid_client_name(name) =>
                {
                    let clients = YamlPath::default().key("clients");
                    (clients, "(a client name, not shown)".to_string())
                }
                [.., Seg::Key(k)] => (d.path.clone(), format!("`{k}`")),
                _ => continue,
            };
            self.problems.push(Problem {
                message: format!("duplicate key {key} (first at {}:{})", d.first.0, d.first.1),
                place: Place::At(d.again.0, d.again.1),
                path,
            });
            self.poisoned.push(d.path);
        }
    }

    /// The `clients` mapping, entry by entry: `name: { password: ... }` or `name: password`.
    fn clients(&mut self, clients: Value, base: &YamlPath, raw: &mut Parsed) {
        let map = match clients {
            Value::Null => return,
            Value::Object(map) => map,
            _ => {
                self.at_value(base, "expected a mapping of client names to passwords");
                return;
            }
        };
        let mut parsed = BTreeMap::new();
        for (name, mut c) in map {
            // `app:s3cret` in a flow mapping is one key: an invalid name may hold a
            // password, so it appears neither in the message nor in the YAML path.
            if !super::egress::valid_client_name(&name) {
                // Located at the name itself, which the path does not show.
                let place = match self.locations.find(&base.key(&name), true) {
                    Some((line, col)) => Place::At(line, col),
                    None => Place::Value,
                };
                self.problems.push(Problem {
                    path: base.clone(),
                    message: "a client name is not a valid Basic-auth user name (1 to 128 visible ASCII characters, no ':'); it is not shown, in case it holds a password".into(),
                    place,
                });
                raw.broken_clients.push(name);
                continue;
            }
            let path = base.key(&name);
            let client = match &mut c {
                Value::Object(obj) => {
                    self.unknown_keys(obj, &path, "clients.<name>");
                    self.typed::<RawClient>(c, &path)
                }
                Value::Null => Some(RawClient {
                    password: None,
                    short: true,
                }),
                Value::Array(_) => {
                    self.at_value(&path, "expected a password, or a mapping with `password`");
                    None
                }
                _ => self.typed::<Text>(c, &path).map(|password| RawClient {
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
    fn providers(&mut self, providers: Value, base: &YamlPath, raw: &mut Parsed) {
        let map = match providers {
            Value::Null => return,
            Value::Object(map) => map,
            _ => {
                self.at_value(base, "expected a mapping of provider names to providers");
                return;
            }
        };
        for (name, mut p) in map {
            let path = base.key(&name);
            if let Value::Object(obj) = &mut p {
                self.unknown_keys(obj, &path, "providers.<name>");
                for (key, block) in [
                    ("retries", "providers.<name>.retries"),
                    ("subject_token_from", "providers.<name>.subject_token_from"),
                    ("dpop", "providers.<name>.dpop"),
                ] {
                    if let Some(Value::Object(inner)) = obj.get_mut(key) {
                        self.unknown_keys(inner, &path.key(key), block);
                    }
                }
            }
            match self.typed::<RawProvider>(p, &path) {
                Some(p) => {
                    raw.providers.insert(name, p);
                }
                None => raw.broken_providers.push(name),
            }
        }
    }

    /// The `routes` list, entry by entry.
    fn routes(&mut self, routes: Value, base: &YamlPath, raw: &mut Parsed) {
        let items = match routes {
            Value::Null => return,
            Value::Array(items) => items,
            _ => {
                self.at_value(base, "expected a list of routes (one `- ` item per route)");
                return;
            }
        };
        for (i, mut r) in items.into_iter().enumerate() {
            let path = base.index(i);
            if let Value::Object(obj) = &mut r {
                self.unknown_keys(obj, &path, "routes[]");
                for (key, block) in [("match", "routes[].match"), ("sign", "routes[].sign")] {
                    if let Some(Value::Object(m)) = obj.get_mut(key) {
                        self.unknown_keys(m, &path.key(key), block);
                    }
                }
            }
            // A route that does not parse keeps its slot, so later indexes stay right.
            raw.routes.push(self.typed::<RawRoute>(r, &path));
        }
    }

    fn at_value(&mut self, path: &YamlPath, message: &str) {
        self.problems.push(Problem {
            path: path.clone(),
            message: message.into(),
            place: Place::Value,
        });
    }

    /// Removes (and reports) the keys of `obj` that `block` does not have. A misspelt key
    /// poisons the key it most likely meant, so that key is not also reported missing.
    fn unknown_keys(&mut self, obj: &mut Map<String, Value>, path: &YamlPath, block: &str) {
        let block = block_named(block);
        let unknown: Vec<String> = obj
            .keys()
            .filter(|k| !block.fields.contains(&k.as_str()))
            .cloned()
            .collect();
        for key in unknown {
            obj.remove(&key);
            let (message, meant) = unknown_key(&key, block);
            if let Some(meant) = meant.filter(|m| !obj.contains_key(*m)) {
                self.poisoned.push(path.key(meant));
            }
            self.problems.push(Problem {
                path: path.key(&key),
                message,
                place: Place::Key,
            });
        }
    }

    /// Deserializes one entry. A value of the wrong type is reported at its path and
    /// taken out (a list item is blanked, so later indexes stay right), and the entry is
    /// read again, so every such value in the entry is reported, not only the first, and
    /// the entry's other keys are still checked. `None` when the entry itself is not a
    /// mapping.
    fn typed<T: for<'de> Deserialize<'de>>(
        &mut self,
        mut value: Value,
        base: &YamlPath,
    ) -> Option<T> {
        // Each round removes one value, so this ends; the bound is only a safeguard.
        for _ in 0..256 {
            let e = match serde_path_to_error::deserialize::<_, T>(&value) {
                Ok(v) => return Some(v),
                Err(e) => e,
            };
            let mut segs = Vec::new();
            for seg in e.path().iter() {
                match seg {
                    serde_path_to_error::Segment::Map { key } => segs.push(Seg::Key(key.clone())),
                    serde_path_to_error::Segment::Seq { index } => segs.push(Seg::Index(*index)),
                    _ => {}
                }
            }
            let mut path = base.clone();
            path.0.extend(segs.iter().cloned());
            self.at_value(&path, &describe(&e.inner().to_string()));
            if segs.is_empty() || !take_out(&mut value, &segs) {
                return None;
            }
            self.poisoned.push(path);
        }
        None
    }
}

/// The message for `key`, unknown in `block`, and the key it most likely meant.
fn unknown_key(key: &str, block: Block) -> (String, Option<&'static str>) {
    if let Some((_, _, why)) = super::schema::NOT_BUILT
        .iter()
        .find(|(b, k, _)| *b == block.name && *k == key)
    {
        return (
            format!("`{key}` is specified but refused: {why} (see README, Known gaps)"),
            None,
        );
    }
    if let Some(near) = closest(key, block.fields) {
        return (
            format!("unknown field `{key}`; did you mean `{near}`?"),
            Some(near),
        );
    }
    let homes: Vec<&str> = blocks()
        .iter()
        .filter(|b| b.name != block.name && b.fields.contains(&key))
        .map(|b| b.name)
        .collect();
    let message = if !homes.is_empty() {
        format!(
            "unknown field `{key}` here; it is a key of {}",
            homes.join(" and ")
        )
    } else if block.fields.len() <= 12 {
        format!(
            "unknown field `{key}`, expected one of: {}",
            block.fields.join(", ")
        )
    } else {
        format!(
            "unknown field `{key}`: not a key of {} (docs/config.md lists them all)",
            block.name
        )
    };
    (message, None)
}

/// serde's message for a value of the wrong type, without the value (serde quotes a
/// string in `"…"` and a number or boolean in backticks) and with the names of our
/// internal types replaced by what the file should hold.
fn describe(serde_message: &str) -> String {
    let msg = super::compile::redact_quoted(serde_message);
    let msg = match (msg.find(" `"), msg.find("`,")) {
        (Some(a), Some(b)) if a < b => format!("{}{}", &msg[..a], &msg[b + 1..]),
        _ => msg,
    };
    let msg = match msg.find("expected struct ") {
        Some(i) => format!("{}expected a mapping of keys", &msg[..i]),
        None => msg,
    };
    let msg = match msg.strip_suffix("expected a map") {
        Some(head) => format!("{head}expected a mapping"),
        None => msg,
    };
    msg.replace("expected a boolean", "expected true or false")
        .replace(
            "expected a sequence",
            "expected a list ([a, b], or one `- item` per line)",
        )
}

/// Takes the value at `segs` out of `value`: a mapping entry is removed, a list item
/// blanked (an empty string). False when there is nothing there to take out.
fn take_out(value: &mut Value, segs: &[Seg]) -> bool {
    let Some((last, parents)) = segs.split_last() else {
        return false;
    };
    let mut node = value;
    for seg in parents {
        let next = match (node, seg) {
            (Value::Object(map), Seg::Key(k)) => map.get_mut(k),
            (Value::Array(items), Seg::Index(i)) => items.get_mut(*i),
            _ => None,
        };
        match next {
            Some(n) => node = n,
            None => return false,
        }
    }
    match (node, last) {
        (Value::Object(map), Seg::Key(k)) => map.remove(k).is_some(),
        (Value::Array(items), Seg::Index(i)) => match items.get_mut(*i) {
            Some(Value::String(s)) if s.is_empty() => false,
            Some(item) => {
                *item = Value::String(String::new());
                true
            }
            None => false,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests;
