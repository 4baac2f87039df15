//! Jobs: ids, statuses, the status document, lifecycle events and list pagination.

use crate::error::ApiError;
use crate::registry::ToolName;
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

/// A job id: a UUID (v7 for new jobs, so ids sort by creation time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(Uuid);

impl JobId {
    pub fn new() -> JobId {
        JobId(Uuid::now_v7())
    }

    /// A new job's id, created at `created_ms` (Unix milliseconds): a UUID v7 whose
    /// timestamp is exactly that instant. Ids of jobs created so then sort as
    /// `(created_ms, id)` does, so the newest-first list of all jobs reads the primary
    /// key's index instead of one of its own (migration 9).
    pub fn created_at(created_ms: i64) -> JobId {
        let ms = u64::try_from(created_ms).unwrap_or(0);
        let ts = uuid::Timestamp::from_unix(
            uuid::NoContext,
            ms / 1000,
            u32::try_from(ms % 1000).unwrap_or(0) * 1_000_000,
        );
        JobId(Uuid::new_v7(ts))
    }

    /// Accepts the hyphenated form only, in either case; renders lower-case.
    pub fn parse(raw: &str) -> Result<JobId, ApiError> {
        if raw.len() != 36 {
            return Err(bad_id());
        }
        Uuid::try_parse(raw).map(JobId).map_err(|_| bad_id())
    }
}

impl Default for JobId {
    fn default() -> Self {
        JobId::new()
    }
}

fn bad_id() -> ApiError {
    ApiError::BadRequest(
        "job id must be a UUID such as 0192f0c1-7b52-7cc0-8f3e-6f1c2a3b4c5d".into(),
    )
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl Serialize for JobId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for JobId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        JobId::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Queued,
    Running,
    Completed,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub const ALL: [JobStatus; 5] = [
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Completed,
        JobStatus::Failed,
        JobStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(raw: &str) -> Result<JobStatus, ApiError> {
        JobStatus::ALL
            .into_iter()
            .find(|s| s.as_str() == raw)
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "status must be one of queued, running, completed, failed, cancelled; got {:?}",
                    raw.chars().take(40).collect::<String>()
                ))
            })
    }

    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobStatus::Completed | JobStatus::Failed | JobStatus::Cancelled
        )
    }

    /// Whether a retry may start from this status (failed or cancelled).
    pub fn is_retryable(self) -> bool {
        matches!(self, JobStatus::Failed | JobStatus::Cancelled)
    }
}

/// An output file as listed in a job's status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputFile {
    pub name: String,
    pub content_type: String,
    pub size: u64,
    pub url: String,
}

/// The job status document: the body of GET /api/jobs/{id} and the value cached at
/// `job:{id}:status`, so a cache HIT is served as stored bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobView {
    pub job_id: JobId,
    pub tool: String,
    pub status: JobStatus,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub attempts: i64,
    /// `worker` (handed to the Redis-trigger worker) or `inline` (run by the API itself).
    pub dispatch: String,
    #[serde(default)]
    pub output_files: Vec<OutputFile>,
    /// How far a running job is, as its tool last reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    /// A cancel was asked for while the job ran: it stops at its tool's next check.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cancel_requested: bool,
    /// The failed or cancelled job this one retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_of: Option<JobId>,
    /// The job that retries this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retried_by: Option<JobId>,
    /// The id of the key that created it (closed mode only): what keeps a cached
    /// status document from being served to another key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    pub links: JobLinks,
}

/// A running job's progress: `fraction` in 0..=1 and a short message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    pub fraction: f64,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobLinks {
    #[serde(rename = "self")]
    pub self_: String,
    pub events: String,
    pub outputs: String,
}

impl JobLinks {
    pub fn for_job(id: &JobId) -> JobLinks {
        JobLinks {
            self_: format!("/api/jobs/{id}"),
            events: format!("/api/jobs/{id}/events"),
            outputs: format!("/api/jobs/{id}/outputs/"),
        }
    }
}

