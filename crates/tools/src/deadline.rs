//! Cooperative timeouts: WebAssembly has no threads to preempt a tool, so long loops
//! check the deadline and stop with [`ToolError::Timeout`].

use crate::ToolError;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Deadline {
    at: Instant,
    timeout_s: u64,
}

impl Deadline {
    pub fn after(timeout: Duration) -> Deadline {
        Deadline {
            at: Instant::now() + timeout,
            timeout_s: timeout.as_secs(),
        }
    }

    /// A deadline that has already passed: for tests.
    pub fn expired() -> Deadline {
        Deadline {
            at: Instant::now(),
            timeout_s: 0,
        }
    }

    pub fn check(&self) -> Result<(), ToolError> {
        if Instant::now() >= self.at {
            Err(ToolError::Timeout(self.timeout_s))
        } else {
            Ok(())
        }
    }
}
