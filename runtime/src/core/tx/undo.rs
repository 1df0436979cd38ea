//! `signal` and `print` queued for after commit, and savepoints: marks in the undo log that
//! a failed `try` body is rolled back to, on every endpoint and partner it reached.

use super::*;
use crate::core::error::{ExceptionKind, Raise};

impl Tx {
    // ---------------------------------------------------------------- effects, savepoints

    /// Queues `f(args)` to run once after `ep`'s part of the transaction commits (`signal`
    /// in code running on `ep`). The arguments are copied now: the host gets the values as
    /// they were when `signal` ran.
    pub async fn signal(
        &self,
        ep: &EndpointCore,
        f: crate::core::value::HostFn,
        args: Vec<Value>,
    ) -> Flow<()> {
        let mut copied = Vec::with_capacity(args.len());
        for a in &args {
            copied.push(self.deep_copy(a).await?);
        }
        let effect: Effect = Box::new(move || {
            if let Err(e) = f.call(copied) {
                tracing::warn!(message = %e.message, "a signalled host function raised after commit; the transaction stays committed");
            }
        });
        self.inner.log.lock().effects.push((ep.effects.clone(), effect));
        Ok(())
    }

    /// Queues a line to print once after commit (`print`), through the endpoint's printer.
    pub fn print(&self, ep: &EndpointCore, text: String) {
        let printer = ep.printer.clone();
        let effect: Effect = Box::new(move || printer(&text));
        self.inner.log.lock().effects.push((ep.effects.clone(), effect));
    }

    /// Marks the undo log for a `try` body.
    pub fn savepoint(&self) -> Savepoint {
        let log = self.inner.log.lock();
        Savepoint {
            undo: log.undo.len(),
            effects: log.effects.len(),
            shipped: log.shipped.len(),
            links: log.links.iter().map(|l| l.sent.load(Ordering::Acquire)).collect(),
        }
    }

    /// Undoes everything written since `sp`, on every endpoint and on every partner the
    /// transaction reached since then, and drops the effects queued since then. Locks stay
    /// held.
    pub fn rollback_to(&self, sp: Savepoint) {
        self.rollback_except(sp, None);
    }

    /// The end of a `try` body with one `catch` (of `kind`; `None`: any exception): an
    /// exception it catches undoes what the body did since `sp` and is returned; a body
    /// that ended normally gives `None`; anything else goes on.
    pub fn caught(
        &self,
        done: Flow<()>,
        sp: Savepoint,
        kind: Option<ExceptionKind>,
    ) -> Flow<Option<Exception>> {
        // An exception that goes on past the `try` keeps the place it was raised at.
        let done = done.map_err(|raise| match raise {
            Raise::Exception(e) => Raise::Exception(self.locate(e)),
            other => other,
        });
        match done {
            Ok(()) => Ok(None),
            Err(Raise::Exception(e)) if kind.is_none_or(|k| e.kind == k) => {
                self.rollback_to(sp);
                Ok(Some(*e))
            }
            Err(other) => Err(other),
        }
    }

    /// Rolls back because the other side of `from` did: everyone but `from` is told.
    pub(crate) fn rollback_from(&self, sp: Savepoint, from: &dyn TxLink) {
        self.rollback_except(sp, Some(from));
    }

    fn rollback_except(&self, sp: Savepoint, from: Option<&dyn TxLink>) {
        let (undo, links) = {
            let mut log = self.inner.log.lock();
            log.effects.truncate(sp.effects);
            let shipped_at = sp.shipped.min(log.shipped.len());
            let resent: SmallVec<[PeeredTag; 2]> = log.shipped.drain(shipped_at..).collect();
            for t in resent {
                if !log.dirty.contains(&t) {
                    log.dirty.push(t);
                }
            }
            let at = sp.undo.min(log.undo.len());
            (log.undo.drain(at..).collect::<SmallVec<[Undo; 4]>>(), log.links.clone())
        };
        replay(undo);
        for (i, reg) in links.iter().enumerate() {
            let then = sp.links.get(i).copied().unwrap_or(0);
            if from.is_some_and(|f| reg.link.same(f)) {
                continue;
            }
            let sent = reg.sent.load(Ordering::Acquire);
            if then == 0 {
                // Links are only ever appended: `i` still names this one (unless the
                // transaction ended meanwhile and its log was taken).
                if let Some(reg) = self.inner.log.lock().links.get_mut(i) {
                    reg.void_at = sent;
                }
            }
            if sent > then {
                reg.link.rollback(self.inner.id, then);
            }
        }
    }
}
