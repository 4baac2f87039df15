//! Bearer-token access control for POST routes (when `api_token` is set).

use data20_domain::ApiError;
use subtle::ConstantTimeEq;

/// Checks an `Authorization` header against the configured token. No token configured:
/// everything passes. The comparison takes the same time wherever the strings differ.
pub fn check_bearer(expected: Option<&str>, authorization: Option<&str>) -> Result<(), ApiError> {
    let Some(expected) = expected else {
        return Ok(());
    };
    let presented = authorization
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or_else(|| {
            ApiError::Unauthorized("this route needs Authorization: Bearer <api_token>".into())
        })?;
    if presented.as_bytes().ct_eq(expected.as_bytes()).into() {
        Ok(())
    } else {
        Err(ApiError::Unauthorized(
            "the bearer token is not valid".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_without_a_token() {
        assert!(check_bearer(None, None).is_ok());
    }

    #[test]
    fn token_is_required_and_checked() {
        let t = Some("s3cret");
        assert!(check_bearer(t, Some("Bearer s3cret")).is_ok());
        for bad in [
            None,
            Some("Bearer nope"),
            Some("s3cret"),
            Some("Basic s3cret"),
            Some("Bearer "),
        ] {
            assert_eq!(check_bearer(t, bad).unwrap_err().status(), 401, "{bad:?}");
        }
    }
}
