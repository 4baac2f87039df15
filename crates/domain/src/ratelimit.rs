//! The rate limiter's arithmetic: a sliding-window counter over two fixed windows
//! (the scheme Cloudflare and Upstash use), O(1) memory per client.
//!
//! Each client has one counter per fixed window (`api:{ip}:{window index}`). A request
//! increments the current window's counter atomically, then the request is admitted
//! when the previous window's count, weighted by how much of it still overlaps the
//! sliding window, plus the current count stays within the limit:
//!
//! ```text
//! previous × (W − elapsed) / W + current ≤ max
//! ```
//!
//! A rejected request takes its increment back, so the counters hold admitted requests
//! only and a client that keeps knocking is not locked out for longer. Because every
//! request sees a distinct value of the atomic counter, concurrent requests cannot
//! overshoot: of 150 simultaneous requests from a fresh client with a limit of 100,
//! exactly 100 pass. The weighting assumes the previous window's requests were spread
//! evenly, so a burst at the end of one window and the start of the next can admit at
//! most `max` in any window-long span when the earlier burst sat at the window's end,
//! and somewhat more otherwise: never twice the limit, as a plain fixed window allows.

/// Where a moment falls in the fixed windows of length `length_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// `now / length`: names the counter key of the current window.
    pub index: u64,
    /// Milliseconds since the current window began.
    pub elapsed_ms: u64,
    pub length_ms: u64,
}

impl Window {
    pub fn at(now_ms: u64, length_s: u64) -> Window {
        let length_ms = length_s.max(1) * 1000;
        Window {
            index: now_ms / length_ms,
            elapsed_ms: now_ms % length_ms,
            length_ms,
        }
    }

    /// The window before this one.
    pub fn previous_index(&self) -> u64 {
        self.index.saturating_sub(1)
    }

    /// How long a window's counter must live: through its own window and the next,
    /// where it is the weighted "previous" count.
    pub fn counter_ttl_s(&self) -> u64 {
        2 * self.length_ms / 1000
    }

    fn remaining_ms(&self) -> u64 {
        self.length_ms - self.elapsed_ms
    }

    /// The previous window's count as it weighs now, times the window length (exact
    /// integer arithmetic).
    fn weighted_previous(&self, previous: u64) -> u128 {
        u128::from(previous) * u128::from(self.remaining_ms())
    }

    /// Whether `current` requests in this window (this one included) fit the limit
    /// whatever the previous window held: then its count need not be read.
    pub fn fits_without_previous(&self, max: u64, current: u64) -> bool {
        admits(self, max, current, max)
    }
}

/// The limiter's answer for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u64,
    /// Requests the client can still make now (never more than are really left).
    pub remaining: u64,
    /// Once `remaining` is 0: milliseconds until one more request would be admitted.
    /// While requests remain: milliseconds until the current window's counter rolls over.
    pub reset_ms: u64,
}

/// Whether `current` (after this request's increment) and `previous` are within `max`.
pub fn admits(window: &Window, max: u64, current: u64, previous: u64) -> bool {
    let budget = u128::from(max) * u128::from(window.length_ms);
    window.weighted_previous(previous) + u128::from(current) * u128::from(window.length_ms)
        <= budget
}

/// Decides one request: `current` is the current window's counter after this request's
/// increment, `previous` the previous window's counter.
pub fn decide(window: &Window, max: u64, current: u64, previous: u64) -> Decision {
    let allowed = admits(window, max, current, previous);
    // What the client holds in the window once this request is settled (a rejected
    // request takes its increment back). Never more than `max`: the counter holds only
    // admitted requests once every rejection has taken its increment back, and a
    // count above `max` is other rejected requests caught between their increment and
    // its return (150 at once against a limit of 100 made a Retry-After of 62 s, when
    // one more request really fits 0.6 s into the next window).
    let held = if allowed {
        current
    } else {
        current.saturating_sub(1).min(max)
    };
    let length = u128::from(window.length_ms);
    let used = window.weighted_previous(previous) + u128::from(held) * length;
    let budget = u128::from(max) * length;
    let remaining = (budget.saturating_sub(used) / length) as u64;
    let reset_ms = if remaining > 0 {
        window.remaining_ms()
    } else {
        wait_for_one_more(window, max, held, previous)
    };
    Decision {
        allowed,
        limit: max,
        remaining,
        reset_ms,
    }
}

