//! Checker tests with a fake clock.

use super::*;

/// A checker driven by a fake clock, collecting its actions and events.
struct Harness {
    c: Checker,
    now: Time,
    events: Vec<Event>,
}

const T0: Time = Time(1_000);

fn s() -> Settings {
    Settings {
        interval_ms: 100,
        connect_timeout_ms: 30,
        retry: 0,
        delay_before_retry_ms: 10,
        rise: 1,
        fall: 1,
        warmup_ms: 0,
        alpha: false,
    }
}

impl Harness {
    fn new(settings: Settings) -> Harness {
        Harness {
            c: Checker::new(settings, T0, 7),
            now: T0,
            events: Vec::new(),
        }
    }

    fn drain_events(&mut self) -> Vec<Event> {
        while let Some(e) = self.c.poll_event() {
            self.events.push(e);
        }
        std::mem::take(&mut self.events)
    }

    /// Jumps to the next timeout, handles it, and returns the attempt started (if
    /// any).
    fn step(&mut self) -> Option<u64> {
        let t = self.c.poll_timeout().expect("always a timeout");
        if t.is_after(self.now) {
            self.now = t;
        }
        self.c.handle_timeout(self.now);
        let a = self
            .c
            .poll_action()
            .map(|Action::StartProbe { attempt }| attempt);
        assert_eq!(self.c.poll_action(), None, "at most one action at a time");
        a
    }

    /// Runs to the next probe start and returns its id.
    fn next_probe(&mut self) -> u64 {
        for _ in 0..4 {
            if let Some(a) = self.step() {
                return a;
            }
        }
        panic!("no probe started");
    }

    /// Starts the next probe and answers it after `after_ms`.
    fn probe(&mut self, after_ms: u32, result: ProbeResult) -> Vec<Event> {
        let id = self.next_probe();
        self.now = self.now.after_ms(after_ms);
        self.c.handle_result(self.now, id, result);
        self.drain_events()
    }

    /// One whole round: the first attempt answers `result` right away, retries
    /// (if any) fail too when `result` is a failure.
    fn round(&mut self, result: ProbeResult) -> Vec<Event> {
        let mut ev = self.probe(1, result.clone());
        while self.c.in_flight().is_none() && matches!(self.c.phase, Phase::RetryWait { .. }) {
            ev.extend(self.probe(1, result.clone()));
        }
        ev
    }
}

fn fail(r: &str) -> ProbeResult {
    ProbeResult::Failure(r.to_owned())
}

fn down(r: &str) -> Event {
    Event::Down {
        reason: r.to_owned(),
    }
}

#[test]
fn default_settings_are_keepalived_like() {
    let d = Settings::default();
    assert_eq!(d.interval_ms, 5000);
    assert_eq!(d.connect_timeout_ms, 3000);
    assert_eq!((d.retry, d.delay_before_retry_ms), (0, 1000));
    assert_eq!((d.rise, d.fall, d.warmup_ms, d.alpha), (1, 1, 0, false));
}

#[test]
fn first_probe_immediately_without_warmup_then_every_interval() {
    let mut h = Harness::new(s());
    assert_eq!(h.c.poll_timeout(), Some(T0));
    assert_eq!(h.step(), Some(0));
    assert_eq!(h.now, T0);
    h.now = h.now.after_ms(5);
    h.c.handle_result(h.now, 0, ProbeResult::Success);
    // The next round is an interval after the end of this one.
    assert_eq!(h.c.poll_timeout(), Some(T0.after_ms(105)));
    // Early timeouts do nothing.
    h.c.handle_timeout(T0.after_ms(104));
    assert_eq!(h.c.poll_action(), None);
    h.c.handle_timeout(T0.after_ms(105));
    assert_eq!(h.c.poll_action(), Some(Action::StartProbe { attempt: 1 }));
}

