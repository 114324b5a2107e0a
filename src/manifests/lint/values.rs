//! The values model: a Helm values file read with the line of every key, flattened to dotted
//! paths (`hubble.relay.enabled`, list items as `a[0].b`), each value reduced to what the rules
//! look at.
//!
//! The file is read by serde-saphyr into a small tree whose keys and items are `Spanned` (the
//! source location of each node), so the rules never see YAML types and every finding has a line.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{MessageFormatter, Spanned};

use super::LintError;

/// A value as the linter needs it.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Val {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(usize),
    Map(usize),
}

impl Val {
    /// Go template truthiness (Helm `if`), lenient about quoted booleans.
    pub(super) fn truthy(&self) -> bool {
        match self {
            Val::Null => false,
            Val::Bool(b) => *b,
            Val::Int(i) => *i != 0,
            Val::Float(f) => *f != 0.0,
            Val::Str(s) => !(s.is_empty() || s == "false"),
            Val::Seq(n) | Val::Map(n) => *n > 0,
        }
    }

    /// The value as Helm would print it in a message.
    pub(super) fn show(&self) -> String {
        match self {
            Val::Null => "null".into(),
            Val::Bool(b) => b.to_string(),
            Val::Int(i) => i.to_string(),
            Val::Float(f) => f.to_string(),
            Val::Str(s) => s.clone(),
            Val::Seq(_) => "[…]".into(),
            Val::Map(_) => "{…}".into(),
        }
    }

    pub(super) fn is_empty_str(&self) -> bool {
        matches!(self, Val::Null) || matches!(self, Val::Str(s) if s.is_empty())
    }
}

#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub(super) line: usize,
    pub(super) val: Val,
}

/// Every key of the document by dotted path (`a.b`, list items as `a[0].b`).
#[derive(Debug, Default)]
pub(super) struct Values {
    entries: BTreeMap<String, Entry>,
    /// Top-level keys in document order.
    pub(super) top: Vec<String>,
}

impl Values {
    pub(super) fn parse(text: &str) -> Result<Values, LintError> {
        let root: Spanned<Node> = serde_saphyr::from_str_with_options(text, options()).map_err(syntax_error)?;
        let mut v = Values::default();
        match &root.value {
            Node::Map(m) => {
                for (k, val) in m {
                    let key = k.value.key_string();
                    v.top.push(key.clone());
                    v.walk(&key, line_of(k), &val.value);
                }
                Ok(v)
            }
            Node::Scalar(Val::Null) => Ok(v),
            _ => Err(LintError::Syntax {
                line: line_of(&root),
                message: "values must be a mapping of keys (e.g. `cluster:`), not a list or a scalar".into(),
            }),
        }
    }

    fn walk(&mut self, path: &str, line: usize, node: &Node) {
        let val = match node {
            Node::Map(m) => {
                for (k, child) in m {
                    self.walk(&format!("{path}.{}", k.value.key_string()), line_of(k), &child.value);
                }
                Val::Map(m.len())
            }
            Node::Seq(s) => {
                for (i, child) in s.iter().enumerate() {
                    self.walk(&format!("{path}[{i}]"), line_of(child), &child.value);
                }
                Val::Seq(s.len())
            }
            Node::Scalar(v) => v.clone(),
        };
        self.entries.insert(path.to_string(), Entry { line, val });
    }

    pub(super) fn get(&self, path: &str) -> Option<&Entry> {
        self.entries.get(path)
    }

    pub(super) fn val(&self, path: &str) -> Option<&Val> {
        self.get(path).map(|e| &e.val)
    }

    /// Truthiness with the chart default when the key is absent.
    pub(super) fn flag(&self, path: &str, default: bool) -> bool {
        self.val(path).map_or(default, Val::truthy)
    }

    pub(super) fn str(&self, path: &str) -> Option<String> {
        self.val(path).map(Val::show)
    }

    /// Line of the key, or of its nearest existing ancestor.
    pub(super) fn line(&self, path: &str) -> Option<usize> {
        let mut p = path;
        loop {
            if let Some(e) = self.get(p) {
                return Some(e.line);
            }
            p = p.rsplit_once('.')?.0;
        }
    }

    pub(super) fn has(&self, path: &str) -> bool {
        self.entries.contains_key(path)
    }
}

/// How a values file is read: YAML 1.2 core scalars (only `true`/`false` are booleans; `0644`
/// and `1_000` stay strings rather than becoming numbers), duplicate keys and several documents
/// are errors, `.inf`/`.nan` are floats, errors without the source snippet (the linter names the
/// file and line itself).
pub(crate) fn options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        strict_booleans: true,
        leading_zero_numbers_as_strings: true,
        underscored_numbers_as_strings: true,
        non_finite_float_policy: serde_saphyr::NonFiniteFloatPolicy::PassThrough,
        with_snippet: false,
    }
}

/// 1-based line of a node (never 0, which serde-saphyr uses for "unknown").
fn line_of<T>(node: &Spanned<T>) -> usize {
    usize::try_from(node.referenced.line()).unwrap_or(usize::MAX).max(1)
}

fn syntax_error(e: serde_saphyr::Error) -> LintError {
    let e = e.without_snippet();
    let line = e.location().map_or(1, |l| usize::try_from(l.line()).unwrap_or(usize::MAX).max(1));
    let message = match e {
        serde_saphyr::Error::MultipleDocuments { .. } => "a values file holds one YAML document; found several".into(),
        // The user-facing wording (no hints to the programmer); control characters from the
        // input (a key in a duplicate-key message) are escaped before they reach a terminal.
        _ => serde_saphyr::UserMessageFormatter
            .format_message(e)
            .chars()
            .map(|c| if c.is_control() { c.escape_debug().to_string() } else { c.to_string() })
            .collect(),
    };
    LintError::Syntax { line, message }
}

