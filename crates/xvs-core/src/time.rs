//! Coarse time as the core sees it: milliseconds on a wrapping 32-bit clock.
//!
//! The core never reads a clock; callers pass `now` (the I/O layer reads a coarse
//! monotonic clock once per batch). Stored expiries are 4-byte [`Time`] values compared
//! with wrapping arithmetic, like TCP sequence numbers, so the clock may wrap (every
//! ~49.7 days) as long as no timeout exceeds [`MAX_TIMEOUT_MS`] (~24.8 days), which
//! configuration enforces.

/// Largest timeout the wrapping comparison supports (2^31 - 1 ms).
pub const MAX_TIMEOUT_MS: u32 = i32::MAX as u32;

/// A point on the director's coarse clock, in milliseconds (wrapping).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Time(pub u32);

impl Time {
    /// A time from milliseconds since an arbitrary epoch (truncated to 32 bits).
    #[inline]
    pub const fn from_millis(ms: u64) -> Time {
        Time(ms as u32)
    }

    /// A time from whole seconds since an arbitrary epoch.
    #[inline]
    pub const fn from_secs(secs: u64) -> Time {
        Time::from_millis(secs * 1000)
    }

    /// `self + ms`, wrapping.
    #[inline]
    pub const fn after_ms(self, ms: u32) -> Time {
        Time(self.0.wrapping_add(ms))
    }

    /// `self + secs`, wrapping.
    #[inline]
    pub const fn after_secs(self, secs: u32) -> Time {
        self.after_ms(secs.saturating_mul(1000))
    }

    /// True when `self` is strictly later than `other` (wrapping comparison).
    #[inline]
    pub const fn is_after(self, other: Time) -> bool {
        (self.0.wrapping_sub(other.0) as i32) > 0
    }

    /// True when a deadline `self` has passed at `now` (deadline ≤ now).
    #[inline]
    pub const fn has_passed(self, now: Time) -> bool {
        !self.is_after(now)
    }

    /// Milliseconds from `now` until `self` (0 when passed).
    #[inline]
    pub const fn remaining_ms(self, now: Time) -> u32 {
        if self.is_after(now) {
            self.0.wrapping_sub(now.0)
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_compare() {
        let t = Time(u32::MAX - 5);
        let later = t.after_ms(10);
        assert_eq!(later.0, 4);
        assert!(later.is_after(t));
        assert!(!t.is_after(later));
        assert!(t.has_passed(later));
        assert!(!later.has_passed(t));
        assert_eq!(later.remaining_ms(t), 10);
        assert_eq!(t.remaining_ms(later), 0);
        assert!(t.has_passed(t));
    }
}