#[test]
fn non_alpha_starts_up_and_fall_one_goes_down_at_first_failure() {
    let mut h = Harness::new(s());
    assert!(h.c.is_up());
    assert_eq!(h.round(ProbeResult::Success), []);
    assert_eq!(h.round(fail("refused")), [down("refused")]);
    assert!(!h.c.is_up());
    assert_eq!(h.c.last_reason(), Some("refused"));
    // Further failures: no repeated event.
    assert_eq!(h.round(fail("refused")), []);
    assert_eq!(h.round(ProbeResult::Success), [Event::Up]);
    assert!(h.c.is_up());
}

#[test]
fn alpha_starts_down_and_needs_rise_successes() {
    let mut h = Harness::new(Settings {
        alpha: true,
        rise: 3,
        ..s()
    });
    assert!(!h.c.is_up());
    assert_eq!(h.round(ProbeResult::Success), []);
    assert_eq!(h.round(ProbeResult::Success), []);
    assert_eq!(h.c.counts(), (2, 0));
    assert_eq!(h.round(ProbeResult::Success), [Event::Up]);
    assert_eq!(h.round(ProbeResult::Success), []);
}

#[test]
fn rise_counts_consecutive_successes_only() {
    let mut h = Harness::new(Settings {
        alpha: true,
        rise: 2,
        ..s()
    });
    assert_eq!(h.round(ProbeResult::Success), []);
    assert_eq!(h.round(fail("x")), []); // resets the success count; already down
    assert_eq!(h.c.counts(), (0, 1));
    assert_eq!(h.round(ProbeResult::Success), []);
    assert_eq!(h.round(ProbeResult::Success), [Event::Up]);
}

#[test]
fn fall_counts_consecutive_failures_only() {
    let mut h = Harness::new(Settings { fall: 3, ..s() });
    assert_eq!(h.round(fail("a")), []);
    assert_eq!(h.round(fail("b")), []);
    assert_eq!(h.round(ProbeResult::Success), []);
    assert_eq!(h.c.counts(), (1, 0));
    assert_eq!(h.round(fail("c")), []);
    assert_eq!(h.round(fail("d")), []);
    assert_eq!(h.round(fail("e")), [down("e")]);
}

#[test]
fn flapping_with_rise_and_fall_two_changes_nothing() {
    let mut h = Harness::new(Settings {
        rise: 2,
        fall: 2,
        ..s()
    });
    for _ in 0..20 {
        assert_eq!(h.round(fail("flap")), []);
        assert_eq!(h.round(ProbeResult::Success), []);
    }
    assert!(h.c.is_up());
    // With rise = fall = 1 every flap is a transition.
    let mut h = Harness::new(s());
    for _ in 0..5 {
        assert_eq!(h.round(fail("flap")), [down("flap")]);
        assert_eq!(h.round(ProbeResult::Success), [Event::Up]);
    }
}

#[test]
fn retry_waits_delay_before_retry_and_only_the_last_attempt_counts() {
    let mut h = Harness::new(Settings {
        retry: 2,
        delay_before_retry_ms: 10,
        ..s()
    });
    let a0 = h.next_probe();
    h.c.handle_result(h.now, a0, fail("first"));
    assert_eq!(h.drain_events(), []);
    assert_eq!(
        h.c.counts(),
        (0, 0),
        "a retried attempt is not a failed round"
    );
    let t = h.now;
    assert_eq!(h.c.poll_timeout(), Some(t.after_ms(10)));
    h.c.handle_timeout(t.after_ms(9));
    assert_eq!(h.c.poll_action(), None);
    h.c.handle_timeout(t.after_ms(10));
    h.now = t.after_ms(10);
    let Some(Action::StartProbe { attempt: a1 }) = h.c.poll_action() else {
        panic!("retry not started")
    };
    assert_ne!(a0, a1);
    h.c.handle_result(h.now, a1, fail("second"));
    assert_eq!(h.drain_events(), []);
    let a2 = h.next_probe();
    h.c.handle_result(h.now, a2, fail("third"));
    assert_eq!(h.drain_events(), [down("third")]);
    assert_eq!(h.c.counts(), (0, 1));
    // Next round after a full interval.
    assert_eq!(h.c.poll_timeout(), Some(h.now.after_ms(100)));
}