/// A YAML node with the location of every key and item.
#[derive(Debug)]
enum Node {
    Scalar(Val),
    Seq(Vec<Spanned<Node>>),
    Map(Vec<(Spanned<Node>, Spanned<Node>)>),
}

impl Node {
    /// A key as it appears in a dotted path; a list or mapping as key is written `?`.
    fn key_string(&self) -> String {
        match self {
            Node::Scalar(v) => v.show(),
            Node::Seq(_) | Node::Map(_) => "?".into(),
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

/// Builds a `Node` from whatever the document holds (tags are dropped: `!!str 1` is the string
/// "1", an unknown `!tag` keeps its value).
struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a YAML value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Scalar(Val::Bool(v)))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Scalar(Val::Int(v)))
    }

    /// Integers beyond i64 become floats, as in Helm (JSON numbers are float64).
    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Scalar(i64::try_from(v).map_or(Val::Float(v as f64), Val::Int)))
    }

    fn visit_i128<E>(self, v: i128) -> Result<Node, E> {
        Ok(Node::Scalar(i64::try_from(v).map_or(Val::Float(v as f64), Val::Int)))
    }

    fn visit_u128<E>(self, v: u128) -> Result<Node, E> {
        Ok(Node::Scalar(i64::try_from(v).map_or(Val::Float(v as f64), Val::Int)))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Scalar(Val::Float(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Scalar(Val::Str(v.to_string())))
    }

    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::Scalar(Val::Str(v)))
    }

    /// `!!binary` values (decoded).
    fn visit_bytes<E>(self, v: &[u8]) -> Result<Node, E> {
        Ok(Node::Scalar(Val::Str(String::from_utf8_lossy(v).into_owned())))
    }

    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Scalar(Val::Null))
    }

    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Scalar(Val::Null))
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry()? {
            entries.push(entry);
        }
        Ok(Node::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(v: &Values, path: &str) -> Option<(usize, Val)> {
        v.get(path).map(|e| (e.line, e.val.clone()))
    }

    #[test]
    fn keys_items_and_lines() {
        let v = Values::parse("a:\n  - b: 1\n    c: x\n  - 3\nd: {e: [true, ~]}\n\"f.g\": 1.5\n").expect("parses");
        assert_eq!(v.top, ["a", "d", "f.g"]);
        assert_eq!(entry(&v, "a"), Some((1, Val::Seq(2))));
        assert_eq!(entry(&v, "a[0]"), Some((2, Val::Map(2))));
        assert_eq!(entry(&v, "a[0].b"), Some((2, Val::Int(1))));
        assert_eq!(entry(&v, "a[0].c"), Some((3, Val::Str("x".into()))));
        assert_eq!(entry(&v, "a[1]"), Some((4, Val::Int(3))));
        assert_eq!(entry(&v, "d.e[0]"), Some((5, Val::Bool(true))));
        assert_eq!(entry(&v, "d.e[1]"), Some((5, Val::Null)));
        assert_eq!(entry(&v, "f.g"), Some((6, Val::Float(1.5))));
        // A missing key reports its nearest ancestor's line.
        assert_eq!(v.line("a[0].c.missing"), Some(3));
        assert_eq!(v.line("nope"), None);
    }

    #[test]
    fn yaml_1_2_scalars_tags_and_aliases() {
        let text = "a: yes\nb: 0644\nc: 1_000\nd: !!str 1\ne: !custom {f: 1}\ng: &x [1]\nh: *x\ni: 0x10\n1: k\n";
        let v = Values::parse(text).expect("parses");
        assert_eq!(v.val("a"), Some(&Val::Str("yes".into())));
        assert_eq!(v.val("b"), Some(&Val::Str("0644".into())));
        assert_eq!(v.val("c"), Some(&Val::Str("1_000".into())));
        assert_eq!(v.val("d"), Some(&Val::Str("1".into())));
        assert_eq!(v.val("e.f"), Some(&Val::Int(1)));
        assert_eq!(v.val("h[0]"), Some(&Val::Int(1)));
        assert_eq!(v.val("i"), Some(&Val::Int(16)));
        assert_eq!(v.val("1"), Some(&Val::Str("k".into())));
    }

    #[test]
    fn syntax_errors_have_a_line_and_a_plain_message() {
        let Err(LintError::Syntax { line, message }) = Values::parse("a: 1\nb: [1, 2\n") else { panic!("malformed") };
        assert!((2..=3).contains(&line) && !message.contains('\n'), "{line}: {message}");
        let Err(LintError::Syntax { line, message }) = Values::parse("a: 1\n---\nb: 2\n") else { panic!("two docs") };
        assert_eq!((line, message.as_str()), (3, "a values file holds one YAML document; found several"));
        let Err(LintError::Syntax { line, message }) = Values::parse("a: 1\nb: 2\na: 3\n") else { panic!("dup") };
        assert_eq!(line, 3);
        assert!(message.contains("duplicate") && !message.contains("DuplicateKeyPolicy"), "{message}");
        let Err(LintError::Syntax { line, .. }) = Values::parse("\n\nplain text\n") else { panic!("scalar") };
        assert_eq!(line, 3);
        assert!(Values::parse("").expect("empty").top.is_empty());
        assert!(Values::parse("~\n").expect("null").top.is_empty());
    }
}
