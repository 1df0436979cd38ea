//! Running code: a host call as a transaction with retries (`run`), the operators and
//! builtins generated code calls (`ops`), blocks that are restarted rather than suspended
//! when they must wait for a lock (`restart`), and the watchdog that reports code running past
//! its budget. Built on `core`.

pub(crate) mod observe;
pub mod ops;
pub(crate) mod restart;
pub(crate) mod run;
pub mod watchdog;
