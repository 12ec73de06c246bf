//! Every error steward raises, in one place.
//!
//! Each variant carries its SQLSTATE from the `ST` class (docs/design.md), a message that names the
//! object and the values involved, and a hint on what to do.
//!
//! pgrx's `ErrorReport` only knows Postgres' built-in SQLSTATEs (it turns any other code into
//! XX000), so [`raise`] calls `errstart`/`errcode`/`errfinish` itself, exactly as pgrx's own
//! `do_ereport` does. It must only be called where no Rust value with a destructor is still alive
//! in the calling frames: use [`or_raise`] as the last expression of a `#[pg_extern]` or
//! `#[pg_trigger]` function, never deeper.

use std::cell::RefCell;
use std::ffi::{c_char, c_int, CString};
use std::fmt;

/// An error that steward reports to the client with its own SQLSTATE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StewardError {
    /// ST001: a governed table (or `current_tenant()`) was used with no tenant context.
    NoTenantContext { what: String, hint: String },
    /// ST002: the caller may not enter this tenant, or the tenant is suspended.
    TenantNotPermitted { message: String, hint: String },
    /// ST401: a token that is malformed, badly signed, expired, not yet valid, or signed by a
    /// revoked or unknown key.
    InvalidToken { message: String, hint: String },
    /// ST400: a bad argument to a steward function.
    BadArgument { message: String, hint: String },
    /// ST403: an operation steward forbids.
    Forbidden { message: String, hint: String },
    /// ST409: an UPDATE stated a version that is not the row's version.
    VersionConflict {
        table: String,
        key: String,
        expected: i64,
        actual: i64,
    },
    /// ST409: an INSERT stated a version; a new row starts at version 1.
    VersionPreset { table: String, stated: i64 },
    /// ST428: an UPDATE of a table with `version_required` did not state the version.
    VersionRequired { table: String, key: String },
    /// 42501: the caller lacks a privilege a steward operation needs (Postgres' own code).
    InsufficientPrivilege { message: String, hint: String },
    /// XX000: a bug in steward (never the caller's input).
    Internal { message: String },
    /// ST422: an event's payload does not match the JSON Schema registered for its type.
    SchemaViolation {
        event_type: String,
        schema_version: i32,
        path: String,
        problem: String,
    },
}

impl StewardError {
    pub fn sqlstate(&self) -> &'static str {
        match self {
            StewardError::NoTenantContext { .. } => "ST001",
            StewardError::TenantNotPermitted { .. } => "ST002",
            StewardError::InvalidToken { .. } => "ST401",
            StewardError::BadArgument { .. } => "ST400",
            StewardError::Forbidden { .. } => "ST403",
            StewardError::VersionConflict { .. } | StewardError::VersionPreset { .. } => "ST409",
            StewardError::VersionRequired { .. } => "ST428",
            StewardError::SchemaViolation { .. } => "ST422",
            StewardError::InsufficientPrivilege { .. } => "42501",
            StewardError::Internal { .. } => "XX000",
        }
    }

    pub fn message(&self) -> String {
        match self {
            StewardError::NoTenantContext { what, .. } => {
                format!("no tenant context: {what}")
            }
            StewardError::TenantNotPermitted { message, .. }
            | StewardError::InvalidToken { message, .. }
            | StewardError::BadArgument { message, .. }
            | StewardError::Forbidden { message, .. }
            | StewardError::InsufficientPrivilege { message, .. }
            | StewardError::Internal { message } => message.clone(),
            StewardError::VersionConflict { table, key, expected, actual } => format!(
                "version conflict on {table} row {key}: expected version {expected}, actual {actual}"
            ),
            StewardError::VersionPreset { table, stated } => {
                format!("a new row of {table} starts at version 1, not {stated}")
            }
            StewardError::VersionRequired { table, key } => {
                format!("update of {table} row {key} does not state the version it read")
            }
            StewardError::SchemaViolation { event_type, schema_version, path, problem } => {
                let at = if path.is_empty() { "/" } else { path.as_str() };
                format!(
                    "payload of event type \"{event_type}\" violates its schema (version \
                     {schema_version}) at {at}: {problem}"
                )
            }
        }
    }

    pub fn hint(&self) -> &str {
        match self {
            StewardError::NoTenantContext { hint, .. }
            | StewardError::TenantNotPermitted { hint, .. }
            | StewardError::InvalidToken { hint, .. }
            | StewardError::BadArgument { hint, .. }
            | StewardError::Forbidden { hint, .. }
            | StewardError::InsufficientPrivilege { hint, .. } => hint,
            StewardError::VersionConflict { .. } => {
                "Someone else changed the row since you read it: read it again, reapply your \
                 change, and send the version you read. A version is never set by hand."
            }
            StewardError::VersionPreset { .. } => {
                "Leave the version out of the INSERT: steward sets it, and raises it by one on \
                 every update."
            }
            StewardError::VersionRequired { .. } => {
                "Add \"version = <the version you read>\" to the SET list. (BEFORE UPDATE OF \
                 version triggers fire only when the column is in the SET list.)"
            }
            StewardError::Internal { .. } => {
                "This is a bug in steward, not in what was asked of it: report it with the \
                 server log around this message."
            }
            StewardError::SchemaViolation { .. } => {
                "Fix the payload at that path; the schema in force is the highest \
                 schema_version in steward.event_types for this event type."
            }
        }
    }

    pub fn not_permitted(message: impl Into<String>, hint: impl Into<String>) -> Self {
        StewardError::TenantNotPermitted {
            message: message.into(),
            hint: hint.into(),
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        StewardError::Internal {
            message: message.into(),
        }
    }

    pub fn bad_argument(message: impl Into<String>, hint: impl Into<String>) -> Self {
        StewardError::BadArgument {
            message: message.into(),
            hint: hint.into(),
        }
    }

    pub fn forbidden(message: impl Into<String>, hint: impl Into<String>) -> Self {
        StewardError::Forbidden {
            message: message.into(),
            hint: hint.into(),
        }
    }
}

