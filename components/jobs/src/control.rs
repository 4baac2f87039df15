//! Job control: POST /api/jobs/{id}/cancel and POST /api/jobs/{id}/retry. Both need
//! the bearer token when `api_token` is set, as POST /api/run does.

use data20_domain::access::Scope;
use data20_domain::{ApiError, JobId};
use data20_http::error;
use data20_http::gate::{gated, Need};
use data20_http::{Request, Response};
use data20_jobs::{db_error, Cancel, Jobs};
use data20_sqlite::Db;

/// The action and raw id when `path` is `/api/jobs/{id}/cancel` or `…/retry`.
pub fn route(path: &str) -> Option<(Action, &str)> {
    let rest = path.strip_prefix("/api/jobs/")?;
    let (id, action) = rest.split_once('/')?;
    let action = match action {
        "cancel" => Action::Cancel,
        "retry" => Action::Retry,
        _ => return None,
    };
    Some((action, id))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Cancel,
    Retry,
}

pub async fn handle(req: &Request, action: Action, raw_id: &str) -> Response {
    let settings = data20_http::settings().await;
    let redis = data20_http::redis(&settings);
    gated(
        req,
        &settings,
        &redis,
        None,
        Need::Scope(Scope::Run),
        async |_, caller| {
            let answer = async {
                let id = JobId::parse(raw_id)?;
                let db = Db::open().await.map_err(db_error)?;
                if !caller.sees_all() {
                    let job = db.job(&id).await.map_err(db_error)?;
                    caller.check_sees(job.as_ref().and_then(|j| j.owner.as_deref()), &id)?;
                }
                let jobs = Jobs {
                    db: &db,
                    redis: &redis,
                    settings: &settings,
                    source: "api",
                };
                match action {
                    Action::Cancel => cancel(&jobs, &id).await,
                    Action::Retry => retry(&jobs, &id).await,
                }
            }
            .await;
            answer.unwrap_or_else(|e| error(&e))
        },
    )
    .await
}

/// 200 with the cancelled job; 202 while a running job gets to its next check.
async fn cancel(jobs: &Jobs<'_>, id: &JobId) -> Result<Response, ApiError> {
    Ok(match jobs.cancel(id).await? {
        Cancel::Done(record) => data20_http::json(200, &record.view()),
        Cancel::Requested(record) => data20_http::json(202, &record.view()),
    })
}

/// 202 with the new job, as POST /api/run answers. A retry nobody can run (no worker
/// heard it) runs here after the response, as an inline run does.
async fn retry(jobs: &Jobs<'_>, id: &JobId) -> Result<Response, ApiError> {
    let (record, dispatch) = jobs.retry(id).await?;
    let resp = data20_http::accepted(&record.view(), dispatch.as_str());
    if dispatch != data20_jobs::Dispatch::Inline {
        return Ok(resp);
    }
    let (new_id, tool) = (record.id, record.tool.clone());
    Ok(resp.then(async move {
        if let Ok(db) = Db::open().await {
            crate::routes::run_inline(db, new_id, tool, "running retry").await;
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route("/api/jobs/abc/cancel"), Some((Action::Cancel, "abc")));
        assert_eq!(route("/api/jobs/abc/retry"), Some((Action::Retry, "abc")));
        assert_eq!(route("/api/jobs/abc/events"), None);
        assert_eq!(route("/api/jobs/abc"), None);
        assert_eq!(route("/api/jobs/abc/cancel/x"), None);
    }
}
