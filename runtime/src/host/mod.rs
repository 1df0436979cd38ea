//! What the host program sees of values: conversions between Rust types and Waldo values,
//! and typed External cells. Built on `core`.

pub mod convert;
pub(crate) mod external;
pub(crate) mod shell;
