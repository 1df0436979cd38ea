//! The drivers around the sans-io engine: `link` carries out the engine's outputs (runs
//! blocks, answers callers, commits) and holds the in-process transport; `tcp` is the TCP
//! transport (handshake, framing, heartbeats, listener). Built on `engine`, `exec` and `core`.

pub(crate) mod link;
pub(crate) mod tcp;