/// For what only a bug in steward (or its own catalogs changed by hand) can cause, never for
/// anything a caller passed: XX000 with the message and [`StewardError::Internal`]'s hint. Raised
/// as a panic that pgrx turns into the ERROR at the function's boundary, so that every Rust frame
/// in between unwinds (unlike [`raise`], which may be called only as a function's last step).
#[track_caller]
#[cold]
pub fn bug(message: impl Into<String>) -> ! {
    let err = StewardError::internal(message);
    pgrx::pg_sys::panic::ErrorReport::new(
        pgrx::PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
        err.message(),
        "steward",
    )
    .set_hint(err.hint())
    .report(pgrx::PgLogLevel::ERROR);
    unreachable!("an ERROR does not return")
}

/// An argument a steward function needs: NULL gets a clear ST400 naming the function and the
/// argument, never a panic (pgrx's "argument must not be null") with XX000.
pub fn required<T>(value: Option<T>, function: &str, argument: &str) -> Result<T> {
    value.ok_or_else(|| {
        StewardError::bad_argument(
            format!("{function}: {argument} must not be NULL"),
            format!("Pass a value for {argument}."),
        )
    })
}

impl fmt::Display for StewardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.sqlstate(), self.message())
    }
}

impl std::error::Error for StewardError {}

pub type Result<T> = std::result::Result<T, StewardError>;

/// Postgres packs a five-character SQLSTATE into an int six bits a character (`MAKE_SQLSTATE`).
pub fn make_sqlstate(code: &str) -> c_int {
    let b = code.as_bytes();
    assert_eq!(b.len(), 5, "a SQLSTATE has five characters");
    b.iter()
        .enumerate()
        .map(|(i, ch)| (((*ch as c_int) - ('0' as c_int)) & 0x3F) << (6 * i))
        .sum()
}

// Postgres' error reporting entry points. pgrx keeps these out of its bindings on purpose; we
// declare exactly the ones `ereport(ERROR, ...)` expands to.
extern "C-unwind" {
    fn errstart(elevel: c_int, domain: *const c_char) -> bool;
    fn errcode(sqlerrcode: c_int) -> c_int;
    fn errmsg(fmt: *const c_char, ...) -> c_int;
    fn errhint(fmt: *const c_char, ...) -> c_int;
    fn errfinish(filename: *const c_char, lineno: c_int, funcname: *const c_char);
}

/// Unwraps `result`, or reports its error to the client and never returns.
///
/// Call this as the outermost expression of a function Postgres calls (see the module docs).
#[inline]
pub fn or_raise<T>(result: Result<T>) -> T {
    match result {
        Ok(v) => v,
        Err(e) => raise(e),
    }
}

thread_local! {
    /// The error steward raised last: [`keeping_codes`] recognises it when it comes back out of
    /// SQL that steward ran (pgrx re-raises a caught error with XX000 for a code it does not
    /// know, such as steward's own).
    static LAST_RAISED: RefCell<Option<StewardError>> = const { RefCell::new(None) };
}

