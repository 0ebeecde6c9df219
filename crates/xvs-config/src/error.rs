//! Configuration errors. Layer: config (control side).
//!
//! Invariant: every error about the file's *content* (syntax, types, unknown keys,
//! values, cross references) carries the file name, a 1-based line and column and a
//! message; all but syntax errors also carry the dotted path of the offending field
//! (`services[0].real_servers[1].weight`). Only a failure to read the file has no
//! position.

use std::fmt;

/// Why a configuration was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Io {
        /// File name as given.
        file: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Not well-formed YAML (or a YAML feature the schema does not allow: tags,
    /// several documents, duplicate keys).
    #[error("{}: {message}", Location { file, line: *line, column: *column })]
    Syntax {
        /// File name.
        file: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// Well-formed YAML that does not fit the schema: wrong type, unknown or
    /// missing key, impossible value, broken cross reference.
    #[error("{}: {path}: {message}", Location { file, line: *line, column: *column })]
    Invalid {
        /// File name.
        file: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// Dotted path of the field (`services[0].real_servers[1].weight`).
        path: String,
        /// What is wrong.
        message: String,
    },
}

struct Location<'a> {
    file: &'a str,
    line: usize,
    column: usize,
}

impl fmt::Display for Location<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

impl ConfigError {
    /// `(line, column)`, 1-based, of a content error.
    pub fn location(&self) -> Option<(usize, usize)> {
        match self {
            ConfigError::Io { .. } => None,
            ConfigError::Syntax { line, column, .. }
            | ConfigError::Invalid { line, column, .. } => Some((*line, *column)),
        }
    }

    /// The field path of a schema error.
    pub fn path(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { path, .. } => Some(path),
            _ => None,
        }
    }

    /// The message without file, position and path.
    pub fn message(&self) -> String {
        match self {
            ConfigError::Io { source, .. } => source.to_string(),
            ConfigError::Syntax { message, .. } | ConfigError::Invalid { message, .. } => {
                message.clone()
            }
        }
    }
}

/// Why ids could not be assigned (see [`crate::IdAllocator`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// More real servers than the core's counters cover.
    #[error(
        "real server ids exhausted: at most {max} real servers (including removed ones still tracked)"
    )]
    Exhausted {
        /// The allocator's bound (`TableSizes::max_dests`).
        max: usize,
    },
}