#[test]
fn retry_success_ends_the_round_successfully() {
    let mut h = Harness::new(Settings {
        retry: 1,
        alpha: true,
        ..s()
    });
    assert_eq!(h.probe(1, fail("blip")), []);
    assert_eq!(h.probe(1, ProbeResult::Success), [Event::Up]);
    assert_eq!(h.c.counts(), (1, 0));
    // A fresh round gets its retries again.
    assert_eq!(h.probe(1, fail("blip")), []);
    assert!(h.c.is_up());
    assert_eq!(h.probe(1, fail("blip2")), [down("blip2")]);
}

#[test]
fn hung_probe_is_failed_by_the_checker_at_connect_timeout() {
    let mut h = Harness::new(s());
    let a = h.next_probe();
    assert_eq!(h.c.in_flight(), Some(a));
    assert_eq!(h.c.poll_timeout(), Some(h.now.after_ms(30)));
    h.c.handle_timeout(h.now.after_ms(29));
    assert_eq!(h.c.in_flight(), Some(a));
    h.now = h.now.after_ms(30);
    h.c.handle_timeout(h.now);
    assert_eq!(h.c.in_flight(), None);
    let ev = h.drain_events();
    assert!(
        matches!(&ev[..], [Event::Down { reason }] if reason.contains("30 ms")),
        "{ev:?}"
    );
    // The late answer of the hung attempt is stale.
    h.c.handle_result(h.now.after_ms(1), a, ProbeResult::Success);
    assert_eq!(h.drain_events(), []);
    assert!(!h.c.is_up());
    // And the checker goes on.
    assert_eq!(h.c.poll_timeout(), Some(h.now.after_ms(100)));
    assert_eq!(h.round(ProbeResult::Success), [Event::Up]);
}

#[test]
fn hung_probe_with_retries_retries_after_the_timeout() {
    let mut h = Harness::new(Settings { retry: 1, ..s() });
    let a0 = h.next_probe();
    h.now = h.now.after_ms(30);
    h.c.handle_timeout(h.now);
    assert_eq!(h.drain_events(), []);
    let a1 = h.next_probe();
    assert_ne!(a0, a1);
    h.now = h.now.after_ms(30);
    h.c.handle_timeout(h.now);
    assert_eq!(h.drain_events().len(), 1);
}

#[test]
fn stale_and_unknown_results_are_ignored() {
    let mut h = Harness::new(s());
    // Nothing in flight yet.
    h.c.handle_result(h.now, 0, fail("early"));
    assert_eq!(h.drain_events(), []);
    assert_eq!(h.c.counts(), (0, 0));
    let a = h.next_probe();
    // Wrong id.
    h.c.handle_result(h.now, a + 1, fail("wrong"));
    assert_eq!(h.c.in_flight(), Some(a));
    h.c.handle_result(h.now, a, ProbeResult::Success);
    // Duplicate of an answered attempt.
    h.c.handle_result(h.now, a, fail("dup"));
    assert_eq!(h.drain_events(), []);
    assert_eq!(h.c.counts(), (1, 0));
    assert!(h.c.is_up());
}

#[test]
fn dynamic_weight_events_only_on_change_and_before_up() {
    let mut h = Harness::new(Settings { alpha: true, ..s() });
    assert_eq!(
        h.round(ProbeResult::Weight(5)),
        [Event::Weight(5), Event::Up]
    );
    assert_eq!(h.c.weight(), Some(5));
    assert_eq!(h.round(ProbeResult::Weight(5)), []);
    assert_eq!(h.round(ProbeResult::Weight(0)), [Event::Weight(0)]);
    // A plain success keeps the weight.
    assert_eq!(h.round(ProbeResult::Success), []);
    assert_eq!(h.c.weight(), Some(0));
    assert_eq!(h.round(fail("exit 1")), [down("exit 1")]);
    assert_eq!(h.round(ProbeResult::Weight(0)), [Event::Up]);
}

