//! Where each value of a config file stands: a tree of YAML paths to line and column,
//! read from the same text the config is deserialized from.
//!
//! Validation works on typed structs and knows only the YAML path of a bad value
//! (`providers.crm.token_url`); this index turns that path back into `LINE:COLUMN` so an
//! operator can jump straight to it. It never keeps any scalar's text.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;
use std::fmt;

/// One step of a YAML path: a mapping key or a sequence index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// A YAML path such as `routes[0].match.host`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct YamlPath(pub Vec<Seg>);

impl YamlPath {
    pub fn key(&self, k: &str) -> YamlPath {
        let mut p = self.clone();
        p.0.push(Seg::Key(k.to_string()));
        p
    }

    pub fn index(&self, i: usize) -> YamlPath {
        let mut p = self.clone();
        p.0.push(Seg::Index(i));
        p
    }

    /// True when `self` is `prefix` or lies below it.
    pub fn starts_with(&self, prefix: &YamlPath) -> bool {
        self.0.starts_with(&prefix.0)
    }
}

impl fmt::Display for YamlPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if i == 0 => write!(f, "{k}")?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// Line and column (both 1-based) of every node in a YAML document.
#[derive(Debug, Default)]
pub struct Locations {
    root: Option<Spanned<Node>>,
}

#[derive(Debug)]
enum Node {
    Map(Vec<(Spanned<KeyText>, Spanned<Node>)>),
    Seq(Vec<Spanned<Node>>),
    Scalar,
}

impl Locations {
    /// Indexes `text`; a document that does not parse gives an empty index (the
    /// deserializer reports that error with its own location). Repeated keys are all
    /// kept, so [`Locations::duplicates`] can name both places.
    pub fn index(text: &str) -> Locations {
        let options = serde_saphyr::options! {
            duplicate_keys: serde_saphyr::DuplicateKeyPolicy::PassThrough,
        };
        Locations {
            root: serde_saphyr::from_str_with_options::<Spanned<Node>>(text, options).ok(),
        }
    }

    /// Where `path` is written. A scalar is located at its value, and so is a mapping or
    /// list that starts on its key's line (`{ … }`, `[ … ]`); one written as a block is
    /// located at its key (its value starts at its first entry, which would point at
    /// that entry instead). A missing field is located at the block that should hold it,
    /// in the same way. With `at_key`, the last key itself (for unknown fields).
    pub fn find(&self, path: &YamlPath, at_key: bool) -> Option<(u64, u64)> {
        let mut node = self.root.as_ref()?;
        // The key through which `node` was reached, if it was reached through one.
        let mut via_key = None;
        for (i, seg) in path.0.iter().enumerate() {
            let next = match (&node.value, seg) {
                (Node::Map(entries), Seg::Key(k)) => {
                    let entry = entries.iter().find(|(key, _)| key.value.0 == *k);
                    if let (true, Some((key, _))) = (at_key && i + 1 == path.0.len(), entry) {
                        return position(key.referenced);
                    }
                    entry.map(|(key, v)| (Some(key.referenced), v))
                }
                (Node::Seq(items), Seg::Index(i)) => items.get(*i).map(|n| (None, n)),
                _ => None,
            };
            match next {
                Some((key, n)) => (via_key, node) = (key, n),
                None => break,
            }
        }
        match (&node.value, via_key) {
            (Node::Map(_) | Node::Seq(_), Some(key)) if key.line() != node.referenced.line() => {
                position(key)
            }
            _ => position(node.referenced),
        }
    }

    /// Every key written twice in one mapping: its path, where it was first written and
    /// where again (the first occurrence's children are searched too).
    pub fn duplicates(&self) -> Vec<Duplicate> {
        let mut out = Vec::new();
        if let Some(root) = &self.root {
            collect_duplicates(root, &YamlPath::default(), &mut out);
        }
        out.sort_by_key(|d| d.again);
        out
    }
}

/// A key written twice in one mapping.
#[derive(Debug, PartialEq, Eq)]
pub struct Duplicate {
    pub path: YamlPath,
    pub first: (u64, u64),
    pub again: (u64, u64),
}

