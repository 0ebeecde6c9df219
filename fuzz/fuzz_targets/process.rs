//! `Director::process` on raw bytes, through one director over the example lab shared
//! by all inputs of a run (so connections, persistence templates and fragment routes
//! made by one input are hit, refreshed and expired by later ones).
//!
//! Input: byte 0 bit 0 = receiving interface (0 ext, 1 int); byte 1 = how far the
//! clock moves first (bits 7..6: 0 ms / 0..63 ms / 0..63 s / 0..63 * 30 s); the
//! frame is the rest. Every 1024 inputs `Director::maintain(now, 64)` runs.
//!
//! Checks: no panic, and the invariants of `xvs_fuzz::check_generic` (Forward keeps
//! the length and sets the out interface's MAC, Pass leaves the frame untouched,
//! checksums stay valid, nothing outside the rewritten fields changes), and that every
//! frame is counted under exactly one verdict.
//!
//! Because the director is shared, a crash can depend on earlier inputs of the run:
//! replaying the crash file alone starts from empty tables. `process_structured`
//! builds a fresh director per input instead.

#![no_main]

use std::sync::Mutex;

use libfuzzer_sys::fuzz_target;
use xvs_core::Director;
use xvs_core::classify::IfaceId;
use xvs_core::time::Time;

struct State {
    director: Director,
    now: Time,
    inputs: u64,
}

static STATE: Mutex<Option<State>> = Mutex::new(None);

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let mut guard = STATE.lock().unwrap_or_else(|e| e.into_inner());
    let st = guard.get_or_insert_with(|| State {
        director: xvs_core::lab::lab(),
        now: Time(1_000_000),
        inputs: 0,
    });
    let iface = IfaceId(u16::from(data[0] & 1));
    let n = u32::from(data[1] & 0x3f);
    let advance = match data[1] >> 6 {
        0 => 0,
        1 => n,
        2 => n * 1000,
        _ => n * 30_000,
    };
    st.now = st.now.after_ms(advance);
    st.inputs += 1;
    if st.inputs.is_multiple_of(1024) {
        st.director.maintain(st.now, 64);
    }
    let before = &data[2..];
    let mut frame = before.to_vec();
    let (rx, fwd, pass, drops) = {
        let s = st.director.stats();
        (s.rx_packets, s.forwarded, s.passed, s.total_drops())
    };
    let v = st.director.process(iface, st.now, &mut frame);
    xvs_fuzz::check_generic(before, &frame, v);
    let s = st.director.stats();
    assert_eq!(s.rx_packets, rx + 1);
    assert_eq!(
        s.forwarded + s.passed + s.total_drops(),
        fwd + pass + drops + 1,
        "frame not counted under exactly one verdict"
    );
});
