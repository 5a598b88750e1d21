//! The config file as a tree of typed YAML nodes that keep the line of every key.
//!
//! Deserializing straight into a struct would lose two things the operator needs in an error:
//! which line a misspelt key is on, and what type a value really had in the file. So the file
//! is read into this small tree first (with serde-saphyr's `Spanned` for positions), and the
//! config layer walks it against the list of known keys.

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;
use std::fmt;

/// One YAML value as the file wrote it.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    /// Sequences are never valid in the config; their content is not kept.
    Seq,
    Map(Vec<Entry>),
}

/// A mapping entry: the key, the 1-based line it is on, and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: String,
    pub line: usize,
    pub value: Node,
}

impl Node {
    /// What the value is, in words, for "must be X, got Y" messages.
    pub fn describe(&self) -> String {
        match self {
            Node::Null => "an empty value".into(),
            Node::Bool(b) => format!("the boolean {b}"),
            Node::Int(i) => format!("the integer {i}"),
            Node::Float(f) => format!("the number {f}"),
            Node::Str(s) => format!("the string '{}'", s.escape_default()),
            Node::Seq => "a list".into(),
            Node::Map(_) => "a mapping".into(),
        }
    }
}

/// Parse a YAML document. An empty document (or one that is only comments) is an empty
/// mapping, so the shipped fully commented file means "all defaults".
/// Errors are `(line, message)` with a one-line message.
pub fn parse(text: &str) -> Result<Node, (usize, String)> {
    let only_comments = text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#') || l.trim() == "---");
    if only_comments {
        return Ok(Node::Map(Vec::new()));
    }
    match serde_saphyr::from_str::<Spanned<Node>>(text) {
        Ok(n) => Ok(n.value),
        Err(e) => {
            let e = e.without_snippet();
            let line = e.location().map_or(0, |l| l.line() as usize);
            let msg = e.to_string().lines().next().unwrap_or_default().to_string();
            Err((line, operator_message(&msg)))
        }
    }
}

/// serde-saphyr words some errors for programmers ("set DuplicateKeyPolicy in Options") and
/// appends the position; the caller already prints `file:line`, so reword for the operator.
fn operator_message(msg: &str) -> String {
    let msg = match msg.rfind(" at line ") {
        Some(i) if msg[i..].contains(", column ") => &msg[..i],
        _ => msg,
    };
    if let Some(rest) = msg.strip_prefix("duplicate mapping key: ") {
        let key = rest
            .split(", set DuplicateKeyPolicy")
            .next()
            .unwrap_or(rest);
        return format!("duplicate key '{key}'");
    }
    if msg.starts_with("duplicate mapping key") {
        return "duplicate key".into();
    }
    if msg.starts_with("multiple YAML documents detected") {
        return "more than one YAML document ('---')".into();
    }
    msg.to_string()
}

/// A mapping key as text (YAML allows numbers or booleans as keys; they are reported as
/// unknown keys by the config layer, not as a parse failure).
struct Key(String);

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Node::deserialize(d).map(|n| {
            Key(match n {
                Node::Str(s) => s,
                Node::Int(i) => i.to_string(),
                Node::Float(f) => f.to_string(),
                Node::Bool(b) => b.to_string(),
                Node::Null => "~".into(),
                Node::Seq | Node::Map(_) => "<complex key>".into(),
            })
        })
    }
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
        f.write_str("a YAML value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Int(v.into()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Int(v.into()))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Node, E> {
        Ok(Node::Int(v))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Node, E> {
        Ok(Node::Int(i128::try_from(v).unwrap_or(i128::MAX)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Node::Seq)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<Key>>()? {
            let value: Node = map.next_value()?;
            entries.push(Entry {
                key: key.value.0,
                line: key.referenced.line() as usize,
                value,
            });
        }
        Ok(Node::Map(entries))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a panic is how a test reports a wrong result
mod tests {
    use super::*;

    fn entries(n: Node) -> Vec<Entry> {
        match n {
            Node::Map(e) => e,
            other => panic!("not a map: {other:?}"),
        }
    }

    #[test]
    fn keys_keep_their_lines_and_values_their_types() {
        let text = "# comment\nruntime: auto\n\nports:\n  base: 6000\n  strategy: sequential\ntls:\n  enabled: false\nlock_timeout: 2.5\nq: \"5\"\n";
        let top = entries(parse(text).unwrap());
        let keys: Vec<(&str, usize)> = top.iter().map(|e| (e.key.as_str(), e.line)).collect();
        assert_eq!(
            keys,
            [
                ("runtime", 2),
                ("ports", 4),
                ("tls", 7),
                ("lock_timeout", 9),
                ("q", 10)
            ]
        );
        let ports = entries(top[1].value.clone());
        assert_eq!((ports[0].key.as_str(), ports[0].line), ("base", 5));
        assert_eq!(ports[0].value, Node::Int(6000));
        assert_eq!(entries(top[2].value.clone())[0].value, Node::Bool(false));
        assert_eq!(top[3].value, Node::Float(2.5));
        assert_eq!(top[4].value, Node::Str("5".into()));
    }

    #[test]
    fn comment_only_and_empty_files_are_empty_maps() {
        assert_eq!(parse("").unwrap(), Node::Map(vec![]));
        assert_eq!(
            parse("# x\n#ports:\n#  base: 5000\n").unwrap(),
            Node::Map(vec![])
        );
    }

    #[test]
    fn syntax_errors_and_duplicates_carry_a_line() {
        let (line, msg) = parse("a: 1\nb: [1,\n").unwrap_err();
        assert!(line >= 2, "{line} {msg}");
        assert!(!msg.contains('\n'));
        let (line, msg) = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!((line, msg.as_str()), (3, "duplicate key 'a'"));
        let (line, msg) = parse("---\na: 1\n---\na: 2\n").unwrap_err();
        assert_eq!(
            (line, msg.as_str()),
            (4, "more than one YAML document ('---')")
        );
        let (_, msg) = parse("a:\n\tb: 1\n").unwrap_err();
        assert!(!msg.contains(" at line "), "{msg}");
    }
}
