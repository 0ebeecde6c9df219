//! Support for privileged tests (in this and the other crates): the one rule for
//! when they run. Layer: test support.

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