pub fn output_url(id: &JobId, name: &str) -> String {
    format!("/api/jobs/{id}/outputs/{name}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobEventKind {
    JobCreated,
    JobStarted,
    JobProgress,
    JobCompleted,
    JobFailed,
    JobCancelled,
}

impl JobEventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobEventKind::JobCreated => "job_created",
            JobEventKind::JobStarted => "job_started",
            JobEventKind::JobCompleted => "job_completed",
            JobEventKind::JobFailed => "job_failed",
            JobEventKind::JobProgress => "job_progress",
            JobEventKind::JobCancelled => "job_cancelled",
        }
    }
}

/// A lifecycle event, published on `job_updates` and kept in SQLite for the SSE route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobEvent {
    pub event: JobEventKind,
    pub job_id: JobId,
    pub tool: String,
    pub status: JobStatus,
    /// RFC 3339 UTC.
    pub timestamp: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_files: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// With `job_progress`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    /// Who published it (`api`, `worker`, `inline`): the worker ignores its own events.
    pub source: String,
}

/// Listing filters and pagination, validated from the query string.
#[derive(Debug, Clone, PartialEq)]
pub struct ListFilter {
    pub status: Option<JobStatus>,
    pub tool: Option<ToolName>,
    pub limit: u32,
    pub cursor: Option<Cursor>,
}

pub const DEFAULT_LIST_LIMIT: u32 = 50;
pub const MAX_LIST_LIMIT: u32 = 500;

impl ListFilter {
    pub fn parse(
        status: Option<&str>,
        tool: Option<&str>,
        limit: Option<&str>,
        cursor: Option<&str>,
    ) -> Result<ListFilter, ApiError> {
        let limit = match limit {
            None => DEFAULT_LIST_LIMIT,
            Some(raw) => match raw.parse::<u32>() {
                Ok(n) if (1..=MAX_LIST_LIMIT).contains(&n) => n,
                _ => {
                    return Err(ApiError::BadRequest(format!(
                        "limit must be a whole number from 1 to {MAX_LIST_LIMIT}"
                    )))
                }
            },
        };
        Ok(ListFilter {
            status: status.map(JobStatus::parse).transpose()?,
            tool: tool
                .map(|t| ToolName::parse(t).map_err(ApiError::BadRequest))
                .transpose()?,
            limit,
            cursor: cursor.map(Cursor::decode).transpose()?,
        })
    }
}

/// Keyset position: the last row of a page, `(created_ms, id)`. Opaque to clients
/// (URL-safe base64), strictly validated when it comes back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub created_ms: i64,
    pub id: JobId,
}

impl Cursor {
    pub fn encode(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(format!("{}.{}", self.created_ms, self.id))
    }

