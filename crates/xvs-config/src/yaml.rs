//! A minimal YAML node tree with source positions, built from `saphyr-parser`
//! events. Layer: config parsing (control side, allocates freely).
//!
//! Invariants:
//! - every node carries the 1-based line and column of its first character;
//! - mapping entries keep document order and duplicate keys are rejected here
//!   (a `HashMap`-based tree would silently keep the last one);
//! - scalars are kept as text plus "was it plain"; typing is the decoder's job, so
//!   that a wrong type can be reported with the field's path;
//! - one document per file; aliases are expanded (anchored nodes cloned); tags are
//!   rejected (the schema never needs them).

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

/// A 1-based source position.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) struct Pos {
    pub line: usize,
    pub col: usize,
}

impl Pos {
    fn of(span: &Span) -> Pos {
        Pos {
            line: span.start.line(),
            col: span.start.col() + 1,
        }
    }
}

/// A YAML node.
#[derive(Clone, Debug)]
pub(crate) struct Node {
    pub pos: Pos,
    pub kind: Kind,
}

/// What a node is.
#[derive(Clone, Debug)]
pub(crate) enum Kind {
    /// A scalar's text; `plain` = not quoted and not a block scalar.
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    /// Entries in document order (keys are scalars, checked unique).
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// A plain `null`, `~` or empty scalar.
    pub fn is_null(&self) -> bool {
        matches!(&self.kind, Kind::Scalar { text, plain: true }
            if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// What the node is, for "expected X, found Y" messages.
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::Seq(_) => "a list".into(),
            Kind::Map(_) => "a mapping".into(),
            Kind::Scalar { .. } if self.is_null() => "null".into(),
            Kind::Scalar { text, plain: true } => format!("`{text}`"),
            Kind::Scalar { text, plain: false } => format!("the string \"{text}\""),
        }
    }
}

/// A syntax error: position and message.
#[derive(Debug)]
pub(crate) struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

fn syntax(pos: Pos, message: impl Into<String>) -> SyntaxError {
    SyntaxError {
        pos,
        message: message.into(),
    }
}

/// Parse one YAML document into a node tree; `None` for an empty stream.
pub(crate) fn parse(text: &str) -> Result<Option<Node>, SyntaxError> {
    let mut b = Builder {
        stack: Vec::new(),
        anchors: HashMap::new(),
        root: None,
        docs: 0,
        nodes: 0,
    };
    for ev in Parser::new_from_str(text) {
        let (ev, span) = ev.map_err(|e| {
            syntax(
                Pos {
                    line: e.marker().line(),
                    col: e.marker().col() + 1,
                },
                e.info().to_owned(),
            )
        })?;
        b.event(ev, &span)?;
    }
    Ok(b.root)
}

enum Frame {
    Seq(Node, usize, Vec<Node>),
    Map(Node, usize, Vec<(Node, Node)>, Option<Node>),
}

struct Builder {
    stack: Vec<Frame>,
    /// Anchored nodes and their sizes in nodes.
    anchors: HashMap<usize, (Node, usize)>,
    root: Option<Node>,
    docs: usize,
    /// Nodes created so far, aliases counted at their expanded size.
    nodes: usize,
}

/// Bound on the expanded tree (guards against "billion laughs" alias bombs).
const MAX_NODES: usize = 1 << 20;

fn size(node: &Node) -> usize {
    1 + match &node.kind {
        Kind::Scalar { .. } => 0,
        Kind::Seq(items) => items.iter().map(size).sum(),
        Kind::Map(entries) => entries.iter().map(|(k, v)| size(k) + size(v)).sum(),
    }
}

