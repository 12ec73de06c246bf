//! Every error the service answers with: `application/problem+json` (RFC 9457) carrying the
//! SQLSTATE and a hint. A database error keeps the database's message and hint (they name the
//! caller's own objects and values); anything unexpected is logged and answered generically.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub sqlstate: String,
    pub title: String,
    pub detail: String,
    pub hint: String,
    /// `WWW-Authenticate` to send with a 401.
    pub authenticate: Option<&'static str>,
    /// Seconds, for 503.
    pub retry_after: Option<u32>,
    /// The methods a 405's resource has (`Allow`).
    pub allow: Option<&'static str>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        sqlstate: &str,
        detail: impl Into<String>,
        hint: impl Into<String>,
    ) -> ApiError {
        ApiError {
            status,
            sqlstate: sqlstate.to_string(),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            detail: detail.into(),
            hint: hint.into(),
            authenticate: None,
            retry_after: None,
            allow: None,
        }
    }

    /// A request the service refuses before any SQL runs (a bad argument, ST400).
    pub fn bad_request(detail: impl Into<String>, hint: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "ST400", detail, hint)
    }

    pub fn bad_cursor(why: &str) -> ApiError {
        ApiError::bad_request(
            format!("the after= cursor cannot be used: {why}"),
            "Follow the Link header of the previous page as it is, with the same order=.",
        )
    }

    pub fn not_found(detail: impl Into<String>, hint: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "ST400", detail, hint)
    }

    pub fn method_not_allowed(
        allow: &'static str,
        detail: impl Into<String>,
        hint: impl Into<String>,
    ) -> ApiError {
        let mut e = ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "ST400", detail, hint);
        e.allow = Some(allow);
        e
    }

    pub fn unavailable(detail: impl Into<String>, hint: impl Into<String>, retry: u32) -> ApiError {
        let mut e = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "53300", detail, hint);
        e.retry_after = Some(retry);
        e
    }

    pub fn timeout(seconds: f64) -> ApiError {
        ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "57014",
            format!("the request did not finish within {seconds} s"),
            "Narrow the request (filters, a smaller limit), or try again later.",
        )
    }

    /// No usable bearer token on the request: 401 without an error code (RFC 6750 §3.1).
    pub fn no_token(detail: impl Into<String>) -> ApiError {
        let mut e = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "ST401",
            detail,
            "Send Authorization: Bearer <token>, a token from your identity provider.",
        );
        e.authenticate = Some("Bearer");
        e
    }

    pub fn internal() -> ApiError {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "XX000",
            "the service failed to answer this request",
            "Try again; if it persists, report it with the request id.",
        )
    }

    /// Maps a database error. `if_match`: the request stated a version (ST409 is then 412).
    pub fn from_db(err: &tokio_postgres::Error, if_match: bool) -> ApiError {
        let Some(db) = err.as_db_error() else {
            tracing::warn!(error = %err, "database connection failed");
            return ApiError::unavailable(
                "the database did not answer",
                "Try again in a moment.",
                1,
            );
        };
        let code = db.code().code();
        let status = status_of(code, if_match);
        let hint = db
            .hint()
            .map(str::to_string)
            .unwrap_or_else(|| default_hint(code).to_string());
        let detail = if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(
                sqlstate = code,
                message = db.message(),
                "unexpected database error"
            );
            "the database failed to answer this request".to_string()
        } else {
            db.message().to_string()
        };
        let mut e = ApiError::new(status, code, detail, hint);
        if code == "ST401" {
            e.authenticate = Some("Bearer error=\"invalid_token\"");
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            e.retry_after = Some(1);
        }
        e
    }
}

/// HTTP status per SQLSTATE (docs/design.md, Errors; the rest by class).
pub fn status_of(code: &str, if_match: bool) -> StatusCode {
    match code {
        "ST001" | "ST401" => StatusCode::UNAUTHORIZED,
        "ST002" | "ST403" | "42501" => StatusCode::FORBIDDEN,
        "ST400" => StatusCode::BAD_REQUEST,
        "ST409" if if_match => StatusCode::PRECONDITION_FAILED,
        "ST409" => StatusCode::CONFLICT,
        "ST422" => StatusCode::UNPROCESSABLE_ENTITY,
        "ST428" => StatusCode::PRECONDITION_REQUIRED,
        // Unique, foreign key and exclusion violations: the state of other rows conflicts.
        "23505" | "23503" | "23P01" => StatusCode::CONFLICT,
        // Not null, check, and any other integrity rule: the input is wrong.
        c if c.starts_with("23") => StatusCode::BAD_REQUEST,
        // Data exceptions: a value of the wrong type, out of range, too long.
        c if c.starts_with("22") => StatusCode::BAD_REQUEST,
        // Program limits a request's values can reach (an index row too large, too many array
        // dimensions): the input is too big.
        c if c.starts_with("54") => StatusCode::BAD_REQUEST,
        // An operator that does not exist for a type (e.g. comparing a custom type).
        "42883" => StatusCode::BAD_REQUEST,
        // A column or table that went away since the service read the resources.
        "42703" | "42P01" => StatusCode::SERVICE_UNAVAILABLE,
        "57014" => StatusCode::GATEWAY_TIMEOUT,
        "40001" | "40P01" | "55P03" => StatusCode::SERVICE_UNAVAILABLE,
        c if c.starts_with("08") || c.starts_with("53") || c.starts_with("57P") => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn default_hint(code: &str) -> &'static str {
    match code {
        "23505" => "A row with that key or unique value exists already.",
        "23503" => "The row refers to a row that does not exist in your tenant, or is referred to.",
        c if c.starts_with("23") => {
            "Check the values against the resource's rules (GET /openapi.json)."
        }
        c if c.starts_with("22") => {
            "Send each value in its column's type (GET /openapi.json lists them)."
        }
        "42883" => "That comparison does not exist for the column's type.",
        "42703" | "42P01" => "The resource changed under the service; try again in a moment.",
        "57014" => "Narrow the request (filters, a smaller limit), or try again later.",
        "40001" | "40P01" | "55P03" => "A concurrent transaction interfered: try again.",
        _ => "Try again; if it persists, report it with the request id.",
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "type": format!("urn:steward:{}", self.sqlstate),
            "title": self.title,
            "status": self.status.as_u16(),
            "detail": self.detail,
            "sqlstate": self.sqlstate,
            "hint": self.hint,
        });
        let mut res = (self.status, body.to_string()).into_response();
        let h = res.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(a) = self.authenticate {
            h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(a));
        }
        if let Some(a) = self.allow {
            h.insert(header::ALLOW, HeaderValue::from_static(a));
        }
        if let Some(r) = self.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(r));
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_contract() {
        let cases = [
            ("ST001", false, 401),
            ("ST002", false, 403),
            ("ST401", false, 401),
            ("ST400", false, 400),
            ("ST403", false, 403),
            ("ST409", false, 409),
            ("ST409", true, 412),
            ("ST422", false, 422),
            ("ST428", false, 428),
            ("22P02", false, 400),
            ("23505", false, 409),
            ("23502", false, 400),
            ("57014", false, 504),
            ("54000", false, 400),
            ("XX000", false, 500),
        ];
        for (code, if_match, want) in cases {
            assert_eq!(status_of(code, if_match).as_u16(), want, "{code}");
        }
    }
}
