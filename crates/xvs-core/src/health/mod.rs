//! Health checks as sans-IO state machines (keepalived semantics). Layer: pure core.
//!
//! One [`Checker`] per (service, real server). It never touches a socket or a
//! clock: the caller passes `now` ([`Time`]) into [`Checker::handle_timeout`] and
//! [`Checker::handle_result`], runs the probes it asks for through
//! [`Checker::poll_action`], sleeps until [`Checker::poll_timeout`] and forwards
//! what [`Checker::poll_event`] yields — the quinn-proto shape.
//!
//! ## Semantics
//!
//! - A *round* runs every `interval` (keepalived `delay_loop`), measured from the
//!   end of the previous round, so a slow target never makes rounds overlap. The
//!   first round starts after a deterministic pseudo-random delay in
//!   `0..=warmup` derived from the seed given to [`Checker::new`].
//! - Within a round, a failed attempt is retried up to `retry` more times, each
//!   after `delay_before_retry`; the round fails only when every attempt failed and
//!   succeeds at the first successful attempt.
//! - `rise` consecutive successful rounds bring a down server up; `fall`
//!   consecutive failed rounds take an up server down. A failure resets the
//!   success count and vice versa, so a flapping target with `rise`/`fall` ≥ 2
//!   changes nothing.
//! - `alpha`: start down until `rise` successes prove the server up; otherwise
//!   start up (and `fall` failures take it down).
//! - [`ProbeResult::Weight`] (keepalived `misc_dynamic`) is a success that also
//!   sets the weight; an [`Event::Weight`] is emitted whenever the reported weight
//!   differs from the last one, *before* any [`Event::Up`] of the same round.
//!
//! ## Invariants
//!
//! - At most one attempt is in flight; it carries a fresh id ([`Action::StartProbe`])
//!   and results for any other id (stale, duplicated, or from before a reset) are
//!   ignored.
//! - An attempt still in flight `connect_timeout` after it started is failed by the
//!   checker itself in [`Checker::handle_timeout`]: a hung target never wedges it.
//! - [`Checker::poll_timeout`] is always `Some`: there is always a next thing to do.
//! - Settings are clamped on construction: `rise`, `fall`, `interval` and
//!   `connect_timeout` are at least 1; all durations are at most
//!   [`crate::time::MAX_TIMEOUT_MS`] (wrapping time comparisons stay valid).

use std::collections::VecDeque;

use crate::time::{MAX_TIMEOUT_MS, Time};

#[cfg(test)]
mod tests;

/// Timing and counting settings of one checker (keepalived names in parentheses).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Settings {
    /// Milliseconds between rounds (keepalived `delay_loop`) (default 5000).
    pub interval_ms: u32,
    /// Bound on one attempt, connect and answer included (keepalived `connect_timeout`)
    /// (default 3000).
    pub connect_timeout_ms: u32,
    /// Extra attempts within a round before it counts as failed (keepalived `retry`)
    /// (default 0).
    pub retry: u32,
    /// Milliseconds between the attempts of one round (keepalived `delay_before_retry`)
    /// (default 1000).
    pub delay_before_retry_ms: u32,
    /// Consecutive successful rounds to go up (default 1).
    pub rise: u32,
    /// Consecutive failed rounds to go down (default 1).
    pub fall: u32,
    /// Upper bound of the initial delay before the first round (keepalived `warmup`)
    /// (default 0).
    pub warmup_ms: u32,
    /// Start down until proven up (keepalived `alpha`) (default false: start up).
    pub alpha: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            interval_ms: 5000,
            connect_timeout_ms: 3000,
            retry: 0,
            delay_before_retry_ms: 1000,
            rise: 1,
            fall: 1,
            warmup_ms: 0,
            alpha: false,
        }
    }
}

impl Settings {
    /// The settings with every value brought into its valid range.
    pub fn clamped(self) -> Settings {
        let ms = |v: u32, min: u32| v.clamp(min, MAX_TIMEOUT_MS);
        Settings {
            interval_ms: ms(self.interval_ms, 1),
            connect_timeout_ms: ms(self.connect_timeout_ms, 1),
            retry: self.retry,
            delay_before_retry_ms: ms(self.delay_before_retry_ms, 0),
            rise: self.rise.max(1),
            fall: self.fall.max(1),
            warmup_ms: ms(self.warmup_ms, 0),
            alpha: self.alpha,
        }
    }
}

/// The outcome of one probe attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeResult {
    /// The target answered as expected.
    Success,
    /// The target failed; the reason ends up in [`Event::Down`].
    Failure(String),
    /// Success with a new weight (keepalived `misc_dynamic`).
    Weight(u32),
}

/// What the checker asks its driver to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Start a probe now and report its outcome with this `attempt` id.
    StartProbe {
        /// Id to pass back to [`Checker::handle_result`].
        attempt: u64,
    },
}

/// A change the control side must apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The server passed `rise` rounds: usable again.
    Up,
    /// The server failed `fall` rounds.
    Down {
        /// The last failure's reason.
        reason: String,
    },
    /// A dynamic check set a new weight.
    Weight(u32),
}

/// Where the checker is within its cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting to start the next round at `at`.
    Idle { at: Time },
    /// Attempt `id` (the `try_no`-th of the round, from 0) in flight until `deadline`.
    InFlight {
        id: u64,
        try_no: u32,
        deadline: Time,
    },
    /// Waiting `delay_before_retry` before attempt `try_no` of the round.
    RetryWait { try_no: u32, at: Time },
}

