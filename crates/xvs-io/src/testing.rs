//! Support for privileged tests (in this and the other crates): the one rule for
//! when they run, and `ip` run from the calling thread's namespace. Layer: test
//! support.

use std::io::Write;

/// Whether a test that needs root may run: true as root. Otherwise it prints a
/// visible `SKIP: <test>: <reason>` straight to stderr (the harness does not
/// swallow it) and returns false — or panics when `XVS_REQUIRE_PRIVILEGED=1`
/// (CI), so that a skip can never pass for a success.
pub fn privileged(test: &str, reason: &str) -> bool {
    if crate::sys::effective_uid_is_root() {
        return true;
    }
    if std::env::var("XVS_REQUIRE_PRIVILEGED").as_deref() == Ok("1") {
        panic!("{test}: {reason}, and XVS_REQUIRE_PRIVILEGED=1 forbids skipping");
    }
    let _ = writeln!(std::io::stderr(), "SKIP: {test}: {reason}");
    false
}

/// Runs `ip ARGS` from the calling thread (so in its network namespace) and
/// returns its output; panics with `ip`'s error text when it fails.
pub fn ip(args: &[&str]) -> String {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("ip {args:?}: {e}"));
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
