//! Log lines (requests, job transitions), written to stderr (which Spin keeps per
//! component).
//!
//! Spin 4.0.2 forwards every write a component makes to stderr to its log file and to
//! its own stderr, each through Tokio's blocking pool: one write per request cost about
//! a quarter of a cached route's CPU (0.13 of 0.55 ms, docs/BENCHMARKS.md). On WASIp3,
//! where an instance serves up to 16 requests at once, the lines of the requests it
//! serves together are written together (request lines and the job transitions they
//! made): by the request, or the work a response left for after it, that leaves the
//! instance idle, or by the first to end once the oldest line is [`BATCH_WINDOW`] old
//! or the lines pass [`BATCH_BYTES`]. Spin drops an instance only once its requests and
//! their work have ended, so no line waits for a request that may never come; a line is
//! lost only with an instance that traps. On WASIp2 an instance is one request (or one
//! worker message): lines are written at once, a batch's transitions in one write.

use std::io::Write;
use std::time::Duration;

/// How long a line may wait for others before it is written.
pub const BATCH_WINDOW: Duration = Duration::from_millis(100);
/// Lines past this size are written without waiting.
pub const BATCH_BYTES: usize = 32 * 1024;

/// Writes `lines` (whole rendered lines, newlines included), batched on WASIp3; at
/// once, in one write, on WASIp2.
pub fn write_lines(lines: Vec<u8>) {
    #[cfg(feature = "sdk6")]
    batch::push(lines);
    #[cfg(not(feature = "sdk6"))]
    write_now(&lines);
}

fn write_now(bytes: &[u8]) {
    // A log line that cannot be written is dropped: logging never fails a request.
    let _ = std::io::stderr().write_all(bytes);
}

/// The WASIp3 glue's note that a request ended, with how many the instance still
/// serves: writes what is waiting when it is time (see the module doc).
#[cfg(feature = "sdk6")]
pub(crate) fn request_ended(still_in_flight: usize) {
    batch::maybe_flush(still_in_flight == 0);
}

#[cfg(feature = "sdk6")]
mod batch {
    use super::{write_now, BATCH_BYTES, BATCH_WINDOW};
    use std::cell::RefCell;
    use std::time::Instant;

    thread_local! {
        /// Lines waiting to be written, and when the oldest came. They hold only what
        /// the log shows anyway, and leave no later than their requests' end.
        static PENDING: RefCell<(Vec<u8>, Option<Instant>)> =
            const { RefCell::new((Vec::new(), None)) };
    }

    pub fn push(line: Vec<u8>) {
        PENDING.with(|p| {
            let mut p = p.borrow_mut();
            p.0.extend_from_slice(&line);
            p.1.get_or_insert_with(Instant::now);
        });
    }

    pub fn maybe_flush(idle: bool) {
        let bytes = PENDING.with(|p| {
            let mut p = p.borrow_mut();
            let due = idle
                || p.0.len() >= BATCH_BYTES
                || p.1.is_some_and(|t| t.elapsed() >= BATCH_WINDOW);
            if !due {
                return Vec::new();
            }
            p.1 = None;
            std::mem::take(&mut p.0)
        });
        if !bytes.is_empty() {
            write_now(&bytes);
        }
    }
}