#[test]
fn warmup_is_bounded_deterministic_and_spread() {
    let set = Settings {
        warmup_ms: 1000,
        ..s()
    };
    let mut seen = std::collections::HashSet::new();
    for seed in 0..200u64 {
        let c = Checker::new(set, T0, seed);
        let first = c.poll_timeout().unwrap();
        let d = first.0 - T0.0;
        assert!(d <= 1000, "seed {seed}: {d}");
        assert_eq!(Checker::new(set, T0, seed).poll_timeout(), Some(first));
        seen.insert(d);
    }
    assert!(seen.len() > 100, "poorly spread: {}", seen.len());
    assert_eq!(warmup_delay(0, 12345), 0);
    assert!(warmup_delay(1, 3) <= 1);
}

#[test]
fn warmup_delays_the_first_probe() {
    let set = Settings {
        warmup_ms: 50,
        ..s()
    };
    let seed = (0..100).find(|&sd| warmup_delay(50, sd) > 0).unwrap();
    let d = warmup_delay(50, seed);
    let mut c = Checker::new(set, T0, seed);
    c.handle_timeout(T0.after_ms(d - 1));
    assert_eq!(c.poll_action(), None);
    c.handle_timeout(T0.after_ms(d));
    assert_eq!(c.poll_action(), Some(Action::StartProbe { attempt: 0 }));
}

#[test]
fn with_state_overrides_alpha() {
    let a = Settings { alpha: true, ..s() };
    assert!(Checker::with_state(a, T0, 0, true).is_up());
    assert!(!Checker::with_state(s(), T0, 0, false).is_up());
}

#[test]
fn settings_are_clamped() {
    let c = Checker::new(
        Settings {
            interval_ms: 0,
            connect_timeout_ms: 0,
            rise: 0,
            fall: 0,
            warmup_ms: u32::MAX,
            ..s()
        },
        T0,
        1,
    );
    let st = c.settings();
    assert_eq!(
        (st.interval_ms, st.connect_timeout_ms, st.rise, st.fall),
        (1, 1, 1, 1)
    );
    assert_eq!(st.warmup_ms, MAX_TIMEOUT_MS);
}

#[test]
fn works_across_clock_wrap() {
    let mut c = Checker::new(s(), Time(u32::MAX - 10), 0);
    let now = Time(u32::MAX - 10);
    c.handle_timeout(now);
    let Some(Action::StartProbe { attempt }) = c.poll_action() else {
        panic!()
    };
    // Deadline wraps past 0.
    assert_eq!(c.poll_timeout(), Some(now.after_ms(30)));
    c.handle_timeout(Time(u32::MAX));
    assert_eq!(c.in_flight(), Some(attempt));
    c.handle_timeout(now.after_ms(30));
    assert_eq!(c.in_flight(), None);
    assert!(!c.is_up());
    assert_eq!(c.poll_timeout(), Some(now.after_ms(130)));
}

#[test]
fn long_run_fake_clock_counts_rounds() {
    // 1 s of fake time with interval 100 ms and instant answers: ~10 rounds.
    let mut c = Checker::new(s(), T0, 0);
    let mut now = T0;
    let end = T0.after_ms(1000);
    let mut probes = 0;
    while !now.is_after(end) {
        c.handle_timeout(now);
        while let Some(Action::StartProbe { attempt }) = c.poll_action() {
            probes += 1;
            c.handle_result(now, attempt, ProbeResult::Success);
        }
        now = c.poll_timeout().unwrap();
    }
    assert_eq!(probes, 11); // at 0, 100, ..., 1000
    assert!(c.poll_event().is_none());
}
