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

/// Nanoseconds on a monotonic clock (for durations). On WASIp3 this is the WASIp3 clock
/// itself, not std's WASIp2 one, which a WASIp3 instance reaches through a synchronous
/// WASIp2 call.
pub fn monotonic_ns() -> u64 {
    #[cfg(feature = "sdk6")]
    {
        sdk6::wasip3::clocks::monotonic_clock::now()
    }
    #[cfg(not(feature = "sdk6"))]
    {
        use std::sync::OnceLock;
        static START: OnceLock<std::time::Instant> = OnceLock::new();
        let start = *START.get_or_init(std::time::Instant::now);
        u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// Milliseconds since the Unix epoch (wall clock).
pub fn unix_ms() -> i64 {
    #[cfg(feature = "sdk6")]
    {
        let now = sdk6::wasip3::clocks::system_clock::now();
        now.seconds * 1000 + i64::from(now.nanoseconds / 1_000_000)
    }
    #[cfg(not(feature = "sdk6"))]
    {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clocks_move_forward_and_agree_with_std() {
        let a = monotonic_ns();
        std::thread::sleep(Duration::from_millis(2));
        assert!(monotonic_ns() >= a + 2_000_000);
        let std_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        assert!((unix_ms() - std_ms).abs() < 1_000);
    }
}
