//! Typed, position-aware access to the YAML node tree. Layer: config parsing.
//!
//! Invariants: every accessor either returns a value or a [`ConfigError::Invalid`]
//! pointing at the node it looked at (the key for unknown keys, the mapping for a
//! missing key, the value otherwise) with the node's dotted path; [`Val::map`]
//! rejects every key outside the mapping's allowed list (`deny_unknown_fields`). Scalars are typed as the YAML 1.2 core schema does,
//! strictly: a quoted `"80"` is a string, not an integer.

use std::net::IpAddr;

use crate::error::ConfigError;
use crate::yaml::{Kind, Node, Pos};

pub(crate) type R<T> = Result<T, ConfigError>;

/// The file being decoded.
#[derive(Debug)]
pub(crate) struct Ctx<'a> {
    pub file: &'a str,
}

impl Ctx<'_> {
    pub fn err(&self, pos: Pos, path: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_owned(),
            line: pos.line,
            column: pos.col,
            path: if path.is_empty() {
                "(top level)".to_owned()
            } else {
                path.to_owned()
            },
            message: message.into(),
        }
    }
}

/// A node with its path.
#[derive(Clone, Debug)]
pub(crate) struct Val<'a> {
    pub ctx: &'a Ctx<'a>,
    pub node: &'a Node,
    pub path: String,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

impl<'a> Val<'a> {
    pub fn root(ctx: &'a Ctx<'a>, node: &'a Node) -> Self {
        Val {
            ctx,
            node,
            path: String::new(),
        }
    }

    pub fn pos(&self) -> Pos {
        self.node.pos
    }

    /// An error about this value.
    pub fn err(&self, message: impl Into<String>) -> ConfigError {
        self.ctx.err(self.node.pos, &self.path, message)
    }

    fn expected(&self, what: &str) -> ConfigError {
        self.err(format!("expected {what}, found {}", self.node.describe()))
    }

    /// A non-null scalar's text (any scalar: plain or quoted).
    pub fn str(&self) -> R<&'a str> {
        match &self.node.kind {
            Kind::Scalar { text, .. } if !self.node.is_null() => Ok(text),
            _ => Err(self.expected("a string")),
        }
    }

    /// A non-empty string.
    pub fn name(&self) -> R<&'a str> {
        let s = self.str()?;
        if s.trim().is_empty() {
            return Err(self.err("must not be empty"));
        }
        Ok(s)
    }

    /// A plain integer scalar (decimal, `0x` hex or `0o` octal) in `min..=max`.
    pub fn uint(&self, min: u64, max: u64) -> R<u64> {
        let v = match &self.node.kind {
            Kind::Scalar { text, plain: true } => parse_uint(text),
            _ => None,
        };
        let Some(v) = v else {
            return Err(self.expected("an integer"));
        };
        if v < min || v > max {
            return Err(self.err(format!("{v} is out of range {min}..={max}")));
        }
        Ok(v)
    }

    /// A plain `true` / `false`.
    pub fn bool(&self) -> R<bool> {
        match &self.node.kind {
            Kind::Scalar { text, plain: true } => match text.as_str() {
                "true" | "True" | "TRUE" => Ok(true),
                "false" | "False" | "FALSE" => Ok(false),
                _ => Err(self.expected("true or false")),
            },
            _ => Err(self.expected("true or false")),
        }
    }

    /// An IPv4 or IPv6 address.
    pub fn ip(&self) -> R<IpAddr> {
        let s = self.str().map_err(|_| self.expected("an IP address"))?;
        s.parse()
            .map_err(|_| self.err(format!("`{s}` is not an IP address")))
    }

    /// One of the named values.
    pub fn one_of<T: Copy>(&self, choices: &[(&str, T)]) -> R<T> {
        let names = choices.iter().map(|c| c.0).collect::<Vec<_>>().join(", ");
        let s = self
            .str()
            .map_err(|_| self.expected(&format!("one of: {names}")))?;
        choices
            .iter()
            .find(|c| c.0 == s)
            .map(|c| c.1)
            .ok_or_else(|| self.err(format!("unknown value `{s}` (expected one of: {names})")))
    }

    /// The items of a list.
    pub fn seq(&self) -> R<Vec<Val<'a>>> {
        match &self.node.kind {
            Kind::Seq(items) => Ok(items
                .iter()
                .enumerate()
                .map(|(i, node)| Val {
                    ctx: self.ctx,
                    node,
                    path: format!("{}[{i}]", self.path),
                })
                .collect()),
            _ => Err(self.expected("a list")),
        }
    }

    /// Whether this is a mapping.
    pub fn is_map(&self) -> bool {
        matches!(self.node.kind, Kind::Map(_))
    }

    /// A mapping whose keys must all be in `allowed` (checked at once, so a
    /// misspelt key is reported as unknown rather than as a missing one).
    pub fn map(&self, allowed: &'static [&'static str]) -> R<MapReader<'a>> {
        let Kind::Map(entries) = &self.node.kind else {
            return Err(self.expected("a mapping"));
        };
        for (k, _) in entries {
            let name = match &k.kind {
                Kind::Scalar { text, .. } => text.as_str(),
                _ => "?",
            };
            if !allowed.contains(&name) {
                return Err(self.ctx.err(
                    k.pos,
                    &join(&self.path, name),
                    format!(
                        "unknown key `{name}` (expected one of: {})",
                        allowed.join(", ")
                    ),
                ));
            }
        }
        Ok(MapReader {
            val: self.clone(),
            entries,
            allowed,
        })
    }
}

fn parse_uint(text: &str) -> Option<u64> {
    let t = text.strip_prefix('+').unwrap_or(text);
    if let Some(h) = t.strip_prefix("0x") {
        u64::from_str_radix(h, 16).ok()
    } else if let Some(o) = t.strip_prefix("0o") {
        u64::from_str_radix(o, 8).ok()
    } else if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        t.parse().ok()
    } else {
        None
    }
}

/// Reads a mapping's keys (all known: see [`Val::map`]).
#[derive(Debug)]
pub(crate) struct MapReader<'a> {
    val: Val<'a>,
    entries: &'a [(Node, Node)],
    allowed: &'static [&'static str],
}

impl<'a> MapReader<'a> {
    /// The mapping itself (for errors about the whole mapping).
    pub fn val(&self) -> &Val<'a> {
        &self.val
    }

    /// The value of `key` with its key node; `None` when absent or null.
    pub fn opt_entry(&self, key: &'static str) -> Option<(Val<'a>, Val<'a>)> {
        debug_assert!(
            self.allowed.contains(&key),
            "key `{key}` not in the allowed list"
        );
        let i = self
            .entries
            .iter()
            .position(|(k, _)| matches!(&k.kind, Kind::Scalar { text, .. } if text == key))?;
        let (k, v) = &self.entries[i];
        if v.is_null() {
            return None;
        }
        let path = join(&self.val.path, key);
        Some((
            Val {
                ctx: self.val.ctx,
                node: k,
                path: path.clone(),
            },
            Val {
                ctx: self.val.ctx,
                node: v,
                path,
            },
        ))
    }

    /// The value of `key`; `None` when absent or null.
    pub fn opt(&self, key: &'static str) -> Option<Val<'a>> {
        self.opt_entry(key).map(|(_, v)| v)
    }

    /// The value of `key`, which must be present.
    pub fn req(&self, key: &'static str) -> R<Val<'a>> {
        self.opt(key)
            .ok_or_else(|| self.val.err(format!("missing required key `{key}`")))
    }
}
