//! The request body, as the host adapter read it (capped before it reached memory).

use data20_domain::ApiError;
use data20_host::http::{BodyError, Request};

/// The body, or the 4xx for a body that was refused.
pub fn body(req: &Request) -> Result<&[u8], ApiError> {
    match req.body_error() {
        None => Ok(req.body()),
        Some(BodyError::TooLarge { limit }) => Err(ApiError::PayloadTooLarge { limit: *limit }),
        Some(BodyError::BadLength) => Err(ApiError::BadRequest(
            "content-length is not a number".into(),
        )),
        Some(BodyError::Read(e)) => Err(ApiError::BadRequest(format!(
            "could not read the request body: {e}"
        ))),
    }
}
