//! Health-check settings (`check:` of a service or a real server). Layer: config
//! (control side).
//!
//! A service's `check:` is the default of its real servers; a real server's own
//! `check:` replaces it as a whole (no key-by-key merging: the keys of one check
//! type make no sense under another). The decoded [`CheckConfig`] carries the
//! core's [`Settings`] for [`xvs_core::health::Checker`] and what the probe needs.
//!
//! Invariants of a decoded [`CheckConfig`]:
//! - `interval` and `connect_timeout` are ≥ 1 ms, every duration ≤
//!   [`xvs_core::time::MAX_TIMEOUT_MS`]; `rise`, `fall` ≥ 1;
//! - type-specific keys appear only under their type (`path` only for http, ...);
//! - an http `path` starts with `/`, and neither it nor `host` contains whitespace
//!   or control characters (no header injection); status ranges lie in 100..=599;
//! - a misc `command` is a non-empty list whose program is non-empty;
//! - a tcp, http or udp check of a real server always has a port to probe
//!   (`connect_port`, else the server's port, else the service's) — checked by the
//!   schema where the server is known.

use std::net::IpAddr;

use xvs_core::health::Settings;
use xvs_core::time::MAX_TIMEOUT_MS;

use crate::decode::{R, Val};

/// A range of accepted HTTP status codes, inclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StatusRange {
    /// First accepted code.
    pub lo: u16,
    /// Last accepted code (≥ `lo`).
    pub hi: u16,
}

impl StatusRange {
    /// Whether `code` is in the range.
    pub fn contains(&self, code: u16) -> bool {
        (self.lo..=self.hi).contains(&code)
    }
}

/// `type: http` (keepalived `HTTP_GET`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HttpCheck {
    /// Request path (default `/`).
    pub path: String,
    /// `Host` header; `None`: the probed address and port.
    pub host: Option<String>,
    /// Accepted status codes (default `[200-299]`).
    pub status: Vec<StatusRange>,
    /// A substring the body must contain (within the first bytes read).
    pub expect_body: Option<String>,
    /// MD5 of the whole body (keepalived `HTTP_GET … digest`, as `genhash` or
    /// `md5sum` print it).
    pub digest: Option<[u8; 16]>,
}

impl HttpCheck {
    /// Whether `code` is an accepted status.
    pub fn status_ok(&self, code: u16) -> bool {
        self.status.iter().any(|r| r.contains(code))
    }
}

/// `type: udp`: send `payload`, expect a datagram back.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UdpCheck {
    /// Datagram sent (default empty).
    pub payload: String,
    /// A substring the reply must contain; `None`: any reply.
    pub expect_body: Option<String>,
}

/// `type: misc` (keepalived `MISC_CHECK`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MiscCheck {
    /// Program and arguments (no shell).
    pub command: Vec<String>,
    /// keepalived `misc_dynamic`: exit 0 up, 1 down, 2..=255 up with weight code − 2.
    pub dynamic: bool,
}

/// What a check probes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CheckKind {
    /// A TCP connect (keepalived `TCP_CHECK`).
    Tcp,
    /// An HTTP GET.
    Http(HttpCheck),
    /// A UDP request/answer.
    Udp(UdpCheck),
    /// An external command.
    Misc(MiscCheck),
}

impl CheckKind {
    /// The YAML name of the type.
    pub fn name(&self) -> &'static str {
        match self {
            CheckKind::Tcp => "tcp",
            CheckKind::Http(_) => "http",
            CheckKind::Udp(_) => "udp",
            CheckKind::Misc(_) => "misc",
        }
    }

    /// Whether the probe talks to an address and port (every type but misc).
    pub fn needs_port(&self) -> bool {
        !matches!(self, CheckKind::Misc(_))
    }
}

/// A decoded `check:` mapping.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CheckConfig {
    /// Type and type-specific settings.
    pub kind: CheckKind,
    /// Timing and counting, for [`xvs_core::health::Checker`].
    pub settings: Settings,
    /// Address to probe instead of the real server's.
    pub connect_ip: Option<IpAddr>,
    /// Port to probe instead of the real server's (or the service's).
    pub connect_port: Option<u16>,
}

