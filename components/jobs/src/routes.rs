//! Buffered routes: status (Redis first), list (keyset pages) and outputs.

use data20_domain::access::{Caller, Scope};
use data20_domain::registry::is_safe_file_name;
use data20_domain::{ApiError, JobId, ListFilter};
use data20_http::gate::{gated, Cached, Need};
use data20_http::{error, Query};
use data20_http::{Params, Request, Response};
use data20_jobs::{db_error, Jobs};
use data20_redis::gate::CacheRead;
use data20_redis::keys;
use data20_sqlite::Db;
use serde_json::json;
use std::future::Future;

fn or_error(r: Result<Response, ApiError>) -> Response {
    r.unwrap_or_else(|e| error(&e))
}

/// GET /api/jobs/{id}: the cached status document as stored bytes (HIT), else SQLite
/// (MISS, and the cache is refilled; BYPASS when Redis is down). A job nobody is
/// running any more is handed to the workers here, on the read that notices it.
pub async fn status(req: &Request, params: &Params) -> Response {
    let settings = data20_http::settings().await;
    let redis = data20_http::redis(&settings);
    let id = match JobId::parse(params.get("id").unwrap_or_default()) {
        Ok(id) => id,
        Err(e) => return gated(req, &settings, &redis, None, READ, async |_, _| error(&e)).await,
    };
    let key = keys::job_status(&id);
    let read = CacheRead {
        key: &key,
        counter: "job_status",
    };
    gated(
        req,
        &settings,
        &redis,
        Some(read),
        READ,
        async |cached, caller| {
            or_error(
                async {
                    let cache = match cached {
                        // Closed mode: the document names its owner; another key's job is
                        // served the 404 a missing one gets.
                        Cached::Hit(bytes)
                            if !caller.sees_all() && !cached_owner_is(&bytes, &caller) =>
                        {
                            return Err(ApiError::NotFound(format!("no job with id {id}")));
                        }
                        Cached::Hit(bytes) => {
                            let mut resp = data20_http::json_bytes(200, bytes);
                            resp.set_header("x-cache", "HIT");
                            return Ok(resp);
                        }
                        Cached::Miss => "MISS",
                        Cached::Bypass => "BYPASS",
                    };
                    let db = Db::open().await.map_err(db_error)?;
                    let jobs = Jobs {
                        db: &db,
                        redis: &redis,
                        settings: &settings,
                        source: "api",
                    };
                    let record = jobs.load(&id).await?;
                    caller.check_sees(record.owner.as_deref(), &id)?;
                    let mut resp = data20_http::json(200, &record.view());
                    resp.set_header("x-cache", cache);
                    if Jobs::is_stale(&record) {
                        if let Some(work) = recover_stale(db, &settings, &redis, &record).await {
                            resp = resp.then(work);
                        }
                    } else if cache == "MISS" {
                        jobs.cache_status(&record).await;
                    }
                    Ok(resp)
                }
                .await,
            )
        },
    )
    .await
}

const READ: Need = Need::Scope(Scope::Read);

/// Whether a cached status document is `caller`'s job (its `owner` is the caller's key).
fn cached_owner_is(bytes: &[u8], caller: &Caller) -> bool {
    #[derive(serde::Deserialize)]
    struct Owned<'a> {
        #[serde(borrow)]
        owner: Option<std::borrow::Cow<'a, str>>,
    }
    serde_json::from_slice::<Owned<'_>>(bytes).is_ok_and(|doc| caller.may_see(doc.owner.as_deref()))
}

/// A job nobody runs any more, seen by a read. Reads never run tool code where a
/// worker exists: with `inline_runs` off (`scripts/up`, whose supervisor recovers lost
/// jobs itself) this does nothing; otherwise it wakes the workers, and only when none
/// heard (no worker at all, as on Fermyon Cloud, or Redis down) runs the job here, once
/// the answer (its state as found) has gone out, so a tool that traps or never ends
/// cannot become this read's 500 or hang. Answers that run, for after the response.
pub async fn recover_stale(
    db: Db,
    settings: &data20_domain::Settings,
    redis: &data20_redis::Redis,
    record: &data20_sqlite::jobs::JobRecord,
) -> Option<impl Future<Output = ()> + 'static> {
    if !settings.inline_runs() {
        return None;
    }
    let waker = Jobs {
        db: &db,
        redis,
        settings,
        source: "api",
    };
    if waker.wake(None).await.unwrap_or(0) > 0 {
        return None;
    }
    Some(run_inline(
        db,
        record.id,
        record.tool.clone(),
        "recovering job",
    ))
}

