//! The one error type of the handlers: a status and an [`ErrorBody`] for the client, so
//! handlers use `?` on every failure below them.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kura_api::ErrorBody;

use crate::registry::RegistryError;
use crate::storage::StorageError;
use crate::upload::UploadError;

/// An error answer: status and a one-line message for the client to show.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What the client is told.
    pub body: ErrorBody,
    /// When to try again (the `Retry-After` header), for refusals that pass.
    pub retry_after: Option<std::time::Duration>,
}

/// What a handler returns.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// A refusal with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            body: ErrorBody {
                error: message.into(),
                ..ErrorBody::default()
            },
            retry_after: None,
        }
    }

    /// The same refusal, telling the client when to try again.
    pub fn retry_after(mut self, wait: std::time::Duration) -> ApiError {
        self.retry_after = Some(wait);
        self
    }

    /// 400: the request is malformed.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    /// 422 with `resend`: the data does not match its checksum.
    pub fn resend() -> ApiError {
        let mut e = ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "the data does not match its checksum; send it again",
        );
        e.body.resend = true;
        e
    }

    /// 500, logged here; the client learns nothing of the cause.
    pub fn internal(e: impl std::fmt::Display) -> ApiError {
        tracing::error!("internal error: {e}");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    }

    fn out_of_space() -> ApiError {
        ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "the service is out of space",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, axum::Json(self.body)).into_response();
        if let Some(wait) = self.retry_after {
            // Whole seconds, rounded up: zero would invite an immediate retry.
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            r.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.max(1).into());
        }
        r
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> ApiError {
        match e {
            StorageError::NotFound => ApiError::not_found("not found"),
            StorageError::OutOfRange => ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range starts past the end",
            ),
            StorageError::Lost(_) => {
                tracing::error!("{e}");
                ApiError::new(StatusCode::GONE, e.to_string())
            }
            StorageError::NoSite(_) | StorageError::Unreadable { .. } => {
                tracing::error!("{e}");
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
            StorageError::Io(e) => e.into(),
            StorageError::Registry(e) => e.into(),
            other => ApiError::internal(other),
        }
    }
}

impl From<UploadError> for ApiError {
    fn from(e: UploadError) -> ApiError {
        match e {
            UploadError::Offset { received, .. } => {
                let mut a = ApiError::new(StatusCode::CONFLICT, e.to_string());
                a.body.received = Some(received);
                a
            }
            UploadError::Checksum => ApiError::resend(),
            UploadError::TooLarge => ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, e.to_string()),
            UploadError::TooMany => ApiError::new(StatusCode::TOO_MANY_REQUESTS, e.to_string()),
            UploadError::NotFound => ApiError::not_found(e.to_string()),
            UploadError::BadChecksum(_) => ApiError::bad_request(e.to_string()),
            UploadError::Io(e) => e.into(),
        }
    }
}

/// A full disk is the client's to know of (507); any other failure is logged, not told.
impl From<std::io::Error> for ApiError {
    fn from(e: std::io::Error) -> ApiError {
        if e.kind() == std::io::ErrorKind::StorageFull {
            ApiError::out_of_space()
        } else {
            ApiError::internal(e)
        }
    }
}

/// A full disk under the database is the client's to know of too (507): nothing it sends can
/// be stored until the operator makes room.
impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> ApiError {
        match &e {
            RegistryError::Db(rusqlite::Error::SqliteFailure(f, _))
                if f.code == rusqlite::ErrorCode::DiskFull =>
            {
                tracing::error!("{e}");
                ApiError::new(
                    StatusCode::INSUFFICIENT_STORAGE,
                    "the service's database is full: nothing can be stored until its operator makes room",
                )
            }
            _ => ApiError::internal(e),
        }
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> ApiError {
        ApiError::internal(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_database_is_told_as_507_not_500() {
        let full = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            Some("database or disk is full".into()),
        );
        let e = ApiError::from(StorageError::Registry(RegistryError::Db(full)));
        assert_eq!(e.status, StatusCode::INSUFFICIENT_STORAGE);
        assert!(
            e.body.error.contains("database is full"),
            "{}",
            e.body.error
        );
        let other = rusqlite::Error::InvalidQuery;
        assert_eq!(
            ApiError::from(RegistryError::Db(other)).status,
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    #[test]
    fn an_offset_conflict_says_where_to_go_on() {
        let e = ApiError::from(UploadError::Offset {
            offset: 10,
            received: 4,
        });
        assert_eq!(e.status, StatusCode::CONFLICT);
        assert_eq!(e.body.received, Some(4));
    }

    #[test]
    fn internal_errors_tell_the_client_nothing() {
        let e = ApiError::from(RegistryError::Invalid("secret detail".into()));
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!e.body.error.contains("secret"));
    }

    #[test]
    fn a_lost_object_is_gone() {
        let e = ApiError::from(StorageError::Lost("data/ab".into()));
        assert_eq!(e.status, StatusCode::GONE);
    }
}
