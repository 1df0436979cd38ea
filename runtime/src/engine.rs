//! The protocol engine (the `waldo-engine` crate) as this runtime uses it: its generic types
//! with this runtime's transactions, values and waiting callers filled in.

pub use waldo_engine::{SequenceInfo, Side, Stats, Txn, liveness, proto};

use crate::core::tx::{Savepoint, Tx};
use crate::core::value::Value;

/// This runtime's types, as the engine sees them.
pub struct Driver;

impl waldo_engine::Host for Driver {
    type Tx = Tx;
    type Value = Value;
    type Waiter = tokio::sync::oneshot::Sender<Reply>;
}

/// The engine of one side of a pair.
pub type Engine = waldo_engine::Engine<Driver>;
/// A message between the two sides of a pair.
pub type Msg = waldo_engine::Msg<Value>;
/// An output of the engine.
pub type Out = waldo_engine::Out<Driver>;
/// The outputs of one engine step.
pub type Outs = waldo_engine::Outs<Driver>;
/// A job for the driver.
pub type Job = waldo_engine::Job<Driver>;
/// The answer a waiting local call gets.
pub type Reply = waldo_engine::Reply<Value>;
/// The result of a block job.
pub type BlockResult = waldo_engine::BlockResult<Value>;
/// Peered variables carried by a message.
pub type PeeredData = waldo_engine::PeeredData<Value>;

impl Txn for Tx {
    type Savepoint = Savepoint;

    fn id(&self) -> waldo_engine::TxId {
        Tx::id(self)
    }

    fn priority(&self) -> waldo_engine::Priority {
        Tx::priority(self)
    }

    fn child(id: waldo_engine::TxId, priority: waldo_engine::Priority) -> Tx {
        Tx::with_id(id, priority)
    }

    fn unguarded(&self) -> Tx {
        Tx::unguarded(self)
    }

    fn savepoint(&self) -> Savepoint {
        Tx::savepoint(self)
    }

    fn state_name(&self) -> &'static str {
        Tx::state_name(self)
    }

    fn try_prepare(&self) -> bool {
        Tx::try_prepare(self)
    }

    fn resume(&self) {
        Tx::resume(self);
    }

    fn is_prepared(&self) -> bool {
        Tx::is_prepared(self)
    }

    fn is_running(&self) -> bool {
        Tx::is_running(self)
    }
}