/// Milliseconds until a client holding `held` requests in this window (and `previous`
/// in the one before) may make one more.
pub fn wait_for_one_more(window: &Window, max: u64, held: u64, previous: u64) -> u64 {
    if admits(window, max, held + 1, previous) {
        return 0;
    }
    let length = window.length_ms;
    if held < max && previous > 0 {
        // Still in this window, once the previous window's weight has shrunk enough:
        // previous × (L − elapsed − t) ≤ (max − held − 1) × L.
        let room = u128::from(max - held - 1) * u128::from(length);
        let t = u128::from(window.remaining_ms()) - room / u128::from(previous);
        return (t as u64).max(1);
    }
    // In the next window, where today's count becomes the weighted previous one:
    // held × (L − s) + 1 × L ≤ max × L.
    let into_next = if held == 0 {
        0
    } else {
        let room = u128::from(max.saturating_sub(1)) * u128::from(length);
        let lhs = u128::from(held) * u128::from(length);
        (lhs.saturating_sub(room)).div_ceil(u128::from(held)) as u64
    };
    window.remaining_ms() + into_next
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(elapsed_ms: u64) -> Window {
        Window {
            index: 10,
            elapsed_ms,
            length_ms: 60_000,
        }
    }

    #[test]
    fn rejections_in_flight_do_not_lengthen_the_wait() {
        // 100 admitted in this window, and five other rejected requests still hold
        // their increments when this one reads the counter.
        let win = w(0);
        let settled = decide(&win, 100, 101, 0);
        let crowded = decide(&win, 100, 106, 0);
        assert!(!crowded.allowed);
        assert_eq!(crowded, settled);
        // One more fits 0.6 s into the next window (100 × (1 − s/L) + 1 ≤ 100).
        assert_eq!(crowded.reset_ms, 60_000 + 600);
        assert_eq!(crowded.remaining, 0);
    }

    #[test]
    fn windows_are_named_by_index() {
        let win = Window::at(125_500, 60);
        assert_eq!(
            (win.index, win.elapsed_ms, win.length_ms),
            (2, 5_500, 60_000)
        );
        assert_eq!(win.previous_index(), 1);
        assert_eq!(win.counter_ttl_s(), 120);
        assert_eq!(
            Window::at(0, 0).length_ms,
            1000,
            "a zero window is one second"
        );
    }

    #[test]
    fn a_fresh_client_gets_exactly_the_limit() {
        let admitted = (1..=150).filter(|n| decide(&w(0), 100, *n, 0).allowed);
        assert_eq!(admitted.count(), 100);
        let last = decide(&w(0), 100, 100, 0);
        assert!(last.allowed);
        assert_eq!(last.remaining, 0);
        let first = decide(&w(0), 100, 1, 0);
        assert_eq!(first.remaining, 99);
        assert_eq!(first.reset_ms, 60_000);
    }

    #[test]
    fn the_previous_window_weighs_by_its_overlap() {
        // Halfway through the window, a full previous window still counts for 50.
        assert!(decide(&w(30_000), 100, 50, 100).allowed);
        assert!(!decide(&w(30_000), 100, 51, 100).allowed);
        // Right at the start it counts in full; near the end hardly at all.
        assert!(!decide(&w(0), 100, 1, 100).allowed);
        assert!(decide(&w(59_400), 100, 99, 100).allowed);
    }

    #[test]
    fn rejections_say_when_to_come_back() {
        // Full previous window, halfway through: 50 held; one more fits once the
        // previous window's weight drops below 49, i.e. 600 ms later.
        let d = decide(&w(30_000), 100, 51, 100);
        assert!(!d.allowed);
        assert_eq!(d.remaining, 0);
        assert_eq!(d.reset_ms, 600);
        assert!(admits(&w(30_600), 100, 51, 100));
        assert!(!admits(&w(30_599), 100, 51, 100));
        // The whole limit used in this window: the next window, once this one's
        // weight has dropped by one request (0.6 s into it).
        let full = decide(&w(10_000), 100, 101, 0);
        assert!(!full.allowed);
        assert_eq!(full.reset_ms, 50_000 + 600);
        let next = Window {
            index: 11,
            elapsed_ms: 600,
            length_ms: 60_000,
        };
        assert!(admits(&next, 100, 1, 100));
        assert!(!admits(
            &Window {
                elapsed_ms: 599,
                ..next
            },
            100,
            1,
            100
        ));
    }

    #[test]
    fn a_limit_of_one() {
        assert!(decide(&w(0), 1, 1, 0).allowed);
        let d = decide(&w(0), 1, 2, 0);
        assert!(!d.allowed);
        // The next window begins with the old count weighing a full request; it has
        // weighed off entirely only when that window ends.
        assert_eq!(d.reset_ms, 120_000);
    }

    #[test]
    fn the_previous_count_matters_only_near_the_limit() {
        assert!(w(30_000).fits_without_previous(100, 50));
        assert!(!w(30_000).fits_without_previous(100, 51));
        assert!(!w(0).fits_without_previous(100, 1));
        assert!(w(1).fits_without_previous(1_000_000_000, 1));
    }

    proptest::proptest! {
        #[test]
        fn decisions_are_consistent(
            elapsed in 0u64..60_000, max in 1u64..1_000, current in 1u64..2_000, previous in 0u64..2_000
        ) {
            let win = w(elapsed);
            let d = decide(&win, max, current, previous);
            proptest::prop_assert_eq!(d.allowed, admits(&win, max, current, previous));
            if !d.allowed {
                proptest::prop_assert_eq!(d.remaining, 0);
                proptest::prop_assert!(d.reset_ms >= 1 && d.reset_ms <= 2 * 60_000);
            } else {
                proptest::prop_assert!(d.remaining < max);
            }
            // Counters hold admitted requests only, so a previous window holds at most max.
            if previous <= max && win.fits_without_previous(max, current) {
                proptest::prop_assert!(d.allowed);
            }
        }
    }
}
