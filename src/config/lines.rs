//! Positions of YAML values by key path, so errors can say where a bad value sits
//! (`gw.yaml:12:14: listeners[0].passive.ports: ...`).
//!
//! The text already parsed into [`super::raw`] is parsed a second time into a
//! [`Tree`] that only keeps serde-saphyr's [`Spanned`] locations and every key as
//! written (repeated keys included, so [`super::schema`] can report them); the raw
//! mirror stays free of wrappers, and a document this pass cannot read just yields
//! no positions.

use std::collections::HashMap;
use std::fmt;

use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_saphyr::Spanned;

/// Key path (`listeners[0].passive.ports`) → 1-based line and column of its value.
#[derive(Debug, Default, Clone)]
pub(crate) struct LineMap(HashMap<String, (u64, u64)>);

/// A parsed document with positions: what [`LineMap`] and the key check walk.
pub(crate) type Tree = Spanned<Node>;

/// Parses `yaml` into a [`Tree`]; `None` when the text is not YAML (serde's own
/// parse reports that).
pub(crate) fn tree(yaml: &str) -> Option<Tree> {
    // Repeated keys reach the visitor, so they are reported by `schema` with both
    // positions instead of as the library's "set DuplicateKeyPolicy" advice.
    let options = serde_saphyr::options! {
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::PassThrough,
    };
    serde_saphyr::from_str_with_options::<Tree>(yaml, options).ok()
}

impl LineMap {
    /// Records every value of `yaml`; empty when the text does not parse.
    pub(crate) fn of(yaml: &str) -> LineMap {
        let mut map = LineMap::default();
        if let Some(root) = tree(yaml) {
            map.walk("", &root);
        }
        map
    }

    /// Line and column of `path`, or of its closest enclosing key that has one (a
    /// missing key is reported at the mapping it is missing from).
    pub(crate) fn position(&self, path: &str) -> Option<(u64, u64)> {
        let mut key = path;
        loop {
            if let Some(at) = self.0.get(key) {
                return Some(*at);
            }
            key = &key[..key.rfind(['.', '['])?];
        }
    }

    fn walk(&mut self, path: &str, node: &Spanned<Node>) {
        let line = node.referenced.line();
        if !path.is_empty() && line > 0 {
            // A repeated key keeps its first position (the one serde reads).
            self.0
                .entry(path.to_owned())
                .or_insert((line, node.referenced.column()));
        }
        match &node.value {
            Node::Scalar => {}
            Node::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.walk(&format!("{path}[{i}]"), item);
                }
            }
            Node::Map(entries) => {
                for (key, value) in entries {
                    let key = &key.value;
                    let child = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    self.walk(&child, value);
                }
            }
        }
    }
}

/// The shape of a YAML document, values dropped; keys keep their text and position.
pub(crate) enum Node {
    Scalar,
    Seq(Vec<Spanned<Node>>),
    Map(Vec<(Spanned<String>, Spanned<Node>)>),
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_str<E>(self, _: &str) -> Result<Node, E> {
        Ok(Node::Scalar)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Node, E> {
        Ok(Node::Scalar)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Node, E> {
        Ok(Node::Scalar)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Node, E> {
        Ok(Node::Scalar)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Node, E> {
        Ok(Node::Scalar)
    }

    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Scalar)
    }

    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Scalar)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Node>>()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry::<Spanned<String>, Spanned<Node>>()? {
            entries.push(entry);
        }
        Ok(Node::Map(entries))
    }
}
