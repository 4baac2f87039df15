//! Waiting without blocking the instance.

use std::time::Duration;

/// Sleeps for `d`. On WASIp3 this yields to the instance's other requests; a WASIp2
/// instance serves one request, so blocking its thread is the same thing.
pub async fn sleep(d: Duration) {
    #[cfg(feature = "sdk6")]
    {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        sdk6::wasip3::clocks::monotonic_clock::wait_for(ns).await;
    }
    #[cfg(not(feature = "sdk6"))]
    std::thread::sleep(d);
}