pub(crate) const CHECK_KEYS: &[&str] = &[
    "type",
    "interval",
    "connect_timeout",
    "retry",
    "delay_before_retry",
    "rise",
    "fall",
    "warmup",
    "alpha",
    "connect_ip",
    "connect_port",
    "path",
    "host",
    "status",
    "expect_body",
    "digest",
    "payload",
    "command",
    "dynamic",
];

/// Type-specific keys and the types that accept them.
const TYPED_KEYS: &[(&str, &[&str])] = &[
    ("path", &["http"]),
    ("host", &["http"]),
    ("status", &["http"]),
    ("expect_body", &["http", "udp"]),
    ("digest", &["http"]),
    ("payload", &["udp"]),
    ("command", &["misc"]),
    ("dynamic", &["misc"]),
];

/// Seconds as a plain integer or decimal (at most 3 fractional digits) → ms, in
/// `min_ms..=MAX_TIMEOUT_MS`.
fn secs_ms(v: &Val<'_>, min_ms: u64) -> R<u32> {
    let text = match &v.node.kind {
        crate::yaml::Kind::Scalar { text, plain: true } => text.as_str(),
        _ => {
            return Err(v.err(format!(
                "expected a number of seconds, found {}",
                v.node.describe()
            )));
        }
    };
    let bad = || {
        v.err(format!(
            "`{text}` is not a number of seconds (like 2 or 0.5)"
        ))
    };
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !digits(int) || !digits(frac) {
        return Err(bad());
    }
    if frac.len() > 3 {
        return Err(v.err(format!(
            "`{text}`: at most millisecond precision (3 decimals)"
        )));
    }
    let int: u64 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| bad())?
    };
    let frac_ms: u64 = format!("{frac:0<3}").parse().map_err(|_| bad())?;
    let ms = int.saturating_mul(1000).saturating_add(frac_ms);
    let max = u64::from(MAX_TIMEOUT_MS);
    if ms < min_ms || ms > max {
        return Err(v.err(format!(
            "{text} s is out of range {}..={} s",
            min_ms as f64 / 1000.0,
            max / 1000
        )));
    }
    Ok(ms as u32)
}

fn decode_status(v: &Val<'_>) -> R<StatusRange> {
    let range_err = |lo: u64, hi: u64| {
        v.err(format!(
            "HTTP status {} is out of range 100..=599",
            if (100..=599).contains(&lo) { hi } else { lo }
        ))
    };
    let (lo, hi) = match &v.node.kind {
        crate::yaml::Kind::Scalar { text, plain: true }
            if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) =>
        {
            let c: u64 = text.parse().map_err(|_| range_err(u64::MAX, 0))?;
            (c, c)
        }
        _ => {
            let s = v.str().map_err(|_| {
                v.err(format!(
                    "expected a status code or a range a-b, found {}",
                    v.node.describe()
                ))
            })?;
            let bad = || v.err(format!("`{s}` is not a status code or a range a-b"));
            let (a, b) = s.split_once('-').unwrap_or((s, s));
            let a: u64 = a.trim().parse().map_err(|_| bad())?;
            let b: u64 = b.trim().parse().map_err(|_| bad())?;
            (a, b)
        }
    };
    if !(100..=599).contains(&lo) || !(100..=599).contains(&hi) {
        return Err(range_err(lo, hi));
    }
    if lo > hi {
        return Err(v.err(format!("empty status range {lo}-{hi}")));
    }
    Ok(StatusRange {
        lo: lo as u16,
        hi: hi as u16,
    })
}

/// A string without whitespace or control characters.
fn token<'a>(v: &Val<'a>, what: &str) -> R<&'a str> {
    let s = v.name()?;
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(v.err(format!(
            "{what} must not contain whitespace or control characters"
        )));
    }
    Ok(s)
}