    pub fn decode(raw: &str) -> Result<Cursor, ApiError> {
        let bad = || ApiError::BadRequest("cursor is not one this API handed out".into());
        if raw.len() > 128 {
            return Err(bad());
        }
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(raw)
            .map_err(|_| bad())?;
        let text = String::from_utf8(bytes).map_err(|_| bad())?;
        let (ms, id) = text.split_once('.').ok_or_else(bad)?;
        Ok(Cursor {
            created_ms: ms.parse().map_err(|_| bad())?,
            id: JobId::parse(id).map_err(|_| bad())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_parse_strictly() {
        let id = JobId::new();
        assert_eq!(JobId::parse(&id.to_string()), Ok(id));
        assert_eq!(JobId::parse(&id.to_string().to_uppercase()), Ok(id));
        for bad in [
            "",
            "x",
            "../etc",
            "0192f0c17b527cc08f3e6f1c2a3b4c5d",
            "{0192f0c1-7b52-7cc0-8f3e-6f1c2a3b4c5d}",
        ] {
            assert_eq!(JobId::parse(bad).unwrap_err().status(), 400, "{bad}");
        }
    }

    /// The instant a v7 id carries, in Unix milliseconds.
    fn carried_ms(id: &JobId) -> Option<u64> {
        let (secs, nanos) = id.0.get_timestamp()?.to_unix();
        Some(secs * 1000 + u64::from(nanos / 1_000_000))
    }

    #[test]
    fn an_id_created_at_an_instant_carries_it_and_sorts_as_created_ms_then_id() {
        let ms = 1_764_000_000_123;
        let ids: Vec<JobId> = (0..50).map(|_| JobId::created_at(ms)).collect();
        assert!(ids.iter().all(|id| carried_ms(id) == Some(ms as u64)));
        assert_eq!(carried_ms(&JobId::created_at(0)), Some(0));
        // The string order (SQLite compares ids as text) is (created_ms, id) order.
        let later = JobId::created_at(ms + 1);
        let earlier = JobId::created_at(ms - 1);
        for id in &ids {
            assert!(earlier.to_string() < id.to_string());
            assert!(id.to_string() < later.to_string());
        }
        let mut by_text = ids.clone();
        by_text.sort_by_key(|id| id.to_string());
        let mut by_value = ids;
        by_value.sort();
        assert_eq!(by_text, by_value);
    }

    #[test]
    fn new_ids_sort_by_creation() {
        let a = JobId::new();
        let b = JobId::new();
        assert!(a.to_string() < b.to_string());
    }

    #[test]
    fn statuses_round_trip() {
        for s in JobStatus::ALL {
            assert_eq!(JobStatus::parse(s.as_str()), Ok(s));
        }
        assert!(JobStatus::parse("done").is_err());
        assert!(JobStatus::Completed.is_final() && !JobStatus::Running.is_final());
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = Cursor {
            created_ms: 1_700_000_000_000,
            id: JobId::new(),
        };
        assert_eq!(Cursor::decode(&c.encode()), Ok(c));
        for bad in ["", "!!!", "bm9wZQ", &"A".repeat(200)] {
            assert!(Cursor::decode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn list_filters_validate() {
        let f = ListFilter::parse(None, None, None, None).unwrap();
        assert_eq!(f.limit, 50);
        assert_eq!(
            ListFilter::parse(None, None, Some("500"), None)
                .unwrap()
                .limit,
            500
        );
        for limit in ["0", "501", "-1", "ten", ""] {
            assert!(
                ListFilter::parse(None, None, Some(limit), None).is_err(),
                "{limit}"
            );
        }
        assert!(ListFilter::parse(Some("nope"), None, None, None).is_err());
        assert!(ListFilter::parse(None, Some("Bad Tool"), None, None).is_err());
        let f = ListFilter::parse(Some("failed"), Some("build_graph"), Some("3"), None).unwrap();
        assert_eq!(f.status, Some(JobStatus::Failed));
    }

    #[test]
    fn events_serialise_per_spec() {
        let e = JobEvent {
            event: JobEventKind::JobCompleted,
            job_id: JobId::new(),
            tool: "build_graph".into(),
            status: JobStatus::Completed,
            timestamp: crate::time::rfc3339_ms(0),
            duration_ms: Some(12),
            output_files: Some(vec!["graph.html".into()]),
            error: None,
            progress: None,
            source: "worker".into(),
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["event"], "job_completed");
        assert_eq!(v["status"], "completed");
        assert_eq!(v["timestamp"], "1970-01-01T00:00:00.000Z");
        assert!(v.get("error").is_none() && v.get("progress").is_none());
        let progress = JobEvent {
            event: JobEventKind::JobProgress,
            status: JobStatus::Running,
            progress: Some(Progress {
                fraction: 0.5,
                message: "layout: iteration 40 of 80".into(),
            }),
            ..e
        };
        let v = serde_json::to_value(&progress).unwrap();
        assert_eq!(v["event"], "job_progress");
        assert_eq!(v["progress"]["fraction"], 0.5);
        assert_eq!(JobEventKind::JobCancelled.as_str(), "job_cancelled");
        assert!(JobStatus::Cancelled.is_final() && JobStatus::Cancelled.is_retryable());
        assert!(!JobStatus::Completed.is_retryable());
        assert_eq!(JobStatus::parse("cancelled"), Ok(JobStatus::Cancelled));
    }
}
