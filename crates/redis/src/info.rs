//! `INFO` parsing: the text reply into typed fields.

use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct RedisInfo {
    pub version: Option<String>,
    pub used_memory_bytes: Option<u64>,
    pub used_memory_human: Option<String>,
    pub connected_clients: Option<u64>,
    pub uptime_s: Option<u64>,
    /// Keys across all databases (`db0:keys=…`).
    pub keys: u64,
}

impl RedisInfo {
    pub fn parse(text: &str) -> RedisInfo {
        let fields: BTreeMap<&str, &str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(|l| l.split_once(':'))
            .collect();
        let num = |k: &str| fields.get(k).and_then(|v| v.parse().ok());
        let keys = fields
            .iter()
            .filter(|(k, _)| k.starts_with("db") && k[2..].chars().all(|c| c.is_ascii_digit()))
            .filter_map(|(_, v)| {
                v.split(',')
                    .find_map(|kv| kv.strip_prefix("keys="))
                    .and_then(|n| n.parse::<u64>().ok())
            })
            .sum();
        RedisInfo {
            version: fields.get("redis_version").map(|s| s.to_string()),
            used_memory_bytes: num("used_memory"),
            used_memory_human: fields.get("used_memory_human").map(|s| s.to_string()),
            connected_clients: num("connected_clients"),
            uptime_s: num("uptime_in_seconds"),
            keys,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_fields_we_show() {
        let text = "# Server\r\nredis_version:7.0.15\r\nuptime_in_seconds:42\r\n\r\n# Clients\r\nconnected_clients:3\r\n# Memory\r\nused_memory:1048576\r\nused_memory_human:1.00M\r\n# Keyspace\r\ndb0:keys=5,expires=2,avg_ttl=0\r\ndb3:keys=1,expires=0,avg_ttl=0\r\n";
        let info = RedisInfo::parse(text);
        assert_eq!(info.version.as_deref(), Some("7.0.15"));
        assert_eq!(info.uptime_s, Some(42));
        assert_eq!(info.connected_clients, Some(3));
        assert_eq!(info.used_memory_bytes, Some(1_048_576));
        assert_eq!(info.used_memory_human.as_deref(), Some("1.00M"));
        assert_eq!(info.keys, 6);
    }

    #[test]
    fn garbage_gives_empty_fields() {
        assert_eq!(RedisInfo::parse("nonsense"), RedisInfo::default());
    }
}
