//! Running code: a host call as a transaction with retries (`run`), the operators and
//! builtins generated code calls (`ops`), and the watchdog that reports code running past
//! its budget. Built on `core`.

pub(crate) mod observe;
pub mod ops;
pub(crate) mod run;
pub mod watchdog;
