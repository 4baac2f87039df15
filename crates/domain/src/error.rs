//! The API's error type: every variant maps to one HTTP status and one stable code,
//! rendered as `{"error": {"code": "...", "message": "..."}}`.

use serde::Serialize;
use serde_json::Value;

/// An error the API answers with. Everything a client can cause is a 4xx variant.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("method {0} is not allowed on this route")]
    MethodNotAllowed(String),
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("{message}")]
    Unprocessable {
        message: String,
        details: Vec<Value>,
    },
    #[error("{0}")]
    Unauthorized(String),
    /// A valid key without the scope the route needs.
    #[error("{0}")]
    Forbidden(String),
    /// The request is valid but the resource's state does not allow it (cancel a
    /// finished job, retry a completed one).
    #[error("{0}")]
    Conflict(String),
    /// An `Idempotency-Key` already used with another body.
    #[error("{0}")]
    IdempotencyKeyReused(String),
    #[error("content type {0:?} is not supported: send application/json")]
    UnsupportedMediaType(String),
    #[error("too many requests, retry in {retry_after_s} s")]
    TooManyRequests { retry_after_s: u64 },
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> u16 {
        match self {
            ApiError::BadRequest(_) => 400,
            ApiError::Unauthorized(_) => 401,
            ApiError::Forbidden(_) => 403,
            ApiError::NotFound(_) => 404,
            ApiError::Conflict(_) => 409,
            ApiError::IdempotencyKeyReused(_) => 422,
            ApiError::MethodNotAllowed(_) => 405,
            ApiError::PayloadTooLarge { .. } => 413,
            ApiError::UnsupportedMediaType(_) => 415,
            ApiError::Unprocessable { .. } => 422,
            ApiError::TooManyRequests { .. } => 429,
            ApiError::Internal(_) => 500,
            ApiError::Unavailable(_) => 503,
        }
    }

    /// A stable, machine-readable code for clients to branch on.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::IdempotencyKeyReused(_) => "idempotency_key_reused",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::Unprocessable { .. } => "validation_failed",
            ApiError::TooManyRequests { .. } => "rate_limited",
            ApiError::Internal(_) => "internal",
            ApiError::Unavailable(_) => "unavailable",
        }
    }

    pub fn body(&self) -> ErrorBody {
        let details = match self {
            ApiError::Unprocessable { details, .. } => Some(details.clone()),
            _ => None,
        };
        ErrorBody {
            error: ErrorDetail {
                code: self.code(),
                message: self.to_string(),
                details,
            },
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Serialising a struct of strings and JSON values cannot fail.
        serde_json::to_vec(&self.body()).unwrap_or_else(|_| b"{\"error\":{}}".to_vec())
    }
}

#[derive(Debug, Serialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize)]
pub struct ErrorDetail {
    pub code: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Vec<Value>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_spec_error_shape() {
        let err = ApiError::NotFound("no tool named 'x'".into());
        let v: Value = serde_json::from_slice(&err.to_json()).unwrap();
        assert_eq!(v["error"]["code"], "not_found");
        assert_eq!(v["error"]["message"], "no tool named 'x'");
        assert!(v["error"].get("details").is_none());
        assert_eq!(err.status(), 404);
    }

    #[test]
    fn validation_errors_carry_every_violation() {
        let err = ApiError::Unprocessable {
            message: "2 violations".into(),
            details: vec![
                serde_json::json!({"path": "/a"}),
                serde_json::json!({"path": "/b"}),
            ],
        };
        let v: Value = serde_json::from_slice(&err.to_json()).unwrap();
        assert_eq!(v["error"]["details"].as_array().unwrap().len(), 2);
        assert_eq!(err.status(), 422);
    }

    #[test]
    fn every_client_error_is_4xx() {
        for e in [
            ApiError::BadRequest(String::new()),
            ApiError::NotFound(String::new()),
            ApiError::MethodNotAllowed("PUT".into()),
            ApiError::PayloadTooLarge { limit: 1 },
            ApiError::Unauthorized(String::new()),
            ApiError::UnsupportedMediaType(String::new()),
            ApiError::TooManyRequests { retry_after_s: 1 },
        ] {
            assert!((400..500).contains(&e.status()), "{e:?}");
        }
    }
}
