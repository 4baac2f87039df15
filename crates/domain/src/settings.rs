//! Runtime settings, read from Spin variables (SPEC §6), each parsed on first use.
//!
//! Where the values come from is the host adapter's business (`data20_host::variables`):
//! kept per instance on WASIp3, one host call per first use on WASIp2, where every
//! read costs about 100 µs and a cached GET needs only four of the settings. Parsing is
//! pure and unit-tested; unset or empty variables take the SPEC's defaults, bad values
//! keep the default and log a warning.

use std::cell::OnceCell;
use std::collections::HashMap;

/// Looks a variable up by name (`spin_sdk::variables::get` in the components).
pub type Lookup = Box<dyn Fn(&str) -> Option<String>>;

/// The settings every component shares, read lazily through a [`Lookup`].
pub struct Settings {
    lookup: Lookup,
    redis_url: OnceCell<String>,
    tool_cache_ttl_s: OnceCell<u64>,
    job_status_ttl_s: OnceCell<u64>,
    rate_limit_max: OnceCell<u64>,
    rate_limit_window_s: OnceCell<u64>,
    rate_limit_fail_open: OnceCell<bool>,
    trust_forwarded_for: OnceCell<bool>,
    api_token: OnceCell<Option<String>>,
    job_retention_ms: OnceCell<Option<i64>>,
    inline_runs: OnceCell<bool>,
    worker_id: OnceCell<Option<String>>,
    worker_memory_limit: OnceCell<Option<u64>>,
    worker_loop: OnceCell<u32>,
}

pub const VARIABLES: [&str; 13] = [
    "redis_url",
    "tool_cache_ttl",
    "job_status_ttl",
    "rate_limit_max",
    "rate_limit_window",
    "rate_limit_fail_open",
    "trust_forwarded_for",
    "api_token",
    "job_retention_days",
    "inline_runs",
    "worker_id",
    "worker_memory_limit",
    "worker_loop",
];

/// The SPEC's defaults.
pub mod defaults {
    pub const REDIS_URL: &str = "redis://127.0.0.1:6379";
    pub const TOOL_CACHE_TTL_S: u64 = 3600;
    pub const JOB_STATUS_TTL_S: u64 = 600;
    pub const RATE_LIMIT_MAX: u64 = 100;
    pub const RATE_LIMIT_WINDOW_S: u64 = 60;
    pub const RATE_LIMIT_FAIL_OPEN: bool = true;
    pub const TRUST_FORWARDED_FOR: bool = false;
    pub const JOB_RETENTION_DAYS: f64 = 7.0;
    /// With no worker to hear a job, the API runs it itself (Fermyon Cloud, no Redis).
    pub const INLINE_RUNS: bool = true;
}

impl Default for Settings {
    /// No variable set: every setting at its default.
    fn default() -> Self {
        Settings::new(Box::new(|_| None))
    }
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings").finish_non_exhaustive()
    }
}

impl Settings {
    pub fn new(lookup: Lookup) -> Settings {
        Settings {
            lookup,
            redis_url: OnceCell::new(),
            tool_cache_ttl_s: OnceCell::new(),
            job_status_ttl_s: OnceCell::new(),
            rate_limit_max: OnceCell::new(),
            rate_limit_window_s: OnceCell::new(),
            rate_limit_fail_open: OnceCell::new(),
            trust_forwarded_for: OnceCell::new(),
            api_token: OnceCell::new(),
            job_retention_ms: OnceCell::new(),
            inline_runs: OnceCell::new(),
            worker_id: OnceCell::new(),
            worker_memory_limit: OnceCell::new(),
            worker_loop: OnceCell::new(),
        }
    }

    /// Settings from fixed name/value pairs (tests, tools outside Spin).
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Settings {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::new(Box::new(move |name| map.get(name).cloned()))
    }

    /// A variable's value; unset and blank are the same.
    fn raw(&self, name: &str) -> Option<String> {
        (self.lookup)(name).filter(|v| !v.trim().is_empty())
    }

