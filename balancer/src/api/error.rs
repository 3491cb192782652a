//! The API's error replies: a status and `{"error": "<message>"}`
//! ([`ErrorBody`]), built in one place so every route answers alike.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use fleet_protocol::api::ErrorBody;

use crate::state::StoreError;

/// Why a request was not answered with its document.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    /// A malformed id or query.
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    /// The job or agent is not in a state the request applies to.
    #[error("{0}")]
    Conflict(String),
    /// A state-changing call reached a standby.
    #[error("this balancer is a standby; send this to the leader")]
    NotLeader,
    /// Redis could not be read or written.
    #[error("{0}")]
    Unavailable(String),
    /// `/metrics` in a process whose recorder another library installed.
    #[error("metrics are not recorded in this process")]
    NoMetrics,
}

impl ApiError {
    /// A failed read, reported as `redis: …`.
    pub(crate) fn redis(e: StoreError) -> ApiError {
        ApiError::Unavailable(format!("redis: {e}"))
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) | ApiError::NoMetrics => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::NotLeader | ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// A failed write: the store's own message (it names Redis, or says the
/// leadership was lost).
impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        ApiError::Unavailable(e.to_string())
    }
}

impl From<fleet_protocol::InvalidId> for ApiError {
    fn from(e: fleet_protocol::InvalidId) -> ApiError {
        ApiError::BadRequest(e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.to_string(),
        };
        (self.status(), Json(body)).into_response()
    }
}

/// What a handler returns: its document, or the error reply.
pub(crate) type ApiResult<T> = Result<Json<T>, ApiError>;
