//! The bearer token that guards the HTTP API's state-changing routes
//! (cancel, retry, drain, undrain).
//!
//! Reads (the dashboard, stats, `/metrics`, job lookups) stay open so that
//! Prometheus and a browser need no secret; who can reach the port at all
//! is the listen address's and the network's business (SECURITY.md). With
//! no token configured every route is open, as on a developer's machine,
//! and the balancer says so at start.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use fleet_protocol::api::ErrorBody;
use subtle::ConstantTimeEq;

/// The configured token, if any.
#[derive(Clone, Default)]
pub(crate) struct AdminToken(Option<Arc<str>>);

impl AdminToken {
    pub(crate) fn new(token: Option<&str>) -> AdminToken {
        AdminToken(token.filter(|t| !t.is_empty()).map(Arc::from))
    }

    /// Whether an `Authorization` header value carries the token. The
    /// comparison takes as long however much of a guess is right
    /// (`subtle`), so timing tells an attacker nothing.
    fn admits(&self, authorization: Option<&[u8]>) -> bool {
        let Some(want) = &self.0 else {
            return true;
        };
        authorization
            .and_then(|h| h.strip_prefix(b"Bearer "))
            .is_some_and(|got| bool::from(got.ct_eq(want.as_bytes())))
    }
}

/// Middleware: refuses a request without the token with 401.
pub(crate) async fn require(
    State(token): State<AdminToken>,
    request: Request,
    next: Next,
) -> Response {
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    if token.admits(authorization) {
        return next.run(request).await;
    }
    tracing::warn!(path = %request.uri().path(), "admin request without a valid token refused");
    crate::telemetry::metrics::rejected("admin_request", "bad_token");
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        Json(ErrorBody {
            error: "this route needs the admin token (Authorization: Bearer …)".into(),
        }),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_bearer_token_is_admitted() {
        let token = AdminToken::new(Some("s3cret"));
        assert!(token.admits(Some(b"Bearer s3cret")));
        assert!(!token.admits(Some(b"Bearer s3cre")));
        assert!(!token.admits(Some(b"Bearer s3cretX")));
        assert!(!token.admits(Some(b"s3cret")));
        assert!(!token.admits(Some(b"Basic s3cret")));
        assert!(!token.admits(None));
        let open = AdminToken::new(None);
        assert!(open.admits(None));
        // An empty token is no token: every request is admitted.
        assert!(AdminToken::new(Some("")).admits(None));
    }
}
