//! data20's host adapter: the one place that knows which Spin SDK a build uses.
//!
//! Every data20 crate above this one speaks only to these modules, so the routes exist
//! once and build two ways:
//!
//! - feature `sdk6`: `spin-sdk` 6.0.0 (WASIp3). Spin 4.0.x keeps such an instance alive
//!   across requests (up to 128, 16 at once), and the adapter keeps what is safe to keep
//!   per instance: the settings and the outbound Redis connection ([`redis`],
//!   [`variables`]).
//! - feature `sdk5`: `spin-sdk` 5.2 (WASIp2), the compatibility build for Fermyon Cloud
//!   and Spin 3.x. Spin makes a fresh instance per request, so nothing outlives one.
//!
//! With neither (the host's unit tests), every host call answers an error.

// A component build enables one feature. A workspace-wide `cargo check` or `clippy`
// may enable both (the job worker is on 5.2, see `block_on`): then the adapter's calls
// go to 6.0.0 and both export glues compile.

pub mod group;
pub mod http;
pub mod log;
pub mod redis;
pub mod sqlite;
pub mod time;
pub mod variables;

/// Runs `future` to completion from synchronous code (a tool's cooperative checks of
/// its cancel flag and its progress reports, which reach SQLite and Redis mid-run), or
/// answers `None` where that cannot be done.
///
/// On WASIp2 every host call is synchronous underneath: the future is ready when first
/// polled. On WASIp3 it cannot be done: a synchronous wait (`waitable-set.wait`,
/// wit-bindgen's `block_on`) panics Spin 4.0.2's executor (an `unwrap` on `None` in its
/// CPU-time call hook, `spin-factors-executor` lib.rs:314), and there is no other way
/// for synchronous code to wait for an async host call. That is why the job worker,
/// which runs tools and gets a fresh instance per message anyway, stays on 5.2.
pub fn block_on<T>(future: impl std::future::Future<Output = T>) -> Option<T> {
    #[cfg(feature = "sdk6")]
    {
        drop(future);
        None
    }
    #[cfg(not(feature = "sdk6"))]
    {
        Some(futures::executor::block_on(future))
    }
}
