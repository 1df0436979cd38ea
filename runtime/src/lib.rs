//! The Waldo runtime: transactional endpoint data, the sans-io protocol engine and its
//! drivers (TCP, in-process, simulated). See `RUNTIME.md` for the contract it implements.
//!
//! The crate is being built in stages; today it only reserves its place in the workspace,
//! so that the code generator and the examples can name it.
