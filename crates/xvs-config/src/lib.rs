//! # xvs-config — YAML service definitions → validated configuration
//!
//! Layer: control side, between the pure core and the daemon
//! (`xvs-core ← xvs-config ← xvs-control ← xvs`). It reads a file, parses it,
//! checks it against the schema (documented in `configs/README.md`) and turns it
//! into the core's inputs: [`xvs_core::classify::Rule`]s, [`ServiceConfig`]s and,
//! through [`Config::service_specs`], [`xvs_core::service::ServiceSpec`]s with ids
//! that stay stable across reloads ([`IdAllocator`]).
//!
//! ## Invariants
//!
//! - A [`Config`] returned by [`parse`] / [`load`] is fully validated (see the
//!   `schema` module doc for the list); building a `ServiceTable` from its specs
//!   only fails on what depends on run-time state (none today).
//! - Every error about the file's content names the file, a 1-based line and
//!   column, the dotted field path and what is wrong:
//!   `configs/web.yaml:14:15: services[0].real_servers[1].weight: 70000 is out of range 0..=65535`.
//!   Syntax errors, wrong types, unknown keys (always rejected), impossible
//!   values and broken cross references alike.
//! - No I/O except reading the file in [`load`]; no `unsafe`.
//!
//! ## YAML library
//!
//! `saphyr-parser` (the maintained YAML 1.2 parser of the saphyr project, successor
//! of `yaml-rust`/`yaml-rust2`; `serde_yaml` is archived). Its event stream gives a
//! span for every node, from which `yaml.rs` builds a small node tree with
//! positions; the decoder walks that tree itself. Serde-based crates report
//! positions for syntax and type errors, but semantic and cross-reference checks
//! (family mismatches, unknown interfaces, marks no rule sets) need the position of
//! *values* after deserialisation, and a map-based tree would silently accept
//! duplicate keys — walking a marked tree gives both, uniformly, with field paths.

#![forbid(unsafe_code)]

mod check;
mod decode;
mod error;
mod ids;
mod schema;
mod yaml;

#[cfg(test)]
mod tests;

use std::path::Path;

pub use check::{CheckConfig, CheckKind, HttpCheck, MiscCheck, StatusRange, UdpCheck};
pub use error::{ConfigError, IdError};
pub use ids::{DestKey, IdAllocator};
pub use schema::{
    Backend, Config, DirectorConfig, PacketGuard, RealServerConfig, RemovedServers, ServiceConfig,
    SorryServerConfig, TablesConfig, XdpMode, max_dests,
};

/// Reads, parses and validates the configuration file at `path` (errors name the
/// path as given).
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        file: file.clone(),
        source,
    })?;
    parse(&text, &file)
}

/// Parses and validates configuration text; `file` is the name used in errors.
pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
    let root = yaml::parse(text).map_err(|e| ConfigError::Syntax {
        file: file.to_owned(),
        line: e.pos.line,
        column: e.pos.col,
        message: e.message,
    })?;
    let ctx = decode::Ctx { file };
    schema::decode(&ctx, root.as_ref())
}