/// Runs job `id` here, for after a response: the registry fetched, the run claimed and
/// done with handles of its own; a failure is logged as "`what` {id} failed".
pub async fn run_inline(db: Db, id: JobId, tool: String, what: &'static str) {
    let settings = data20_http::settings().await;
    Jobs::detached(db, settings, "api", async |jobs| {
        let done = match data20_http::registry::fetch(jobs.settings, jobs.redis).await {
            Ok(registry) => jobs.run(&registry, &id, &tool).await,
            Err(e) => Err(e),
        };
        if let Err(e) = done {
            data20_http::log_warn(&format!("{what} {id} failed: {e}"));
        }
    })
    .await
}

/// GET /api/jobs?status=&tool=&limit=&cursor=
pub async fn list(req: &Request) -> Response {
    let settings = data20_http::settings().await;
    let redis = data20_http::redis(&settings);
    gated(req, &settings, &redis, None, READ, async |_, caller| {
        list_jobs(req, &caller).await
    })
    .await
}

async fn list_jobs(req: &Request, caller: &Caller) -> Response {
    or_error(
        async {
            let q = Query::parse(req.query(), &["status", "tool", "limit", "cursor", "owner"])?;
            // A key sees its own jobs; open mode and admin keys see all, or one owner's.
            let owner = match (caller.sees_all(), q.get("owner")) {
                (true, owner) => owner,
                (false, Some(_)) => {
                    return Err(ApiError::Forbidden(
                        "only an admin key may filter jobs by owner".into(),
                    ))
                }
                (false, None) => caller.owner(),
            };
            let filter = ListFilter::parse(
                q.get("status"),
                q.get("tool"),
                q.get("limit"),
                q.get("cursor"),
            )?;
            let db = Db::open().await.map_err(db_error)?;
            let (rows, more) = db.list_jobs(&filter, owner).await.map_err(db_error)?;
            let next_cursor = more.then(|| {
                let last = &rows[rows.len() - 1];
                data20_domain::Cursor {
                    created_ms: last.created_ms,
                    id: last.id,
                }
                .encode()
            });
            let jobs: Vec<_> = rows.iter().map(|r| r.view()).collect();
            Ok(data20_http::json(
                200,
                &json!({ "jobs": jobs, "count": jobs.len(), "next_cursor": next_cursor }),
            ))
        }
        .await,
    )
}

/// GET /api/jobs/{id}/outputs/{name}: only names the job actually wrote.
pub async fn output(req: &Request, params: &Params) -> Response {
    let settings = data20_http::settings().await;
    let redis = data20_http::redis(&settings);
    gated(req, &settings, &redis, None, READ, async |_, caller| {
        output_file(params, &caller).await
    })
    .await
}

async fn output_file(params: &Params, caller: &Caller) -> Response {
    or_error(async {
        let id = JobId::parse(params.get("id").unwrap_or_default())?;
        let name = params.get("name").unwrap_or_default();
        if !is_safe_file_name(name) {
            return Err(ApiError::NotFound("no such output".into()));
        }
        let db = Db::open().await.map_err(db_error)?;
        if !caller.sees_all() {
            let job = db.job(&id).await.map_err(db_error)?;
            caller.check_sees(job.as_ref().and_then(|j| j.owner.as_deref()), &id)?;
        }
        match db.job_output(&id, name).await.map_err(db_error)? {
            Some((content_type, bytes)) => {
                let mut resp = Response::new(200, bytes);
                resp.set_header("content-type", content_type);
                resp.set_header("x-content-type-options", "nosniff");
                // Outputs hold user data: keep the API's origin out of their reach.
                resp.set_header("content-security-policy", "sandbox allow-scripts; default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:");
                resp.set_header("cache-control", "private, max-age=3600, immutable");
                Ok(resp)
            }
            None => {
                // Tell "no such job" from "no such file" for the client's sake.
                db.job(&id)
                    .await
                    .map_err(db_error)?
                    .ok_or_else(|| ApiError::NotFound(format!("no job with id {id}")))?;
                Err(ApiError::NotFound(format!(
                    "job {id} has no output named {name:?}"
                )))
            }
        }
    }
    .await)
}
