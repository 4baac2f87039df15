//! Aggregates for the stats route, computed in SQLite (no row is loaded to count it).

use crate::Value;
use crate::{Db, DbError};
use serde::Serialize;
use std::collections::BTreeMap;

/// The count and mean of completed jobs' durations. Naming the duration index makes a
/// database without it a schema error, which migrates it (see `Db::with_schema`).
pub const DURATION_SUMMARY_SQL: &str = "SELECT COUNT(duration_ms) AS n, AVG(duration_ms) AS mean \
     FROM jobs INDEXED BY jobs_by_duration \
     WHERE status = 'completed' AND duration_ms IS NOT NULL";

/// The completed jobs' duration at an offset, in duration order (a percentile).
pub const DURATION_AT_OFFSET_SQL: &str =
    "SELECT duration_ms FROM jobs WHERE status = 'completed' AND duration_ms IS NOT NULL \
     ORDER BY duration_ms LIMIT 1 OFFSET ?";

#[derive(Debug, Default, Serialize, PartialEq)]
pub struct JobStats {
    pub total: i64,
    pub by_status: BTreeMap<String, i64>,
    pub by_tool: BTreeMap<String, BTreeMap<String, i64>>,
    pub durations_ms: Durations,
}

/// Durations of completed jobs.
#[derive(Debug, Default, Serialize, PartialEq)]
pub struct Durations {
    pub count: i64,
    pub mean: Option<f64>,
    pub p50: Option<i64>,
    pub p95: Option<i64>,
}

/// The nearest-rank percentile's offset into `n` sorted values.
pub fn percentile_offset(n: i64, p: f64) -> i64 {
    if n <= 0 {
        return 0;
    }
    (((p * n as f64).ceil() as i64) - 1).clamp(0, n - 1)
}

impl Db {
    pub async fn job_stats(&self) -> Result<JobStats, DbError> {
        self.with_schema(async |db: &Db| {
            let mut stats = JobStats::default();
            let r = db
                .execute(
                    "SELECT tool, status, COUNT(*) AS n FROM jobs GROUP BY tool, status",
                    &[],
                )
                .await?;
            for row in r.rows() {
                let (Some(tool), Some(status), Some(n)) = (
                    row.get::<&str>("tool"),
                    row.get::<&str>("status"),
                    row.get::<i64>("n"),
                ) else {
                    continue;
                };
                stats.total += n;
                *stats.by_status.entry(status.to_string()).or_default() += n;
                let per_tool = stats.by_tool.entry(tool.to_string()).or_default();
                *per_tool.entry(status.to_string()).or_default() += n;
                *per_tool.entry("total".to_string()).or_default() += n;
            }
            for s in ["queued", "running", "completed", "failed", "cancelled"] {
                stats.by_status.entry(s.to_string()).or_default();
            }
            let r = db.execute(DURATION_SUMMARY_SQL, &[]).await?;
            let row = r.rows().next();
            let n = row.as_ref().and_then(|r| r.get::<i64>("n")).unwrap_or(0);
            let mean = row.as_ref().and_then(|r| r.get::<f64>("mean"));
            let pick = async |p: f64| -> Result<Option<i64>, DbError> {
                if n == 0 {
                    return Ok(None);
                }
                let r = db
                    .execute(
                        DURATION_AT_OFFSET_SQL,
                        &[Value::Integer(percentile_offset(n, p))],
                    )
                    .await?;
                let v = r
                    .rows()
                    .next()
                    .and_then(|row| row.get::<i64>("duration_ms"));
                Ok(v)
            };
            stats.durations_ms = Durations {
                count: n,
                mean: mean.map(|m| (m * 100.0).round() / 100.0),
                p50: pick(0.5).await?,
                p95: pick(0.95).await?,
            };
            Ok(stats)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        assert_eq!(percentile_offset(0, 0.5), 0);
        assert_eq!(percentile_offset(1, 0.95), 0);
        assert_eq!(percentile_offset(10, 0.5), 4); // 5th of 10
        assert_eq!(percentile_offset(10, 0.95), 9); // 10th of 10
        assert_eq!(percentile_offset(100, 0.95), 94);
        assert_eq!(percentile_offset(3, 1.0), 2);
    }
}