fn collect_duplicates(node: &Spanned<Node>, path: &YamlPath, out: &mut Vec<Duplicate>) {
    match &node.value {
        Node::Map(entries) => {
            for (i, (key, value)) in entries.iter().enumerate() {
                let name = &key.value.0;
                match entries[..i].iter().find(|(k, _)| k.value.0 == *name) {
                    Some((first, _)) => {
                        let at = |loc| position(loc).unwrap_or((0, 0));
                        out.push(Duplicate {
                            path: path.key(name),
                            first: at(first.referenced),
                            again: at(key.referenced),
                        });
                    }
                    None => collect_duplicates(value, &path.key(name), out),
                }
            }
        }
        Node::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                collect_duplicates(item, &path.index(i), out);
            }
        }
        Node::Scalar => {}
    }
}

fn position(loc: serde_saphyr::Location) -> Option<(u64, u64)> {
    (loc.line() > 0).then(|| (loc.line(), loc.column()))
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<KeyText>>()? {
            entries.push((key, map.next_value::<Spanned<Node>>()?));
        }
        Ok(Node::Map(entries))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Node>>()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
}

/// A mapping key of any scalar type, kept as text for path lookups.
#[derive(Debug)]
struct KeyText(String);

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::config::raw::Text::deserialize(d).map(|t| KeyText(t.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nested_keys_and_sequence_items() {
        let yaml = "listen: 127.0.0.1:1\nproviders:\n  crm:\n    token_url: http://x\nroutes:\n  - provider: crm\n    match: { host: a.example }\n";
        let locs = Locations::index(yaml);
        let p = YamlPath::default();
        assert_eq!(locs.find(&p.key("listen"), false), Some((1, 9)));
        assert_eq!(
            locs.find(&p.key("providers").key("crm").key("token_url"), true),
            Some((4, 5))
        );
        assert_eq!(
            locs.find(&p.key("providers").key("crm").key("token_url"), false),
            Some((4, 16))
        );
        assert_eq!(
            locs.find(&p.key("routes").index(0).key("provider"), false),
            Some((6, 15))
        );
        assert_eq!(
            locs.find(&p.key("routes").index(0).key("match").key("host"), false)
                .map(|l| l.0),
            Some(7)
        );
        // A missing field points at the key of the block that should hold it (`crm:`,
        // not its first entry); a mapping or list at its key.
        assert_eq!(
            locs.find(&p.key("providers").key("crm").key("client_id"), false),
            Some((3, 3))
        );
        assert_eq!(locs.find(&p.key("providers"), false), Some((2, 1)));
        assert_eq!(locs.find(&p.key("routes").index(0), false), Some((6, 5)));
        assert_eq!(
            locs.find(&p.key("routes").index(0).key("upstream"), false),
            Some((6, 5))
        );
        assert_eq!(
            p.key("routes").index(0).key("match").to_string(),
            "routes[0].match"
        );
    }

    #[test]
    fn finds_keys_written_twice() {
        let yaml = "listen: a\nproviders:\n  crm: { timeout: 1s, timeout: 2s }\n  crm:\n    x: 1\nlisten: b\nroutes:\n  - { name: a, name: b }\n";
        let p = YamlPath::default();
        let dups = Locations::index(yaml).duplicates();
        let want = [
            (
                p.key("providers").key("crm").key("timeout"),
                (3, 10),
                (3, 23),
            ),
            (p.key("providers").key("crm"), (3, 3), (4, 3)),
            (p.key("listen"), (1, 1), (6, 1)),
            (p.key("routes").index(0).key("name"), (8, 7), (8, 16)),
        ];
        let got: Vec<_> = dups
            .into_iter()
            .map(|d| (d.path, d.first, d.again))
            .collect();
        assert_eq!(got, want);
        assert!(p
            .key("routes")
            .index(0)
            .key("name")
            .starts_with(&p.key("routes")));
        assert!(!p.key("routes").starts_with(&p.key("routes").index(0)));
    }
}