/// One health checker: keepalived's per-real-server checker as a state machine.
#[derive(Clone, Debug)]
pub struct Checker {
    settings: Settings,
    up: bool,
    /// Consecutive successful rounds (while the failure count is 0).
    successes: u32,
    /// Consecutive failed rounds (while the success count is 0).
    failures: u32,
    weight: Option<u32>,
    phase: Phase,
    next_id: u64,
    last_reason: Option<String>,
    actions: VecDeque<Action>,
    events: VecDeque<Event>,
}

/// SplitMix64: a well-mixed deterministic value from a seed.
fn mix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The initial delay for `seed`: uniform-ish in `0..=warmup_ms`.
pub fn warmup_delay(warmup_ms: u32, seed: u64) -> u32 {
    if warmup_ms == 0 {
        0
    } else {
        (mix(seed) % (u64::from(warmup_ms) + 1)) as u32
    }
}

impl Checker {
    /// A checker created at `now`, starting down if `settings.alpha`, else up. Its
    /// first round starts at `now + warmup_delay(warmup, seed)`; give every checker
    /// a different seed (e.g. a hash of its service and server) to spread them.
    pub fn new(settings: Settings, now: Time, seed: u64) -> Checker {
        Checker::with_state(settings, now, seed, !settings.alpha)
    }

    /// Like [`Checker::new`] but starting in the given state, whatever `alpha`
    /// says: for a checker that replaces another one of the same server on a
    /// reload, so the server keeps its proven state.
    pub fn with_state(settings: Settings, now: Time, seed: u64, up: bool) -> Checker {
        let settings = settings.clamped();
        Checker {
            settings,
            up,
            successes: 0,
            failures: 0,
            weight: None,
            phase: Phase::Idle {
                at: now.after_ms(warmup_delay(settings.warmup_ms, seed)),
            },
            next_id: 0,
            last_reason: None,
            actions: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The (clamped) settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Whether the server is currently considered up.
    pub fn is_up(&self) -> bool {
        self.up
    }

    /// The last weight a dynamic check reported, if any.
    pub fn weight(&self) -> Option<u32> {
        self.weight
    }

    /// The reason of the last failed attempt, if any attempt failed yet.
    pub fn last_reason(&self) -> Option<&str> {
        self.last_reason.as_deref()
    }

    /// Consecutive successful and failed rounds so far (one of them is 0).
    pub fn counts(&self) -> (u32, u32) {
        (self.successes, self.failures)
    }

    /// The id of the attempt in flight, if one is.
    pub fn in_flight(&self) -> Option<u64> {
        match self.phase {
            Phase::InFlight { id, .. } => Some(id),
            _ => None,
        }
    }

    /// When [`Checker::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Time> {
        Some(match self.phase {
            Phase::Idle { at } | Phase::RetryWait { at, .. } => at,
            Phase::InFlight { deadline, .. } => deadline,
        })
    }

    /// The next action to perform.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next event to report.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Advances the clock: starts a due attempt, or fails one in flight past its
    /// deadline. Calling it early is harmless.
    pub fn handle_timeout(&mut self, now: Time) {
        match self.phase {
            Phase::Idle { at } if at.has_passed(now) => self.start(now, 0),
            Phase::RetryWait { try_no, at } if at.has_passed(now) => self.start(now, try_no),
            Phase::InFlight { deadline, .. } if deadline.has_passed(now) => {
                let reason = format!(
                    "no answer within {} ms (connect_timeout)",
                    self.settings.connect_timeout_ms
                );
                self.attempt_failed(now, reason);
            }
            _ => {}
        }
    }

    /// The outcome of attempt `attempt`; ignored unless it is the one in flight.
    pub fn handle_result(&mut self, now: Time, attempt: u64, result: ProbeResult) {
        match self.phase {
            Phase::InFlight { id, .. } if id == attempt => {}
            _ => return,
        }
        match result {
            ProbeResult::Success => self.round_succeeded(now),
            ProbeResult::Weight(w) => {
                if self.weight != Some(w) {
                    self.weight = Some(w);
                    self.events.push_back(Event::Weight(w));
                }
                self.round_succeeded(now);
            }
            ProbeResult::Failure(reason) => self.attempt_failed(now, reason),
        }
    }

    fn start(&mut self, now: Time, try_no: u32) {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        self.phase = Phase::InFlight {
            id,
            try_no,
            deadline: now.after_ms(self.settings.connect_timeout_ms),
        };
        self.actions.push_back(Action::StartProbe { attempt: id });
    }

    fn next_round(&mut self, now: Time) {
        self.phase = Phase::Idle {
            at: now.after_ms(self.settings.interval_ms),
        };
    }

    fn round_succeeded(&mut self, now: Time) {
        self.failures = 0;
        self.successes = self.successes.saturating_add(1);
        if !self.up && self.successes >= self.settings.rise {
            self.up = true;
            self.events.push_back(Event::Up);
        }
        self.next_round(now);
    }

    fn attempt_failed(&mut self, now: Time, reason: String) {
        let Phase::InFlight { try_no, .. } = self.phase else {
            return;
        };
        self.last_reason = Some(reason.clone());
        if try_no < self.settings.retry {
            self.phase = Phase::RetryWait {
                try_no: try_no + 1,
                at: now.after_ms(self.settings.delay_before_retry_ms),
            };
            return;
        }
        self.successes = 0;
        self.failures = self.failures.saturating_add(1);
        if self.up && self.failures >= self.settings.fall {
            self.up = false;
            self.events.push_back(Event::Down { reason });
        }
        self.next_round(now);
    }
}
