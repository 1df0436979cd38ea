//! The Waldo runtime: what code generated from a `.wld` protocol links against.
//!
//! Every host call of a public function is a **transaction** (the book's runtime chapter,
//! "Every call is a transaction"): it commits atomically or leaves no trace, is isolated
//! from concurrent calls (strict two-phase locking, wound-wait priorities, automatic
//! retries), may undo a `try` body without aborting, and delivers `signal`/`print` effects
//! once, after commit, in each endpoint's commit order.
//!
//! The host-facing types are the [`Handle`] every generated endpoint type dereferences to
//! (with [`Endpoint`], [`EndpointListener`], [`Connect`] and [`Listen`]), [`Error`],
//! [`CallOptions`], [`External`], [`NumberMap`] and the conversions in [`convert`]. Generated code reaches everything else through the hidden [`__rt`] module.

#![warn(missing_docs)]

mod core;
mod driver;
pub mod engine;
mod exec;
mod host;
#[cfg(feature = "sim")]
pub mod sim;
pub mod wire;

pub use crate::core::endpoint::EndpointRef;
pub use crate::core::error::{Error, Exception, ExceptionKind};
pub use crate::core::stats::{Aborts, Stats};
pub use driver::tcp::ToSocketAddrs;
pub use driver::tcp::{Accepted, ConnectionState, Listener, ReconnectPolicy, TcpOptions};
pub use engine::{liveness, proto};
pub use exec::run::{CallOptions, Counters, counters};
pub use exec::{ops, watchdog};
pub use host::convert::{self, HostResult, NumberKey, NumberMap};
pub use host::external::External;
pub use host::shell::{Call, Connect, Endpoint, EndpointListener, Handle, Listen, StopListener};

/// What host calls return: a value, or the [`Error`] that ended the call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// TLS for connections: the `rustls` this runtime uses (build its `ClientConfig` and
/// `ServerConfig` with it), and what a TLS connection tells about the partner.
pub mod tls {
    pub use crate::driver::tcp::{PeerIdentity, TlsClient};
    pub use rustls;
}

/// The networks connections are made over ([`TcpOptions::with_network`]), and the
/// wire-level constants of connections (for tools and tests that speak the protocol).
pub mod net {
    pub use crate::driver::tcp::{Acceptor, Address, NetFuture, Network, Socket, Stream, SystemTcp};
    pub use crate::driver::tcp::{HANDSHAKE_MAX_FRAME, MAGIC, WIRE_VERSION, kind};
}

/// The API of generated code. Not for direct use: it may change with the code generator.
#[doc(hidden)]
pub mod __rt {
    use std::future::Future;

    pub use crate::CallOptions;
    pub use crate::core::effects::{Printer, stdout_printer};
    pub use crate::core::endpoint::{CallFuture, DynEndpoint, EndpointCore, EndpointRef};
    pub use crate::core::error::{Abort, Exception, ExceptionKind, Flow, Raise, app_error};
    pub use crate::core::shape::Shape;
    pub use crate::core::stats::Traffic;
    pub use crate::core::tx::{Clock, Committed, Priority, Savepoint, Tx, TxId};
    pub use crate::core::value::ExtCell;
    pub use crate::core::value::{HostClosure, HostFn, Key, Obj, ObjData, Value, number_to_text};
    pub use crate::driver::link::{
        BlockFuture, Control, Link, Program, Room, Transport, in_process_pair, stop,
    };
    pub use crate::driver::tcp::{
        Accept, Opened, PairEnd, PairSpec, Pending, accept as tcp_accept, connect as tcp_connect,
        establish as tcp_establish,
    };
    pub use crate::engine::SequenceInfo;
    pub use crate::exec::observe::set_spans;
    pub use crate::exec::ops;
    pub use crate::exec::ops::Kind;
    pub use crate::exec::restart::now;
    pub use crate::exec::run::{Attempts, transact, transact_counted};
    pub use crate::host::convert::{Fresh, FromKey, FromValue, HostResult, IntoKey, IntoValue, fresh};
    pub use crate::host::shell::{
        Block, BlockBody, BlockFn, Body, BodyFn, Code, Ep, FromResults, Function, NowBlockFn, NowFn,
        check_version, create, endpoint_value, join_in_process, join_loopback, result, result_at, results,
        value,
    };
    pub use tokio::net::TcpStream;

    pub use crate::{__call as call, __function as function, __step as step};

    /// What a function's body returns: its results, or an exception or abort.
    pub type Returns = Flow<Vec<Value>>;

    /// A function's results (`rt::ok([a, b])`: `Ok(Vec::from([a, b]))`).
    pub fn ok<const N: usize>(values: [Value; N]) -> Returns {
        Ok(Vec::from(values))
    }

    /// The arguments of a call.
    pub type Args = Vec<Value>;
    /// What a lowered function returns.
    pub type Call<'a> = CallFuture<'a>;
    /// What a lowered block returns.
    pub type Step<'a> = BlockFuture<'a>;
    /// The sequence data a block reads and writes.
    pub type Data<'a> = &'a mut [Value];

    /// Runs two futures concurrently (both sides' `onCreate`).
    pub async fn join<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
        tokio::join!(a, b)
    }
}

/// The [`__rt::BodyFn`] of a function whose body is an `async fn` (generated code:
/// `rt::call!(f_name)`).
#[doc(hidden)]
#[macro_export]
macro_rules! __call {
    ($body:path) => {
        |ep, tx, args| ::std::boxed::Box::pin($body(ep, tx, args))
    };
}

/// The table entry of public function `name` taking parameters of `kinds`, whose body is an
/// `async fn` (generated code: `rt::function!("transfer", [Text, Number], f_transfer)`;
/// `rt::function!("total", f_total)` for one that takes no arguments).
#[doc(hidden)]
#[macro_export]
macro_rules! __function {
    ($name:literal, [$($kind:ident),*], $body:path) => {
        $crate::__rt::Function::new($name, &[$($crate::__rt::Kind::$kind),*], $crate::__call!($body))
    };
    ($name:literal, $body:path) => {
        $crate::__rt::Function::new($name, &[], |ep, tx, _| ::std::boxed::Box::pin($body(ep, tx)))
    };
}

/// The [`__rt::BlockFn`] of a block whose body is an `async fn` (generated code:
/// `rt::step!(b_s_a)`).
#[doc(hidden)]
#[macro_export]
macro_rules! __step {
    ($body:path) => {
        |ep, tx, data| ::std::boxed::Box::pin($body(ep, tx, data))
    };
}

/// Includes the Rust code generated for protocol `name` by `waldo_compiler::compile` in
/// `build.rs` (from `$OUT_DIR/name.rs`): a module named after the protocol.
#[macro_export]
macro_rules! include_protocol {
    ($name:literal) => {
        include!(concat!(env!("OUT_DIR"), "/", $name, ".rs"));
    };
}