/// Runs `f`, which runs SQL, so that an error steward raises inside that SQL (a guard of a table
/// the SQL writes, a shape check) reaches the client with its own SQLSTATE and hint, not as
/// XX000. Any other error goes on as it came.
pub fn keeping_codes<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    LAST_RAISED.with_borrow_mut(|l| *l = None);
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(payload) => {
            let caught = payload
                .downcast_ref::<pgrx::pg_sys::panic::CaughtError>()
                .and_then(|c| match c {
                    pgrx::pg_sys::panic::CaughtError::PostgresError(report) => {
                        Some(report.message().to_string())
                    }
                    _ => None,
                });
            let ours = LAST_RAISED
                .with_borrow_mut(Option::take)
                .filter(|e| caught.as_deref() == Some(e.message().as_str()));
            match ours {
                Some(e) => Err(e),
                None => std::panic::resume_unwind(payload),
            }
        }
    }
}

/// Reports `err` as an ERROR with its own SQLSTATE. Does not return: Postgres longjmps to the
/// nearest error handler, which aborts the (sub)transaction.
#[cold]
pub fn raise(err: StewardError) -> ! {
    LAST_RAISED.with_borrow_mut(|l| *l = Some(err.clone()));
    // Everything Rust owns is turned into palloc'd C strings first and then dropped, so the
    // longjmp below skips no destructor. The palloc'd copies die with the error's memory context.
    let code = make_sqlstate(err.sqlstate());
    let message = pg_cstring(&err.message());
    let hint = pg_cstring(err.hint());
    drop(err);
    const PERCENT_S: &[u8] = b"%s\0";
    const FILE: &[u8] = b"steward/errors.rs\0";
    const FUNC: &[u8] = b"steward\0";
    // SAFETY: errstart/errcode/errmsg/errhint/errfinish are called in the order elog.h's ereport
    // does, with palloc'd NUL-terminated strings; nothing Rust owns is live when errfinish
    // longjmps.
    unsafe {
        if errstart(pgrx::PgLogLevel::ERROR as c_int, std::ptr::null()) {
            errcode(code);
            errmsg(PERCENT_S.as_ptr().cast(), message);
            if !hint.is_null() {
                errhint(PERCENT_S.as_ptr().cast(), hint);
            }
            errfinish(FILE.as_ptr().cast(), line!() as c_int, FUNC.as_ptr().cast());
        }
        // errstart(ERROR, ...) always returns true and errfinish(ERROR) never returns.
        std::process::abort()
    }
}

fn pg_cstring(s: &str) -> *mut c_char {
    if s.is_empty() {
        return std::ptr::null_mut();
    }
    // Interior NULs cannot travel in a C string; a message never needs them.
    let owned = CString::new(s.replace('\0', " ")).unwrap_or_default();
    // SAFETY: pstrdup copies a NUL-terminated C string into the current memory context.
    unsafe { pgrx::pg_sys::pstrdup(owned.as_ptr()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstate_packing_matches_postgres() {
        // ERRCODE_INSUFFICIENT_PRIVILEGE is MAKE_SQLSTATE('4','2','5','0','1')
        assert_eq!(
            make_sqlstate("42501"),
            pgrx::PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE as c_int
        );
        assert_ne!(make_sqlstate("ST001"), make_sqlstate("ST002"));
    }

    #[test]
    fn every_variant_has_an_st_code_a_message_and_a_hint() {
        let cases = [
            (
                StewardError::NoTenantContext {
                    what: "x".into(),
                    hint: "h".into(),
                },
                "ST001",
            ),
            (StewardError::not_permitted("m", "h"), "ST002"),
            (
                StewardError::InvalidToken {
                    message: "m".into(),
                    hint: "h".into(),
                },
                "ST401",
            ),
            (StewardError::bad_argument("m", "h"), "ST400"),
            (StewardError::forbidden("m", "h"), "ST403"),
            (
                StewardError::VersionConflict {
                    table: "t".into(),
                    key: "k".into(),
                    expected: 1,
                    actual: 2,
                },
                "ST409",
            ),
            (
                StewardError::VersionPreset {
                    table: "t".into(),
                    stated: 42,
                },
                "ST409",
            ),
            (
                StewardError::VersionRequired {
                    table: "t".into(),
                    key: "k".into(),
                },
                "ST428",
            ),
        ];
        for (err, code) in cases {
            assert_eq!(err.sqlstate(), code);
            assert!(!err.message().is_empty());
            assert!(!err.hint().is_empty());
        }
    }
}