impl Builder {
    fn event(&mut self, ev: Event<'_>, span: &Span) -> Result<(), SyntaxError> {
        let pos = Pos::of(span);
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(syntax(pos, "document too large (aliases expand too far)"));
        }
        let placeholder = |kind| Node { pos, kind };
        match ev {
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
            Event::DocumentStart(_) => {
                self.docs += 1;
                if self.docs > 1 {
                    return Err(syntax(pos, "only one YAML document per file is allowed"));
                }
            }
            Event::Alias(id) => {
                let (node, n) = self
                    .anchors
                    .get(&id)
                    .cloned()
                    .ok_or_else(|| syntax(pos, "alias to an unknown anchor"))?;
                self.nodes += n;
                if self.nodes > MAX_NODES {
                    return Err(syntax(pos, "document too large (aliases expand too far)"));
                }
                self.push(Node { pos, ..node }, 0)?;
            }
            Event::Scalar(text, style, anchor, tag) => {
                if tag.is_some() {
                    return Err(syntax(pos, "YAML tags are not supported"));
                }
                let node = placeholder(Kind::Scalar {
                    text: text.into_owned(),
                    plain: style == ScalarStyle::Plain,
                });
                self.push(node, anchor)?;
            }
            Event::SequenceStart(anchor, tag) => {
                if tag.is_some() {
                    return Err(syntax(pos, "YAML tags are not supported"));
                }
                self.stack
                    .push(Frame::Seq(placeholder(Kind::Seq(vec![])), anchor, vec![]));
            }
            Event::MappingStart(anchor, tag) => {
                if tag.is_some() {
                    return Err(syntax(pos, "YAML tags are not supported"));
                }
                self.stack.push(Frame::Map(
                    placeholder(Kind::Map(vec![])),
                    anchor,
                    vec![],
                    None,
                ));
            }
            Event::SequenceEnd => {
                if let Some(Frame::Seq(mut node, anchor, items)) = self.stack.pop() {
                    node.kind = Kind::Seq(items);
                    self.push(node, anchor)?;
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Map(mut node, anchor, entries, _)) = self.stack.pop() {
                    node.kind = Kind::Map(entries);
                    self.push(node, anchor)?;
                }
            }
        }
        Ok(())
    }

    /// A complete node: record its anchor and attach it to its parent.
    fn push(&mut self, node: Node, anchor: usize) -> Result<(), SyntaxError> {
        if anchor != 0 {
            let n = size(&node);
            self.anchors.insert(anchor, (node.clone(), n));
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq(_, _, items)) => items.push(node),
            Some(Frame::Map(_, _, entries, pending)) => match pending.take() {
                None => {
                    let Kind::Scalar { text, .. } = &node.kind else {
                        return Err(syntax(node.pos, "mapping keys must be scalars"));
                    };
                    if entries
                        .iter()
                        .any(|(k, _)| matches!(&k.kind, Kind::Scalar { text: t, .. } if t == text))
                    {
                        return Err(syntax(node.pos, format!("duplicate key `{text}`")));
                    }
                    *pending = Some(node);
                }
                Some(key) => entries.push((key, node)),
            },
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based() {
        let n = parse("a:\n  b: [1, 2]\n").unwrap().unwrap();
        let Kind::Map(entries) = &n.kind else {
            panic!()
        };
        assert_eq!(entries[0].0.pos, Pos { line: 1, col: 1 });
        let Kind::Map(inner) = &entries[0].1.kind else {
            panic!()
        };
        assert_eq!(inner[0].0.pos, Pos { line: 2, col: 3 });
        let Kind::Seq(items) = &inner[0].1.kind else {
            panic!()
        };
        assert_eq!(items[1].pos, Pos { line: 2, col: 10 });
    }

    #[test]
    fn duplicate_keys_are_rejected() {
        let e = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(e.pos, Pos { line: 3, col: 1 });
        assert!(e.message.contains("duplicate key `a`"));
    }

    #[test]
    fn aliases_expand() {
        let n = parse("a: &x [1]\nb: *x\n").unwrap().unwrap();
        let Kind::Map(entries) = &n.kind else {
            panic!()
        };
        assert!(matches!(&entries[1].1.kind, Kind::Seq(v) if v.len() == 1));
        assert_eq!(entries[1].1.pos.line, 2);
    }

    #[test]
    fn empty_stream_is_none() {
        assert!(parse("").unwrap().is_none());
        assert!(parse("# only a comment\n").unwrap().is_none());
    }
}
