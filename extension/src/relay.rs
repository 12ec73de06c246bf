//! What the relay needs from inside the database and only the database can give: the webhook
//! signing secrets, drawn from Postgres's strong random source. The relay's tables and functions
//! are sql/relay.sql; the relay itself is steward-service (service/src/relay.rs).

use base64::Engine as _;
use pgrx::prelude::*;

/// A new endpoint's signing secret: `whsec_` and the base64 of 32 random bytes (Standard
/// Webhooks).
#[pg_extern(volatile, parallel_restricted)]
fn _internal_webhook_secret() -> String {
    let mut bytes = [0u8; 32];
    // SAFETY: the pointer and length describe `bytes`, which outlives the call.
    let ok = unsafe { pg_sys::pg_strong_random(bytes.as_mut_ptr().cast(), bytes.len()) };
    if !ok {
        crate::errors::bug("steward: the strong random source failed to give a webhook secret");
    }
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}
