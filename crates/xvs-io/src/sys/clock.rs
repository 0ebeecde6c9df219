//! Clocks the safe std API does not give: the calling thread's CPU time (for
//! cost measurements) and `CLOCK_MONOTONIC` as raw nanoseconds — the clock of
//! `bpf_ktime_get_ns()`, so userspace timestamps compare with an XDP program's.

fn read(clock: libc::clockid_t, name: &str) -> std::time::Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec borrowed mutably for the call; the clock
    // id is a constant the kernel knows.
    let r = unsafe { libc::clock_gettime(clock, &mut ts) };
    assert_eq!(r, 0, "clock_gettime({name})");
    std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// CPU time the calling thread has used so far (`CLOCK_THREAD_CPUTIME_ID`).
pub fn thread_cpu_time() -> std::time::Duration {
    read(libc::CLOCK_THREAD_CPUTIME_ID, "CLOCK_THREAD_CPUTIME_ID")
}

/// `CLOCK_MONOTONIC` in nanoseconds (what `bpf_ktime_get_ns()` returns).
pub fn monotonic_ns() -> u64 {
    read(libc::CLOCK_MONOTONIC, "CLOCK_MONOTONIC").as_nanos() as u64
}
