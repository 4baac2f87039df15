//! GET /api/jobs/{id}/events: Server-Sent Events. Replays the job's recorded events
//! (from SQLite, so it works whether the job is queued, running or long finished),
//! then follows new ones until the job ends, and closes. `Last-Event-ID` resumes.

use data20_domain::access::{Caller, Scope};
use data20_domain::{ApiError, JobId, Settings};
use data20_http::gate::Need;
use data20_http::{error, Request, Response};
use data20_jobs::{db_error, Jobs};
use data20_redis::Redis;
use data20_sqlite::jobs::JobRecord;
use data20_sqlite::Db;
use futures::channel::oneshot;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

const POLL: Duration = Duration::from_millis(100);
const STALE_CHECK: Duration = Duration::from_secs(1);
const KEEPALIVE: Duration = Duration::from_secs(15);
/// A stream never outlives this; clients reconnect with `Last-Event-ID`.
const MAX_STREAM: Duration = Duration::from_secs(300);

/// The raw id segment when `path` is `/api/jobs/{id}/events`.
pub fn route(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/api/jobs/")?;
    let id = rest.strip_suffix("/events")?;
    (!id.contains('/')).then_some(id)
}

pub async fn stream(req: &Request, raw_id: &str) -> Response {
    let settings = data20_http::settings().await;
    let redis = data20_http::redis(&settings);
    let need = Need::Scope(Scope::Read);
    let (rate, admitted) = data20_http::gate::admit(req, &settings, &redis, None, need).await;
    let opened = match admitted {
        Ok((_, caller)) => open(req, raw_id, &caller).await,
        Err(e) => Err(e),
    };
    let (id, last_seq, db) = match opened {
        Ok(v) => v,
        Err(e) => {
            let mut resp = error(&e);
            rate.apply(&mut resp);
            return resp;
        }
    };
    // A watched job found stale ends the stream and is handed on after it (see
    // `recover_stale`): the client reconnects (`retry`) with Last-Event-ID and sees it end.
    let (stale_tx, stale_rx) = oneshot::channel::<(Db, JobRecord)>();
    let follow = Follow {
        db: Some(db),
        id,
        last_seq,
        inline_runs: settings.inline_runs(),
        started: Instant::now(),
        last_write: Instant::now(),
        last_stale_check: Instant::now(),
        pending: VecDeque::from([b"retry: 1000\n\n".to_vec()]),
        done: false,
        stale_tx: Some(stale_tx),
    };
    let chunks = futures::stream::unfold(follow, |mut f| async move {
        loop {
            if let Some(chunk) = f.pending.pop_front() {
                return Some((chunk, f));
            }
            if f.done {
                return None;
            }
            f.step().await;
        }
    });
    let mut head = Response::stream(200, chunks)
        .with_header("content-type", "text/event-stream")
        .with_header("cache-control", "no-cache")
        .with_header("x-accel-buffering", "no");
    rate.apply(&mut head);
    head.then(async move {
        if let Ok((db, stale)) = stale_rx.await {
            let settings: Settings = data20_http::settings().await;
            let redis = Redis::from_settings(&settings);
            if let Some(work) = crate::routes::recover_stale(db, &settings, &redis, &stale).await {
                work.await;
            }
        }
    })
}

async fn open(req: &Request, raw_id: &str, caller: &Caller) -> Result<(JobId, i64, Db), ApiError> {
    let id = JobId::parse(raw_id)?;
    let last_seq = match data20_http::header(req, "last-event-id")? {
        None => 0,
        Some(v) => v.trim().parse::<i64>().map_err(|_| {
            ApiError::BadRequest("Last-Event-ID must be a number this stream sent".into())
        })?,
    };
    let db = Db::open().await.map_err(db_error)?;
    let job = db
        .job(&id)
        .await
        .map_err(db_error)?
        .ok_or_else(|| ApiError::NotFound(format!("no job with id {id}")))?;
    caller.check_sees(job.owner.as_deref(), &id)?;
    Ok((id, last_seq, db))
}

/// A stream's state between polls of the job's events.
struct Follow {
    db: Option<Db>,
    id: JobId,
    last_seq: i64,
    inline_runs: bool,
    started: Instant,
    last_write: Instant,
    last_stale_check: Instant,
    pending: VecDeque<Vec<u8>>,
    done: bool,
    stale_tx: Option<oneshot::Sender<(Db, JobRecord)>>,
}

impl Follow {
    /// One poll: queues what is new, or waits a little.
    async fn step(&mut self) {
        let Some(db) = self.db.as_ref() else {
            self.done = true;
            return;
        };
        if self.started.elapsed() >= MAX_STREAM {
            self.done = true;
            return;
        }
        let events = match db.events_after(&self.id, self.last_seq).await {
            Ok(e) => e,
            Err(e) => {
                self.pending.push_back(
                    format!(
                        "event: error\ndata: {}\n\n",
                        serde_json::json!({"error": e.to_string()})
                    )
                    .into_bytes(),
                );
                self.done = true;
                return;
            }
        };
        let mut ended = false;
        for (seq, payload) in events {
            self.last_seq = seq;
            let kind = serde_json::from_str::<serde_json::Value>(&payload)
                .ok()
                .and_then(|v| v["event"].as_str().map(str::to_string))
                .unwrap_or_else(|| "message".into());
            ended |= matches!(
                kind.as_str(),
                "job_completed" | "job_failed" | "job_cancelled"
            );
            self.pending
                .push_back(format!("id: {seq}\nevent: {kind}\ndata: {payload}\n\n").into_bytes());
            self.last_write = Instant::now();
        }
        if ended {
            self.done = true;
            return;
        }
        if !self.pending.is_empty() {
            return;
        }
        if self.last_write.elapsed() > KEEPALIVE {
            self.pending.push_back(b": keep-alive\n\n".to_vec());
            self.last_write = Instant::now();
            return;
        }
        // Staleness moves in seconds: look once a second, not on every poll. Under a
        // supervisor (`inline_runs` off) the supervisor recovers lost jobs and the
        // stream just goes on.
        if self.last_stale_check.elapsed() >= STALE_CHECK && self.inline_runs {
            let stale = db.job(&self.id).await.ok().flatten().filter(Jobs::is_stale);
            if let Some(stale) = stale {
                if let (Some(tx), Some(db)) = (self.stale_tx.take(), self.db.take()) {
                    let _ = tx.send((db, stale));
                }
                self.done = true;
                return;
            }
            self.last_stale_check = Instant::now();
        }
        // Yields to the instance's other requests while it waits.
        data20_host::time::sleep(POLL).await;
    }
}
