//! A YAML document as a tree of located nodes, and a serde `Deserializer` over it.
//!
//! serde stops at the first error, but an operator fixing a plan at 3 AM wants every problem at
//! once. So the document is first read into this tree (every node remembers its line and
//! column), and then each section and each step is deserialized from its own subtree: a
//! mistake in `failover[2]` does not hide one in `failback[0]`. Errors raised anywhere below a
//! node carry that node's location and key path.

use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};
use serde::{Deserialize, Deserializer};
use serde_saphyr::Spanned;

/// One YAML node with where it starts in the file (1-based line and column).
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub kind: NodeKind,
    pub line: u64,
    pub column: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    /// `raw` holds the text as written when `${env:…}` substitution changed it, so the plan can
    /// be displayed and logged without the substituted (secret) value.
    Str {
        value: String,
        raw: Option<String>,
    },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    pub fn describe(&self) -> String {
        match &self.kind {
            NodeKind::Null => "null".to_owned(),
            NodeKind::Bool(b) => format!("boolean `{b}`"),
            NodeKind::Int(i) => format!("integer `{i}`"),
            NodeKind::UInt(u) => format!("integer `{u}`"),
            NodeKind::Float(f) => format!("number `{f}`"),
            NodeKind::Str { raw: Some(raw), .. } => format!("string `{raw}`"),
            NodeKind::Str { value, .. } => format!("string `{value}`"),
            NodeKind::Seq(_) => "a list".to_owned(),
            NodeKind::Map(_) => "a map".to_owned(),
        }
    }

    /// The key as text when this node is used as a map key.
    pub fn key_text(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Str { value, .. } => Some(value),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.kind {
            NodeKind::Map(entries) => Some(entries),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.kind {
            NodeKind::Seq(items) => Some(items),
            _ => None,
        }
    }

    /// Visit every string scalar (values and keys alike), mutably.
    pub fn for_each_str_mut(&mut self, f: &mut dyn FnMut(&mut Node)) {
        match &mut self.kind {
            NodeKind::Str { .. } => f(self),
            NodeKind::Seq(items) => items.iter_mut().for_each(|n| n.for_each_str_mut(f)),
            NodeKind::Map(entries) => {
                for (_, v) in entries.iter_mut() {
                    v.for_each_str_mut(f);
                }
            }
            _ => {}
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<Kind>::deserialize(deserializer)?;
        Ok(Node {
            kind: spanned.value.0,
            line: spanned.referenced.line(),
            column: spanned.referenced.column(),
        })
    }
}

/// The kind alone, so `Spanned` can wrap it and give the node its location.
struct Kind(NodeKind);

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(KindVisitor)
    }
}

struct KindVisitor;

