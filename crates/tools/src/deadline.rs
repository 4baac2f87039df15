//! Cooperative checkpoints: WebAssembly has no threads to preempt a tool, so long
//! loops call [`Deadline::check`] between steps. A check stops the tool with
//! [`ToolError::Timeout`] past its deadline, or with [`ToolError::Cancelled`] once the
//! job's [`Supervisor`] says it was cancelled; tools report how far they are through
//! the same value ([`Deadline::progress`]).
//!
//! Asking the supervisor costs a host call (a SQLite read), so it is asked at most
//! every [`POLL_EVERY`], and progress goes out at most every [`PROGRESS_EVERY`].

use crate::ToolError;
use std::cell::Cell;
use std::time::{Duration, Instant};

/// How often a check may ask the supervisor whether the job was cancelled.
pub const POLL_EVERY: Duration = Duration::from_millis(200);
/// How often progress may be reported: a few events a second per job at most.
pub const PROGRESS_EVERY: Duration = Duration::from_millis(250);
/// When the first report may go out: a job shorter than this reports nothing, one of
/// a tenth of a second (`build_graph` on a few thousand edges) already does.
pub const FIRST_PROGRESS_AFTER: Duration = Duration::from_millis(50);

/// The runner's side of a running tool.
pub trait Supervisor {
    /// Whether the job was cancelled and should stop now.
    fn cancelled(&self) -> bool;
    /// How far the tool is: `fraction` in 0..=1 and a short message.
    fn progress(&self, fraction: f64, message: &str);
}

#[derive(Clone)]
pub struct Deadline<'s> {
    at: Instant,
    timeout_s: u64,
    supervisor: Option<&'s dyn Supervisor>,
    last_poll: Cell<Option<Instant>>,
    last_progress: Cell<Option<Instant>>,
}

impl std::fmt::Debug for Deadline<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deadline")
            .field("timeout_s", &self.timeout_s)
            .field("supervised", &self.supervisor.is_some())
            .finish()
    }
}

impl<'s> Deadline<'s> {
    pub fn after(timeout: Duration) -> Deadline<'s> {
        Deadline {
            at: Instant::now() + timeout,
            timeout_s: timeout.as_secs(),
            supervisor: None,
            last_poll: Cell::new(None),
            last_progress: Cell::new(None),
        }
    }

    /// A deadline whose checks also ask `supervisor` (cancellation, progress). The
    /// first progress report goes out [`FIRST_PROGRESS_AFTER`] the start, as if one had
    /// gone out just before: a job that ends sooner reports none. The first question
    /// about cancellation waits [`POLL_EVERY`] too: the runner has just claimed the job,
    /// and a claim only takes a job nobody asked to cancel, so asking at once would cost
    /// every short job a SQLite read that cannot say yes.
    pub fn supervised(timeout: Duration, supervisor: &'s dyn Supervisor) -> Deadline<'s> {
        let now = Instant::now();
        let as_if_reported = now.checked_sub(PROGRESS_EVERY - FIRST_PROGRESS_AFTER);
        Deadline {
            supervisor: Some(supervisor),
            last_poll: Cell::new(Some(now)),
            last_progress: Cell::new(Some(as_if_reported.unwrap_or(now))),
            ..Deadline::after(timeout)
        }
    }

    /// A deadline that has already passed: for tests.
    pub fn expired() -> Deadline<'s> {
        Deadline {
            timeout_s: 0,
            ..Deadline::after(Duration::ZERO)
        }
    }

    pub fn check(&self) -> Result<(), ToolError> {
        let now = Instant::now();
        if now >= self.at {
            return Err(ToolError::Timeout(self.timeout_s));
        }
        if let Some(supervisor) = &self.supervisor {
            if due(&self.last_poll, now, POLL_EVERY) && supervisor.cancelled() {
                return Err(ToolError::Cancelled);
            }
        }
        Ok(())
    }

    /// Reports progress (throttled), then checks as [`Deadline::check`] does.
    pub fn progress(&self, fraction: f64, message: &str) -> Result<(), ToolError> {
        if let Some(supervisor) = &self.supervisor {
            if due(&self.last_progress, Instant::now(), PROGRESS_EVERY) {
                supervisor.progress(fraction.clamp(0.0, 1.0), message);
            }
        }
        self.check()
    }
}

/// Whether `every` has passed since `last` (the first call always is), noting `now`.
fn due(last: &Cell<Option<Instant>>, now: Instant, every: Duration) -> bool {
    match last.get() {
        Some(at) if now.duration_since(at) < every => false,
        _ => {
            last.set(Some(now));
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;

    #[derive(Default)]
    struct Recorder {
        cancel: Cell<bool>,
        polls: Cell<u32>,
        reports: RefCell<Vec<(f64, String)>>,
    }

    impl Supervisor for Recorder {
        fn cancelled(&self) -> bool {
            self.polls.set(self.polls.get() + 1);
            self.cancel.get()
        }
        fn progress(&self, fraction: f64, message: &str) {
            self.reports
                .borrow_mut()
                .push((fraction, message.to_string()));
        }
    }

    #[test]
    fn an_expired_deadline_stops_the_tool() {
        assert_eq!(Deadline::expired().check(), Err(ToolError::Timeout(0)));
        assert_eq!(Deadline::after(Duration::from_secs(5)).check(), Ok(()));
    }

    #[test]
    fn cancellation_is_polled_at_most_every_interval() {
        let rec = Rc::new(Recorder::default());
        let d = Deadline::supervised(Duration::from_secs(60), rec.as_ref());
        for _ in 0..1000 {
            assert_eq!(d.check(), Ok(()));
        }
        assert_eq!(rec.polls.get(), 0, "a job that just started is not asked");
        std::thread::sleep(POLL_EVERY);
        for _ in 0..1000 {
            assert_eq!(d.check(), Ok(()));
        }
        assert_eq!(rec.polls.get(), 1, "a burst of checks asks once");
        rec.cancel.set(true);
        // Not asked again until the interval has passed.
        assert_eq!(d.check(), Ok(()));
        std::thread::sleep(POLL_EVERY);
        assert_eq!(d.check(), Err(ToolError::Cancelled));
    }

    #[test]
    fn progress_is_throttled_and_clamped() {
        let rec = Rc::new(Recorder::default());
        let d = Deadline::supervised(Duration::from_secs(60), rec.as_ref());
        d.progress(0.1, "too soon").unwrap();
        assert!(
            rec.reports.borrow().is_empty(),
            "a short job reports nothing"
        );
        std::thread::sleep(PROGRESS_EVERY);
        for i in 0..100 {
            d.progress(f64::from(i) / 50.0, "rows").unwrap();
        }
        assert_eq!(rec.reports.borrow().len(), 1);
        std::thread::sleep(PROGRESS_EVERY);
        d.progress(7.0, "done").unwrap();
        let reports = rec.reports.borrow();
        assert_eq!(reports.len(), 2);
        assert_eq!(reports[1], (1.0, "done".to_string()));
    }

    #[test]
    fn unsupervised_progress_is_only_a_check() {
        assert_eq!(
            Deadline::after(Duration::from_secs(1)).progress(0.5, "x"),
            Ok(())
        );
        assert_eq!(
            Deadline::expired().progress(0.5, "x"),
            Err(ToolError::Timeout(0))
        );
    }
}