/// Decodes a `check:` mapping.
pub(crate) fn decode_check(v: &Val<'_>) -> R<CheckConfig> {
    let m = v.map(CHECK_KEYS)?;
    let ty_val = m.req("type")?;
    let ty = ty_val.one_of(&[
        ("tcp", "tcp"),
        ("http", "http"),
        ("udp", "udp"),
        ("misc", "misc"),
    ])?;
    for (key, types) in TYPED_KEYS {
        if let Some((k, _)) = m.opt_entry(key)
            && !types.contains(&ty)
        {
            return Err(k.err(format!(
                "`{key}` only applies to {} checks (this check is {ty})",
                types.join(" and ")
            )));
        }
    }
    let mut s = Settings::default();
    for (key, slot, min) in [
        ("interval", &mut s.interval_ms, 1),
        ("connect_timeout", &mut s.connect_timeout_ms, 1),
        ("delay_before_retry", &mut s.delay_before_retry_ms, 0),
        ("warmup", &mut s.warmup_ms, 0),
    ] {
        if let Some(x) = m.opt(key) {
            *slot = secs_ms(&x, min)?;
        }
    }
    for (key, slot, min) in [
        ("retry", &mut s.retry, 0),
        ("rise", &mut s.rise, 1),
        ("fall", &mut s.fall, 1),
    ] {
        if let Some(x) = m.opt(key) {
            *slot = x.uint(min, 65535)? as u32;
        }
    }
    if let Some(a) = m.opt("alpha") {
        s.alpha = a.bool()?;
    }
    let connect_ip = match m.opt("connect_ip") {
        Some(x) => Some(x.ip()?),
        None => None,
    };
    let connect_port = match m.opt("connect_port") {
        Some(x) => Some(x.uint(1, 65535)? as u16),
        None => None,
    };
    let expect_body = match m.opt("expect_body") {
        Some(x) => Some(x.name()?.to_owned()),
        None => None,
    };
    let kind = match ty {
        "tcp" => CheckKind::Tcp,
        "http" => {
            let path = match m.opt("path") {
                Some(p) => {
                    let s = token(&p, "a path")?;
                    if !s.starts_with('/') {
                        return Err(p.err(format!("path `{s}` must start with `/`")));
                    }
                    s.to_owned()
                }
                None => "/".to_owned(),
            };
            let host = match m.opt("host") {
                Some(h) => Some(token(&h, "a host")?.to_owned()),
                None => None,
            };
            let status = match m.opt("status") {
                Some(list) => {
                    let items = list.seq()?;
                    if items.is_empty() {
                        return Err(list.err("at least one status code is required"));
                    }
                    items.iter().map(decode_status).collect::<R<Vec<_>>>()?
                }
                None => vec![StatusRange { lo: 200, hi: 299 }],
            };
            let digest = match m.opt("digest") {
                Some(d) => {
                    let hex = d.name()?;
                    let bytes: Option<Vec<u8>> = (hex.len() == 32)
                        .then(|| {
                            (0..16)
                                .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
                                .collect()
                        })
                        .flatten();
                    match bytes {
                        Some(b) => Some(<[u8; 16]>::try_from(b).expect("16 bytes")),
                        None => {
                            return Err(d.err(format!(
                                "`{hex}` is not an MD5 digest (32 hexadecimal digits)"
                            )));
                        }
                    }
                }
                None => None,
            };
            CheckKind::Http(HttpCheck {
                path,
                host,
                status,
                expect_body,
                digest,
            })
        }
        "udp" => CheckKind::Udp(UdpCheck {
            payload: match m.opt("payload") {
                Some(p) => p.str()?.to_owned(),
                None => String::new(),
            },
            expect_body,
        }),
        _ => {
            let list = m.req("command")?;
            let items = list.seq()?;
            let Some(first) = items.first() else {
                return Err(list.err("the command needs at least a program"));
            };
            first.name()?;
            let command = items
                .iter()
                .map(|it| it.str().map(str::to_owned))
                .collect::<R<Vec<_>>>()?;
            let dynamic = match m.opt("dynamic") {
                Some(d) => d.bool()?,
                None => false,
            };
            CheckKind::Misc(MiscCheck { command, dynamic })
        }
    };
    Ok(CheckConfig {
        kind,
        settings: s,
        connect_ip,
        connect_port,
    })
}
