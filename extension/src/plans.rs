//! Statements the triggers run, prepared once per backend and kept.
//!
//! Each statement is keyed by the OID of the trigger whose argument holds its text. `govern`
//! re-creates a table's triggers (so new OIDs) whenever that text changes, and Postgres
//! revalidates a kept plan itself when the table it reads changes.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::CStr;

use pgrx::pg_sys;

thread_local! {
    static PLANS: RefCell<HashMap<(pg_sys::Oid, String), pg_sys::SPIPlanPtr>> = RefCell::new(HashMap::new());
}

/// A statement's parameter: a value and its type, or NULL.
pub struct Param {
    pub datum: Option<pg_sys::Datum>,
    pub type_oid: pg_sys::Oid,
}

/// Runs `sql` (kept under `key` and the text itself) with `params` in the current SPI
/// connection, and returns SPI's result code. The text is part of the key: a statement that names
/// a table is prepared anew when the table's name changes, so that a kept plan, which Postgres
/// re-plans from its text, never comes to name another table of the old name.
///
/// # Safety
/// Call between `SPI_connect` and `SPI_finish`.
pub unsafe fn execute_kept(key: pg_sys::Oid, sql: &CStr, params: &[Param]) -> i32 {
    // SAFETY: the caller is connected to SPI (this function's contract); the kept plan is
    // prepared with the parameters' types, and values and nulls have one entry per parameter.
    unsafe {
        let text = sql.to_string_lossy().into_owned();
        let plan = PLANS
            .with_borrow(|p| p.get(&(key, text.clone())).copied())
            .unwrap_or_else(|| {
                let mut types: Vec<pg_sys::Oid> = params.iter().map(|p| p.type_oid).collect();
                let plan =
                    pg_sys::SPI_prepare(sql.as_ptr(), types.len() as i32, types.as_mut_ptr());
                if plan.is_null() {
                    crate::errors::bug(format!(
                        "steward: preparing a trigger statement failed: {}",
                        sql.to_string_lossy()
                    ));
                }
                pg_sys::SPI_keepplan(plan);
                PLANS.with_borrow_mut(|p| p.insert((key, text), plan));
                plan
            });
        let mut values: Vec<pg_sys::Datum> = params
            .iter()
            .map(|p| p.datum.unwrap_or(pg_sys::Datum::from(0)))
            .collect();
        let nulls: Vec<std::ffi::c_char> = params
            .iter()
            .map(|p| if p.datum.is_some() { b' ' } else { b'n' } as std::ffi::c_char)
            .collect();
        pg_sys::SPI_execute_plan(plan, values.as_mut_ptr(), nulls.as_ptr(), false, 0)
    }
}