    /// The setting in `cell`, parsed from variable `name` on first use; a value that
    /// does not parse keeps `default` and logs the parser's warning.
    fn cached<T: Copy>(
        &self,
        cell: &OnceCell<T>,
        name: &str,
        default: T,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> T {
        *cell.get_or_init(|| {
            self.raw(name)
                .map_or(Ok(default), |raw| parse(&raw))
                .unwrap_or_else(|warning| {
                    crate::log::warn(&warning);
                    default
                })
        })
    }

    fn number(&self, cell: &OnceCell<u64>, name: &str, min: u64, default: u64) -> u64 {
        self.cached(cell, name, default, |raw| {
            parse_number(name, raw, min, default)
        })
    }

    fn flag(&self, cell: &OnceCell<bool>, name: &str, default: bool) -> bool {
        self.cached(cell, name, default, |raw| parse_flag(name, raw, default))
    }

    pub fn redis_url(&self) -> &str {
        self.redis_url.get_or_init(|| {
            self.raw("redis_url")
                .map_or_else(|| defaults::REDIS_URL.to_string(), |u| u.trim().to_string())
        })
    }

    pub fn tool_cache_ttl_s(&self) -> u64 {
        let (cell, d) = (&self.tool_cache_ttl_s, defaults::TOOL_CACHE_TTL_S);
        self.number(cell, "tool_cache_ttl", 0, d)
    }

    pub fn job_status_ttl_s(&self) -> u64 {
        let (cell, d) = (&self.job_status_ttl_s, defaults::JOB_STATUS_TTL_S);
        self.number(cell, "job_status_ttl", 0, d)
    }

    pub fn rate_limit_max(&self) -> u64 {
        let (cell, d) = (&self.rate_limit_max, defaults::RATE_LIMIT_MAX);
        self.number(cell, "rate_limit_max", 1, d)
    }

    pub fn rate_limit_window_s(&self) -> u64 {
        let (cell, d) = (&self.rate_limit_window_s, defaults::RATE_LIMIT_WINDOW_S);
        self.number(cell, "rate_limit_window", 1, d)
    }

    pub fn rate_limit_fail_open(&self) -> bool {
        let (cell, d) = (&self.rate_limit_fail_open, defaults::RATE_LIMIT_FAIL_OPEN);
        self.flag(cell, "rate_limit_fail_open", d)
    }

    pub fn trust_forwarded_for(&self) -> bool {
        let (cell, d) = (&self.trust_forwarded_for, defaults::TRUST_FORWARDED_FOR);
        self.flag(cell, "trust_forwarded_for", d)
    }

    /// How long finished jobs are kept (`job_retention_days`, fractions allowed);
    /// `None` for 0: kept for ever.
    pub fn job_retention_ms(&self) -> Option<i64> {
        let (cell, d) = (&self.job_retention_ms, defaults::JOB_RETENTION_DAYS);
        self.cached(cell, "job_retention_days", retention_ms(d), |raw| {
            parse_retention_days(raw).map(retention_ms)
        })
    }

    /// Whether the API may run a job itself when no worker heard it (`inline_runs`,
    /// default true). `scripts/up` turns it off: its workers are supervised and come
    /// back, and tool code must never run in the HTTP process, where nothing outside
    /// the WebAssembly can stop a tool that loops.
    pub fn inline_runs(&self) -> bool {
        let (cell, d) = (&self.inline_runs, defaults::INLINE_RUNS);
        self.flag(cell, "inline_runs", d)
    }

    /// This worker process's identity (`worker_id`), set by the supervisor that
    /// started it; `None` when unset or not a plain name (see [`parse_worker_id`]).
    pub fn worker_id(&self) -> Option<&str> {
        self.worker_id
            .get_or_init(|| {
                let raw = self.raw("worker_id")?;
                parse_worker_id(&raw).map_err(|w| crate::log::warn(&w)).ok()
            })
            .as_deref()
    }

    /// The memory cap of one instance in bytes, as the supervisor set it for Spin
    /// (`worker_memory_limit`); only used to say which limit a job hit.
    pub fn worker_memory_limit(&self) -> Option<u64> {
        *self.worker_memory_limit.get_or_init(|| {
            let raw = self.raw("worker_memory_limit")?;
            parse_number("worker_memory_limit", &raw, 1, 0)
                .map_err(|w| crate::log::warn(&w))
                .ok()
        })
    }

    /// The API token; an empty value means none.
    pub fn api_token(&self) -> Option<&str> {
        self.api_token
            .get_or_init(|| (self.lookup)("api_token").filter(|t| !t.is_empty()))
            .as_deref()
    }
}

/// A whole number of at least `min`; `Err` is the warning to log (the default is kept).
pub fn parse_number(name: &str, raw: &str, min: u64, default: u64) -> Result<u64, String> {
    match raw.trim().parse::<u64>() {
        Ok(v) if v >= min => Ok(v),
        _ => Err(format!(
            "variable {name}={raw:?} is not a whole number >= {min}; using {default}"
        )),
    }
}

/// Days as a non-negative number (`0.5` is twelve hours); `Err` is the warning to log.
pub fn parse_retention_days(raw: &str) -> Result<f64, String> {
    match raw.trim().parse::<f64>() {
        Ok(days) if days.is_finite() && (0.0..=36_500.0).contains(&days) => Ok(days),
        _ => Err(format!(
            "variable job_retention_days={raw:?} is not a number of days from 0 to 36500; using {}",
            defaults::JOB_RETENTION_DAYS
        )),
    }
}

impl Settings {
    /// Which of its process's subscription loops this worker component is
    /// (`worker_loop`, a component variable; 1 when unset): each loop is its own
    /// component on its own trigger address, and names its runs apart from the
    /// others' (see `data20_domain::limits::loop_prefix`).
    pub fn worker_loop(&self) -> u32 {
        *self.worker_loop.get_or_init(|| {
            self.raw("worker_loop")
                .map(|raw| {
                    parse_worker_loop(&raw)
                        .map_err(|w| crate::log::warn(&w))
                        .unwrap_or(1)
                })
                .unwrap_or(1)
        })
    }
}

/// A loop number: 1 to 64; `Err` is the warning to log.
pub fn parse_worker_loop(raw: &str) -> Result<u32, String> {
    match raw.trim().parse::<u32>() {
        Ok(n @ 1..=64) => Ok(n),
        _ => Err(format!(
            "variable worker_loop={raw:?} is not a whole number from 1 to 64; using 1"
        )),
    }
}

fn retention_ms(days: f64) -> Option<i64> {
    (days > 0.0).then(|| ((days * 86_400_000.0).round() as i64).max(1))
}

/// A worker id: 1 to 64 ASCII letters, digits, `.`, `_` or `-` (it becomes part of
/// runner names, matched by prefix); `Err` is the warning to log.
pub fn parse_worker_id(raw: &str) -> Result<String, String> {
    let id = raw.trim();
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if (1..=64).contains(&id.len()) && id.chars().all(plain) {
        Ok(id.to_string())
    } else {
        Err(format!(
            "variable worker_id={raw:?} is not 1-64 letters, digits, '.', '_' or '-'; ignoring it"
        ))
    }
}

/// A boolean in the usual spellings; `Err` is the warning to log (the default is kept).
pub fn parse_flag(name: &str, raw: &str, default: bool) -> Result<bool, String> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(format!(
            "variable {name}={raw:?} is not a boolean; using {default}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;

    #[test]
    fn defaults_follow_the_spec() {
        let s = Settings::default();
        assert_eq!(s.redis_url(), "redis://127.0.0.1:6379");
        assert_eq!(s.tool_cache_ttl_s(), 3600);
        assert_eq!(s.job_status_ttl_s(), 600);
        assert_eq!((s.rate_limit_max(), s.rate_limit_window_s()), (100, 60));
        assert!(s.rate_limit_fail_open() && !s.trust_forwarded_for());
        assert_eq!(s.api_token(), None);
        assert!(s.inline_runs());
        assert_eq!((s.worker_id(), s.worker_memory_limit()), (None, None));
    }

    #[test]
    fn worker_ids_are_plain_names() {
        let s = Settings::from_pairs(&[("worker_id", "1-a9f3"), ("inline_runs", "false")]);
        assert_eq!(s.worker_id(), Some("1-a9f3"));
        assert!(!s.inline_runs());
        for bad in ["a%b", "a b", "x:y", &"w".repeat(65)] {
            assert!(parse_worker_id(bad).is_err(), "{bad}");
            assert_eq!(
                Settings::from_pairs(&[("worker_id", bad)]).worker_id(),
                None
            );
        }
        let cap = Settings::from_pairs(&[("worker_memory_limit", "268435456")]);
        assert_eq!(cap.worker_memory_limit(), Some(268_435_456));
    }

    #[test]
    fn each_setting_is_looked_up_once_on_first_use() {
        let seen = Rc::new(RefCell::new(Vec::new()));
        let log = seen.clone();
        let s = Settings::new(Box::new(move |name| {
            log.borrow_mut().push(name.to_string());
            (name == "api_token").then(|| "t0k".to_string())
        }));
        assert!(seen.borrow().is_empty(), "nothing is read up front");
        assert_eq!((s.api_token(), s.job_status_ttl_s()), (Some("t0k"), 600));
        assert_eq!((s.api_token(), s.job_status_ttl_s()), (Some("t0k"), 600));
        assert_eq!(*seen.borrow(), ["api_token", "job_status_ttl"]);
    }

    #[test]
    fn retention_in_days() {
        assert_eq!(Settings::default().job_retention_ms(), Some(7 * 86_400_000));
        let keep = Settings::from_pairs(&[("job_retention_days", "0")]);
        assert_eq!(keep.job_retention_ms(), None);
        let short = Settings::from_pairs(&[("job_retention_days", "0.0001")]);
        assert_eq!(short.job_retention_ms(), Some(8_640));
        let bad = Settings::from_pairs(&[("job_retention_days", "-1")]);
        assert_eq!(bad.job_retention_ms(), Some(7 * 86_400_000));
        assert!(parse_retention_days("soon").is_err());
    }

    #[test]
    fn parses_values() {
        let s = Settings::from_pairs(&[
            ("redis_url", " redis://127.0.0.1:7000 "),
            ("tool_cache_ttl", "5"),
            ("rate_limit_fail_open", "false"),
            ("trust_forwarded_for", "TRUE"),
            ("api_token", "s3cret"),
        ]);
        assert_eq!(s.redis_url(), "redis://127.0.0.1:7000");
        assert_eq!(s.tool_cache_ttl_s(), 5);
        assert!(!s.rate_limit_fail_open() && s.trust_forwarded_for());
        assert_eq!(s.api_token(), Some("s3cret"));
    }

    #[test]
    fn bad_values_keep_defaults_and_warn() {
        let s = Settings::from_pairs(&[
            ("tool_cache_ttl", "soon"),
            ("rate_limit_max", "0"),
            ("trust_forwarded_for", "maybe"),
        ]);
        assert_eq!(s.tool_cache_ttl_s(), 3600);
        assert_eq!(s.rate_limit_max(), 100);
        assert!(!s.trust_forwarded_for());
        let warning = parse_number("rate_limit_max", "0", 1, 100).unwrap_err();
        assert!(
            warning.contains("rate_limit_max") && warning.contains(">= 1"),
            "{warning}"
        );
        assert!(parse_flag("trust_forwarded_for", "maybe", false).is_err());
        assert_eq!(parse_number("tool_cache_ttl", " 0 ", 0, 3600), Ok(0));
    }

    #[test]
    fn empty_token_means_no_token() {
        assert_eq!(Settings::from_pairs(&[("api_token", "")]).api_token(), None);
    }

    #[test]
    fn each_variable_is_read_once_and_only_when_used() {
        let reads = Rc::new(RefCell::new(Vec::<String>::new()));
        let log = Rc::clone(&reads);
        let s = Settings::new(Box::new(move |name| {
            log.borrow_mut().push(name.to_string());
            None
        }));
        for _ in 0..3 {
            let _ = (s.redis_url(), s.rate_limit_max(), s.rate_limit_window_s());
        }
        assert_eq!(
            *reads.borrow(),
            ["redis_url", "rate_limit_max", "rate_limit_window"]
        );
    }
}