impl<'de> Visitor<'de> for KindVisitor {
    type Value = Kind;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Kind, E> {
        Ok(Kind(NodeKind::Null))
    }
    fn visit_none<E: de::Error>(self) -> Result<Kind, E> {
        Ok(Kind(NodeKind::Null))
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Kind, D::Error> {
        d.deserialize_any(KindVisitor)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Kind, E> {
        Ok(Kind(NodeKind::Bool(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Kind, E> {
        Ok(Kind(NodeKind::Int(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Kind, E> {
        Ok(Kind(NodeKind::UInt(v)))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Kind, E> {
        i64::try_from(v)
            .map(|v| Kind(NodeKind::Int(v)))
            .map_err(|_| E::custom(format!("integer {v} is out of range")))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Kind, E> {
        u64::try_from(v)
            .map(|v| Kind(NodeKind::UInt(v)))
            .map_err(|_| E::custom(format!("integer {v} is out of range")))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Kind, E> {
        Ok(Kind(NodeKind::Float(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Kind, E> {
        Ok(Kind(NodeKind::Str {
            value: v.to_owned(),
            raw: None,
        }))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Kind, E> {
        Ok(Kind(NodeKind::Str {
            value: v,
            raw: None,
        }))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Kind, E> {
        Ok(Kind(NodeKind::Str {
            value: String::from_utf8_lossy(v).into_owned(),
            raw: None,
        }))
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Kind, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Kind(NodeKind::Seq(items)))
    }
    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Kind, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Node>()? {
            let value = map.next_value::<Node>()?;
            entries.push((key, value));
        }
        Ok(Kind(NodeKind::Map(entries)))
    }
}

/// A deserialization error that knows where in the plan it happened.
#[derive(Debug, Clone, PartialEq)]
pub struct DeError {
    pub message: String,
    pub line: u64,
    pub column: u64,
    pub path: String,
    located: bool,
}

impl DeError {
    pub fn at(node: &Node, path: &str, message: impl Into<String>) -> Self {
        DeError {
            message: message.into(),
            line: node.line,
            column: node.column,
            path: path.to_owned(),
            located: true,
        }
    }

    fn locate(mut self, node: &Node, path: &str) -> Self {
        if !self.located {
            self.line = node.line;
            self.column = node.column;
            self.path = path.to_owned();
            self.located = true;
        }
        self
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError {
            message: msg.to_string(),
            line: 0,
            column: 0,
            path: String::new(),
            located: false,
        }
    }

    fn invalid_type(unexp: de::Unexpected, exp: &dyn de::Expected) -> Self {
        Self::custom(format_args!("expected {exp}, found {}", unexpected(unexp)))
    }

    fn invalid_value(unexp: de::Unexpected, exp: &dyn de::Expected) -> Self {
        Self::custom(format_args!("expected {exp}, found {}", unexpected(unexp)))
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        let mut message = format!("unknown key `{field}`");
        if let Some(close) = closest(field, expected) {
            message.push_str(&format!("; did you mean `{close}`?"));
        }
        message.push_str(&format!(" (expected one of: {})", expected.join(", ")));
        Self::custom(message)
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        let mut message = format!("unknown value `{variant}`");
        if let Some(close) = closest(variant, expected) {
            message.push_str(&format!("; did you mean `{close}`?"));
        }
        message.push_str(&format!(" (expected one of: {})", expected.join(", ")));
        Self::custom(message)
    }

    fn missing_field(field: &'static str) -> Self {
        Self::custom(format_args!("missing required key `{field}`"))
    }

    fn duplicate_field(field: &'static str) -> Self {
        Self::custom(format_args!("key `{field}` is given twice"))
    }
}

fn unexpected(unexp: de::Unexpected) -> String {
    match unexp {
        de::Unexpected::Str(s) => format!("string `{s}`"),
        de::Unexpected::Unit => "null".to_owned(),
        de::Unexpected::Map => "a map".to_owned(),
        de::Unexpected::Seq => "a list".to_owned(),
        other => other.to_string(),
    }
}

/// The closest expected name, for "did you mean" hints on typos like `timout`.
pub fn closest<'a>(given: &str, expected: &[&'a str]) -> Option<&'a str> {
    expected
        .iter()
        .map(|e| (levenshtein(given, e), *e))
        .filter(|(d, e)| *d <= 2.max(e.len() / 4) && *d > 0)
        .min_by_key(|(d, _)| *d)
        .map(|(_, e)| e)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// The struct name that asks [`NodeDe`] for a value with its location (see [`Located`]).
pub const LOCATED_MARKER: &str = "$kdr::Located";
const LOCATED_FIELDS: &[&str] = &["value", "line", "column", "raw"];

/// A value from the plan with where it was written, and its text as written when `${env:…}`
/// substitution changed it (such a value is a secret: show `raw`, never `value`).
#[derive(Debug, Clone, PartialEq)]
pub struct Located<T> {
    pub value: T,
    pub line: u64,
    pub column: u64,
    pub raw: Option<String>,
}

impl<T> Located<T> {
    pub fn is_secret(&self) -> bool {
        self.raw.is_some()
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Located<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LocatedVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for LocatedVisitor<T> {
            type Value = Located<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a located plan value")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Located<T>, A::Error> {
                let mut value = None;
                let mut line = 0;
                let mut column = 0;
                let mut raw = None;
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "value" => value = Some(map.next_value::<T>()?),
                        "line" => line = map.next_value()?,
                        "column" => column = map.next_value()?,
                        "raw" => raw = Some(map.next_value::<String>()?),
                        _ => {
                            map.next_value::<de::IgnoredAny>()?;
                        }
                    }
                }
                let value =
                    value.ok_or_else(|| de::Error::custom("located value without value"))?;
                Ok(Located {
                    value,
                    line,
                    column,
                    raw,
                })
            }
        }
        deserializer.deserialize_struct(
            LOCATED_MARKER,
            LOCATED_FIELDS,
            LocatedVisitor(std::marker::PhantomData),
        )
    }
}

/// Deserializes one subtree, tracking the key path for error messages.
pub struct NodeDe<'a> {
    node: &'a Node,
    path: String,
}

impl<'a> NodeDe<'a> {
    pub fn new(node: &'a Node, path: impl Into<String>) -> Self {
        NodeDe {
            node,
            path: path.into(),
        }
    }

    fn err(&self, e: DeError) -> DeError {
        e.locate(self.node, &self.path)
    }

    fn invalid<V>(&self, exp: &dyn de::Expected) -> Result<V, DeError> {
        Err(DeError::at(
            self.node,
            &self.path,
            format!("expected {exp}, found {}", self.node.describe()),
        ))
    }
}

/// `a.b`, or `a."security.protocol"` when the key itself has a dot.
pub fn join_key(path: &str, key: &str) -> String {
    let key = if key.contains(['.', '[', ']', ' ']) || key.is_empty() {
        format!("\"{key}\"")
    } else {
        key.to_owned()
    };
    if path.is_empty() {
        key
    } else {
        format!("{path}.{key}")
    }
}

pub fn join_index(path: &str, index: usize) -> String {
    format!("{path}[{index}]")
}

/// Deserialize `T` from `node`, with errors pointing into the plan.
pub fn from_node<'a, T: Deserialize<'a>>(node: &'a Node, path: &str) -> Result<T, DeError> {
    let de = NodeDe::new(node, path);
    T::deserialize(de).map_err(|e| e.locate(node, path))
}

macro_rules! forward_scalar {
    ($($method:ident)*) => {
        $(fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            self.deserialize_any(visitor)
        })*
    };
}

impl<'de> Deserializer<'de> for NodeDe<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let result = match &self.node.kind {
            NodeKind::Null => visitor.visit_unit(),
            NodeKind::Bool(b) => visitor.visit_bool(*b),
            NodeKind::Int(i) => visitor.visit_i64(*i),
            NodeKind::UInt(u) => visitor.visit_u64(*u),
            NodeKind::Float(f) => visitor.visit_f64(*f),
            NodeKind::Str { value, .. } => visitor.visit_str(value),
            NodeKind::Seq(items) => visitor.visit_seq(SeqDe {
                items: items.iter(),
                index: 0,
                path: &self.path,
            }),
            NodeKind::Map(entries) => visitor.visit_map(MapDe {
                entries: entries.iter(),
                value: None,
                path: &self.path,
            }),
        };
        result.map_err(|e| self.err(e))
    }

    forward_scalar! {
        deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_i128
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128
        deserialize_f32 deserialize_f64 deserialize_char deserialize_bytes deserialize_byte_buf
        deserialize_identifier deserialize_ignored_any
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.kind {
            NodeKind::Bool(b) => visitor.visit_bool(*b).map_err(|e| self.err(e)),
            _ => self.invalid(&"`true` or `false`"),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_string(visitor)
    }

    /// A scalar asked for as text is text: `name: 2024` is the name "2024". Lists and maps are not.
    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let text = match &self.node.kind {
            NodeKind::Str { value, .. } => value.clone(),
            NodeKind::Int(i) => i.to_string(),
            NodeKind::UInt(u) => u.to_string(),
            NodeKind::Float(f) => f.to_string(),
            NodeKind::Bool(b) => b.to_string(),
            _ => return self.invalid(&"a string"),
        };
        visitor.visit_string(text).map_err(|e| self.err(e))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.kind {
            NodeKind::Null => visitor.visit_none().map_err(|e| self.err(e)),
            _ => {
                let (node, path) = (self.node, self.path.clone());
                visitor
                    .visit_some(NodeDe {
                        node,
                        path: path.clone(),
                    })
                    .map_err(|e| e.locate(node, &path))
            }
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.kind {
            NodeKind::Null => visitor.visit_unit().map_err(|e| self.err(e)),
            _ => self.invalid(&"nothing (null)"),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let (node, path) = (self.node, self.path.clone());
        visitor
            .visit_newtype_struct(NodeDe {
                node,
                path: path.clone(),
            })
            .map_err(|e| e.locate(node, &path))
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.kind {
            NodeKind::Seq(_) => self.deserialize_any(visitor),
            _ => self.invalid(&"a list"),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.kind {
            NodeKind::Map(_) => self.deserialize_any(visitor),
            // `client:` with nothing after it is an empty map, not an error.
            NodeKind::Null => visitor
                .visit_map(MapDe {
                    entries: [].iter(),
                    value: None,
                    path: &self.path,
                })
                .map_err(|e| self.err(e)),
            _ => self.invalid(&"a map"),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        if name == LOCATED_MARKER {
            return visitor
                .visit_map(LocatedDe {
                    node: self.node,
                    path: &self.path,
                    next: 0,
                })
                .map_err(|e| self.err(e));
        }
        match &self.node.kind {
            NodeKind::Map(_) | NodeKind::Null => self.deserialize_map(visitor),
            _ => self.invalid(&"a map of options"),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match &self.node.kind {
            NodeKind::Str { .. } => visitor
                .visit_enum(EnumDe {
                    tag: self.node,
                    content: None,
                    path: &self.path,
                })
                .map_err(|e| self.err(e)),
            NodeKind::Map(entries) if entries.len() == 1 => {
                let (tag, content) = &entries[0];
                visitor
                    .visit_enum(EnumDe {
                        tag,
                        content: Some(content),
                        path: &self.path,
                    })
                    .map_err(|e| self.err(e))
            }
            NodeKind::Map(entries) => Err(DeError::at(
                self.node,
                &self.path,
                format!(
                    "expected exactly one key naming the kind, found {} keys",
                    entries.len()
                ),
            )),
            _ => self.invalid(&"a name or a one-key map"),
        }
    }
}

struct SeqDe<'a, 'p> {
    items: std::slice::Iter<'a, Node>,
    index: usize,
    path: &'p str,
}

impl<'de> de::SeqAccess<'de> for SeqDe<'de, '_> {
    type Error = DeError;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        let Some(node) = self.items.next() else {
            return Ok(None);
        };
        let path = join_index(self.path, self.index);
        self.index += 1;
        seed.deserialize(NodeDe {
            node,
            path: path.clone(),
        })
        .map(Some)
        .map_err(|e| e.locate(node, &path))
    }
}

struct MapDe<'a, 'p> {
    entries: std::slice::Iter<'a, (Node, Node)>,
    value: Option<(&'a Node, String)>,
    path: &'p str,
}

impl<'de> de::MapAccess<'de> for MapDe<'de, '_> {
    type Error = DeError;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        let key_text = match &key.kind {
            NodeKind::Str { value, .. } => value.clone(),
            _ => {
                return Err(DeError::at(
                    key,
                    self.path,
                    format!("expected a text key, found {}", key.describe()),
                ));
            }
        };
        let path = join_key(self.path, &key_text);
        self.value = Some((value, path.clone()));
        seed.deserialize(key_text.as_str().into_deserializer())
            .map(Some)
            .map_err(|e: DeError| e.locate(key, &path))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let Some((node, path)) = self.value.take() else {
            return Err(de::Error::custom("value requested before its key"));
        };
        seed.deserialize(NodeDe {
            node,
            path: path.clone(),
        })
        .map_err(|e| e.locate(node, &path))
    }
}

struct EnumDe<'a, 'p> {
    tag: &'a Node,
    content: Option<&'a Node>,
    path: &'p str,
}

impl<'de, 'p> de::EnumAccess<'de> for EnumDe<'de, 'p> {
    type Error = DeError;
    type Variant = VariantDe<'de>;
    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, VariantDe<'de>), DeError> {
        let Some(name) = self.tag.key_text() else {
            return Err(DeError::at(
                self.tag,
                self.path,
                format!("expected a kind name, found {}", self.tag.describe()),
            ));
        };
        let path = join_key(self.path, name);
        let value = seed
            .deserialize(name.into_deserializer())
            .map_err(|e: DeError| e.locate(self.tag, self.path))?;
        Ok((
            value,
            VariantDe {
                content: self.content,
                tag: self.tag,
                path,
            },
        ))
    }
}

struct VariantDe<'a> {
    content: Option<&'a Node>,
    tag: &'a Node,
    path: String,
}

static NULL_NODE: Node = Node {
    kind: NodeKind::Null,
    line: 0,
    column: 0,
};

impl<'de> de::VariantAccess<'de> for VariantDe<'de> {
    type Error = DeError;
    fn unit_variant(self) -> Result<(), DeError> {
        match self.content {
            None
            | Some(Node {
                kind: NodeKind::Null,
                ..
            }) => Ok(()),
            Some(node) => Err(DeError::at(
                node,
                &self.path,
                format!("expected nothing after the name, found {}", node.describe()),
            )),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, DeError> {
        // `- declare` alone and `- declare:` mean "with default options".
        let node = match self.content {
            Some(node) => node,
            None => &NULL_NODE,
        };
        let anchor = if node.line == 0 { self.tag } else { node };
        seed.deserialize(NodeDe {
            node,
            path: self.path.clone(),
        })
        .map_err(|e| e.locate(anchor, &self.path))
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, DeError> {
        let node = self.content.unwrap_or(&NULL_NODE);
        de::Deserializer::deserialize_seq(NodeDe::new(node, self.path), visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let node = self.content.unwrap_or(&NULL_NODE);
        de::Deserializer::deserialize_map(NodeDe::new(node, self.path), visitor)
    }
}

/// Serves the synthetic `{value, line, column, raw}` map that [`Located`] asks for.
struct LocatedDe<'a, 'p> {
    node: &'a Node,
    path: &'p str,
    next: usize,
}

impl<'de> de::MapAccess<'de> for LocatedDe<'de, '_> {
    type Error = DeError;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let has_raw = matches!(&self.node.kind, NodeKind::Str { raw: Some(_), .. });
        let Some(field) = LOCATED_FIELDS
            .get(self.next)
            .filter(|f| has_raw || **f != "raw")
        else {
            return Ok(None);
        };
        seed.deserialize((*field).into_deserializer()).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let field = self.next;
        self.next += 1;
        match field {
            0 => seed
                .deserialize(NodeDe {
                    node: self.node,
                    path: self.path.to_owned(),
                })
                .map_err(|e| e.locate(self.node, self.path)),
            1 => seed.deserialize(self.node.line.into_deserializer()),
            2 => seed.deserialize(self.node.column.into_deserializer()),
            _ => {
                let raw = match &self.node.kind {
                    NodeKind::Str { raw, .. } => raw.clone(),
                    _ => None,
                };
                seed.deserialize(de::value::StringDeserializer::<DeError>::new(
                    raw.unwrap_or_default(),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Node {
        serde_saphyr::from_str::<Node>(text).expect("valid yaml")
    }

    #[test]
    fn nodes_remember_where_they_start() {
        let node = parse("a: 1\nb:\n  - x\n  - {c: true}\n");
        let map = node.as_map().expect("map");
        assert_eq!((map[0].0.line, map[0].0.column), (1, 1));
        assert_eq!((map[0].1.line, map[0].1.column), (1, 4));
        let seq = map[1].1.as_seq().expect("seq");
        assert_eq!((seq[0].line, seq[0].column), (3, 5));
        assert_eq!(
            seq[1].as_map().expect("map")[0].1.kind,
            NodeKind::Bool(true)
        );
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[expect(dead_code, reason = "fields are read through Debug in assertions")]
    struct Opts {
        timeout: Located<String>,
        count: Option<u32>,
    }

    #[test]
    fn unknown_key_points_at_the_key_with_a_hint() {
        let node = parse("steps:\n  - timout: 3s\n");
        let step = &node.as_map().expect("map")[0].1.as_seq().expect("seq")[0];
        let err = from_node::<Opts>(step, "steps[0]").expect_err("unknown key");
        assert_eq!((err.line, err.column), (2, 5));
        assert_eq!(err.path, "steps[0].timout");
        assert!(
            err.message
                .starts_with("unknown key `timout`; did you mean `timeout`?"),
            "{}",
            err.message
        );
    }

    #[test]
    fn wrong_type_points_at_the_value() {
        let node = parse("timeout: 3s\ncount: [1]\n");
        let err = from_node::<Opts>(&node, "").expect_err("wrong type");
        assert_eq!((err.line, err.column, err.path.as_str()), (2, 8, "count"));
        assert_eq!(err.message, "expected u32, found a list");
    }

    #[test]
    fn missing_key_points_at_the_map() {
        let node = parse("x:\n  count: 3\n");
        let inner = &node.as_map().expect("map")[0].1;
        let err = from_node::<Opts>(inner, "x").expect_err("missing");
        assert_eq!((err.line, err.column, err.path.as_str()), (2, 3, "x"));
        assert_eq!(err.message, "missing required key `timeout`");
    }

    #[test]
    fn located_values_carry_their_position() {
        let node = parse("timeout:   3s\n");
        let opts = from_node::<Opts>(&node, "").expect("valid");
        assert_eq!((opts.timeout.line, opts.timeout.column), (1, 12));
        assert_eq!(opts.timeout.value, "3s");
    }

    #[test]
    fn keys_with_dots_are_quoted_in_paths() {
        assert_eq!(
            join_key("clusters.primary.client", "sasl.password"),
            "clusters.primary.client.\"sasl.password\""
        );
        assert_eq!(join_key("", "name"), "name");
    }
}
