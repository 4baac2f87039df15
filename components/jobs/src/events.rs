//! GET /api/jobs/{id}/events: Server-Sent Events. Replays the job's recorded events
//! (from SQLite, so it works whether the job is queued, running or long finished),
//! then follows new ones until the job ends, and closes. `Last-Event-ID` resumes.

use data20_domain::{ApiError, JobId};
use data20_http::{error, io, Ctx};
use data20_jobs::{db_error, Jobs};
use data20_sqlite::Db;
use spin_sdk::http::{Request, Response, ResponseOutparam};
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

pub async fn stream(ctx: &Ctx, req: &Request, raw_id: &str, out: ResponseOutparam) {
    let settings = data20_http::settings();
    let redis = data20_http::redis(&settings);
    let (rate, admitted) = data20_http::gate::admit(req, &settings, &redis, None);
    let opened = admitted.and_then(|_| {
        let id = JobId::parse(raw_id)?;
        let last_seq = match data20_http::header(req, "last-event-id")? {
            None => 0,
            Some(v) => v.trim().parse::<i64>().map_err(|_| {
                ApiError::BadRequest("Last-Event-ID must be a number this stream sent".into())
            })?,
        };
        let db = Db::open().map_err(db_error)?;
        db.job(&id)
            .map_err(db_error)?
            .ok_or_else(|| ApiError::NotFound(format!("no job with id {id}")))?;
        Ok::<_, ApiError>((id, last_seq, db))
    });
    let (id, mut last_seq, db) = match opened {
        Ok(v) => v,
        Err(e) => {
            let mut resp = error(&e);
            rate.apply(&mut resp);
            return io::send(out, ctx.finish(resp)).await;
        }
    };
    let mut head = Response::builder()
        .status(200)
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .header("x-accel-buffering", "no")
        .build();
    rate.apply(&mut head);
    let Some(mut sink) = io::Stream::start(out, ctx.finish(head)) else {
        return;
    };
    let started = Instant::now();
    let mut last_write = Instant::now();
    let mut last_stale_check = Instant::now();
    if !sink.write(b"retry: 1000\n\n".to_vec()).await {
        return;
    }
    while started.elapsed() < MAX_STREAM {
        let events = match db.events_after(&id, last_seq) {
            Ok(e) => e,
            Err(e) => {
                let _ = sink
                    .write(
                        format!(
                            "event: error\ndata: {}\n\n",
                            serde_json::json!({"error": e.to_string()})
                        )
                        .into_bytes(),
                    )
                    .await;
                return;
            }
        };
        let mut ended = false;
        for (seq, payload) in events {
            last_seq = seq;
            let kind = serde_json::from_str::<serde_json::Value>(&payload)
                .ok()
                .and_then(|v| v["event"].as_str().map(str::to_string))
                .unwrap_or_else(|| "message".into());
            ended |= matches!(
                kind.as_str(),
                "job_completed" | "job_failed" | "job_cancelled"
            );
            if !sink
                .write(format!("id: {seq}\nevent: {kind}\ndata: {payload}\n\n").into_bytes())
                .await
            {
                return;
            }
            last_write = Instant::now();
        }
        if ended {
            return;
        }
        if last_write.elapsed() > KEEPALIVE {
            if !sink.write(b": keep-alive\n\n".to_vec()).await {
                return;
            }
            last_write = Instant::now();
        }
        // Staleness moves in seconds: look once a second, not on every poll. Under a
        // supervisor (`inline_runs` off) the supervisor recovers lost jobs and the
        // stream just goes on; without one, see below.
        if last_stale_check.elapsed() >= STALE_CHECK && settings.inline_runs() {
            let stale = db.job(&id).ok().flatten().filter(Jobs::is_stale);
            if let Some(stale) = stale {
                // A watched job nobody runs any more: end the stream (returning drops
                // the sink), and hand the job on (see `recover_stale`). The client
                // reconnects (`retry`) with Last-Event-ID and sees it end.
                crate::routes::recover_stale(db, &settings, &redis, &stale);
                return;
            }
            last_stale_check = Instant::now();
        }
        std::thread::sleep(POLL);
    }
}
