//! Runtime settings, read from Spin variables (SPEC §6). Parsing is pure so that
//! defaults and bad values are unit-tested; `data20-http` feeds it Spin's variables.

/// The settings every component shares. Unset variables take the SPEC's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub redis_url: String,
    pub tool_cache_ttl_s: u64,
    pub job_status_ttl_s: u64,
    pub rate_limit_max: u64,
    pub rate_limit_window_s: u64,
    pub rate_limit_fail_open: bool,
    pub trust_forwarded_for: bool,
    /// `None` when the secret is unset or empty: POST routes are then open.
    pub api_token: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            redis_url: "redis://127.0.0.1:6379".into(),
            tool_cache_ttl_s: 3600,
            job_status_ttl_s: 600,
            rate_limit_max: 100,
            rate_limit_window_s: 60,
            rate_limit_fail_open: true,
            trust_forwarded_for: false,
            api_token: None,
        }
    }
}

/// Variable names, as declared in `spin.toml`.
pub const VARIABLES: [&str; 8] = [
    "redis_url",
    "tool_cache_ttl",
    "job_status_ttl",
    "rate_limit_max",
    "rate_limit_window",
    "rate_limit_fail_open",
    "trust_forwarded_for",
    "api_token",
];

impl Settings {
    /// Builds settings from a variable lookup. A value that does not parse keeps the
    /// default and is reported in the returned warnings, so a typo in a manifest never
    /// takes the API down.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> (Settings, Vec<String>) {
        let mut s = Settings::default();
        let mut warnings = Vec::new();
        let mut num = |name: &str, slot: &mut u64, min: u64| {
            if let Some(raw) = lookup(name).filter(|v| !v.trim().is_empty()) {
                match raw.trim().parse::<u64>() {
                    Ok(v) if v >= min => *slot = v,
                    _ => warnings.push(format!(
                        "variable {name}={raw:?} is not a whole number >= {min}; using {slot}"
                    )),
                }
            }
        };
        num("tool_cache_ttl", &mut s.tool_cache_ttl_s, 0);
        num("job_status_ttl", &mut s.job_status_ttl_s, 0);
        num("rate_limit_max", &mut s.rate_limit_max, 1);
        num("rate_limit_window", &mut s.rate_limit_window_s, 1);
        let mut flag = |name: &str, slot: &mut bool| {
            if let Some(raw) = lookup(name).filter(|v| !v.trim().is_empty()) {
                match raw.trim().to_ascii_lowercase().as_str() {
                    "true" | "1" | "yes" | "on" => *slot = true,
                    "false" | "0" | "no" | "off" => *slot = false,
                    _ => warnings.push(format!(
                        "variable {name}={raw:?} is not a boolean; using {slot}"
                    )),
                }
            }
        };
        flag("rate_limit_fail_open", &mut s.rate_limit_fail_open);
        flag("trust_forwarded_for", &mut s.trust_forwarded_for);
        if let Some(url) = lookup("redis_url").filter(|v| !v.trim().is_empty()) {
            s.redis_url = url.trim().to_string();
        }
        s.api_token = lookup("api_token").filter(|t| !t.is_empty());
        (s, warnings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(pairs: &[(&str, &str)]) -> (Settings, Vec<String>) {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_follow_the_spec() {
        let (s, w) = from(&[]);
        assert_eq!(s, Settings::default());
        assert!(w.is_empty());
        assert_eq!(s.tool_cache_ttl_s, 3600);
        assert_eq!(s.job_status_ttl_s, 600);
        assert_eq!((s.rate_limit_max, s.rate_limit_window_s), (100, 60));
        assert!(s.rate_limit_fail_open && !s.trust_forwarded_for);
    }

    #[test]
    fn parses_values() {
        let (s, w) = from(&[
            ("redis_url", "redis://127.0.0.1:7000"),
            ("tool_cache_ttl", "5"),
            ("rate_limit_fail_open", "false"),
            ("trust_forwarded_for", "TRUE"),
            ("api_token", "s3cret"),
        ]);
        assert!(w.is_empty());
        assert_eq!(s.redis_url, "redis://127.0.0.1:7000");
        assert_eq!(s.tool_cache_ttl_s, 5);
        assert!(!s.rate_limit_fail_open && s.trust_forwarded_for);
        assert_eq!(s.api_token.as_deref(), Some("s3cret"));
    }

    #[test]
    fn bad_values_keep_defaults_and_warn() {
        let (s, w) = from(&[
            ("tool_cache_ttl", "soon"),
            ("rate_limit_max", "0"),
            ("trust_forwarded_for", "maybe"),
        ]);
        assert_eq!(s.tool_cache_ttl_s, 3600);
        assert_eq!(s.rate_limit_max, 100);
        assert!(!s.trust_forwarded_for);
        assert_eq!(w.len(), 3, "{w:?}");
    }

    #[test]
    fn empty_token_means_no_token() {
        let (s, _) = from(&[("api_token", "")]);
        assert_eq!(s.api_token, None);
    }
}
