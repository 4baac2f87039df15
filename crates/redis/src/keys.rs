//! Redis key and channel names (SPEC §5). Built only from validated values.

pub const TOOL_REGISTRY: &str = "tool_registry";
pub const JOB_UPDATES: &str = "job_updates";
/// Hash of counters for the stats route (cache hits/misses, rate-limit rejections).
pub const STATS: &str = "data20:stats";

/// `job:{uuid}:status`: the caller passes a parsed job id.
pub fn job_status(job_id: &impl std::fmt::Display) -> String {
    format!("job:{job_id}:status")
}

/// `api:{ip}`: the caller passes a parsed IP address.
pub fn rate_limit(ip: &std::net::IpAddr) -> String {
    format!("api:{ip}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_layout_matches_the_spec() {
        assert_eq!(job_status(&"0b6c"), "job:0b6c:status");
        let ip: std::net::IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(rate_limit(&ip), "api:127.0.0.1");
    }
}
