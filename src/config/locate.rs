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
    /// deserializer reports that error with its own location).
    pub fn index(text: &str) -> Locations {
        Locations {
            root: serde_saphyr::from_str::<Spanned<Node>>(text).ok(),
        }
    }

    /// The location of the deepest node along `path` that exists: a missing field is
    /// reported at the mapping that should hold it. With `at_key`, the location of the
    /// last key itself rather than of its value (for unknown fields).
    pub fn find(&self, path: &YamlPath, at_key: bool) -> Option<(u64, u64)> {
        let mut node = self.root.as_ref()?;
        for (i, seg) in path.0.iter().enumerate() {
            let next = match (&node.value, seg) {
                (Node::Map(entries), Seg::Key(k)) => {
                    let entry = entries.iter().find(|(key, _)| key.value.0 == *k);
                    if let (true, Some((key, _))) = (at_key && i + 1 == path.0.len(), entry) {
                        return position(key.referenced);
                    }
                    entry.map(|(_, v)| v)
                }
                (Node::Seq(items), Seg::Index(i)) => items.get(*i),
                _ => None,
            };
            match next {
                Some(n) => node = n,
                None => break,
            }
        }
        position(node.referenced)
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
        // A missing field points at the mapping that should hold it.
        assert_eq!(
            locs.find(&p.key("providers").key("crm").key("client_id"), false)
                .map(|l| l.0),
            Some(4)
        );
        assert_eq!(
            p.key("routes").index(0).key("match").to_string(),
            "routes[0].match"
        );
    }
}
