//! Variable slots (an endpoint's globals and peered replicas): reads, writes, and the
//! peered values received from the other replica.

use super::*;

impl Tx {
    // ---------------------------------------------------------------- variable slots

    /// Whether this transaction may take the locks of `ep`'s peered variables now (the
    /// admission token of its link; see `Engine::admit`). If not, the task is woken when it
    /// should ask again, or when the transaction is wounded.
    fn poll_admitted(&self, cx: &mut Context<'_>, ep: &Arc<EndpointCore>) -> Poll<Flow<()>> {
        if self.inner.admitted.load(Ordering::Relaxed) == ep.serial {
            return Poll::Ready(Ok(()));
        }
        let Some(link) = ep.link.get().and_then(std::sync::Weak::upgrade) else {
            return Poll::Ready(Ok(()));
        };
        match link.poll_admit(self, self.holds_locks(), cx) {
            Poll::Ready(()) => {
                self.inner.admitted.store(ep.serial, Ordering::Relaxed);
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                // Publish the waker, then look again: a wound racing with the wait is seen.
                self.wake_on_wound(cx.waker());
                match self.check() {
                    Ok(()) => Poll::Pending,
                    Err(abort) => Poll::Ready(Err(abort.into())),
                }
            }
        }
    }

    /// Whether slot `slot` of `ep` is a peered variable, for [`Tx::poll_admitted`] (without
    /// the slots' lock: which slots are peered is set before any transaction runs).
    fn is_peered(ep: &EndpointCore, slot: usize) -> bool {
        slot < ep.peered_slots.load(Ordering::Acquire)
    }

    /// Runs `f` on slot `slot` of `ep` with its lock taken in `mode`; first, for a peered
    /// variable and when `admit`, waits for the transaction's admission to it.
    async fn with_slot<T>(
        &self,
        ep: &Arc<EndpointCore>,
        slot: usize,
        mode: Mode,
        admit: bool,
        mut f: impl FnMut(&mut Value) -> T,
    ) -> Flow<T> {
        poll_fn(|cx| -> Poll<Flow<T>> {
            if admit && Self::is_peered(ep, slot) {
                std::task::ready!(self.poll_admitted(cx, ep))?;
            }
            let mut slots = ep.slots.lock();
            let Some(s) = slots.get_mut(slot) else { return no_variable(ep, slot) };
            match self.poll_grant(cx, &mut s.lock, mode) {
                Poll::Ready(Ok(new)) => {
                    let out = f(&mut s.value);
                    drop(slots);
                    if new {
                        self.hold(Held::Slot(ep.clone(), slot));
                    }
                    Poll::Ready(Ok(out))
                }
                Poll::Ready(Err(a)) => Poll::Ready(Err(a.into())),
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    }

    /// Reads slot `slot` of `ep` (a global or peered variable).
    pub async fn read(&self, ep: &Arc<EndpointCore>, slot: usize) -> Flow<Value> {
        self.with_slot(ep, slot, Mode::Read, true, |v| v.clone()).await
    }

    /// Writes `value` into slot `slot` of `ep`. A peered variable becomes dirty: the
    /// transaction will send it to the other replica before it commits.
    #[allow(
        clippy::manual_async_fn,
        reason = "a declared `Send` ends a generated body's `Send` proof here (see `exec::ops`)"
    )]
    pub fn write(
        &self,
        ep: &Arc<EndpointCore>,
        slot: usize,
        value: Value,
    ) -> impl Future<Output = Flow<()>> + Send {
        async move { self.write_slot(ep, slot, value, true).await }
    }

    /// Like [`Tx::write`], for the initializers of peered variables, which run on both
    /// replicas whoever controls the variable.
    #[allow(
        clippy::manual_async_fn,
        reason = "a declared `Send` ends a generated body's `Send` proof here (see `exec::ops`)"
    )]
    pub fn write_initial(
        &self,
        ep: &Arc<EndpointCore>,
        slot: usize,
        value: Value,
    ) -> impl Future<Output = Flow<()>> + Send {
        async move { self.write_slot(ep, slot, value, false).await }
    }

    async fn write_slot(
        &self,
        ep: &Arc<EndpointCore>,
        slot: usize,
        value: Value,
        controls: bool,
    ) -> Flow<()> {
        // A container written to a peered variable becomes part of it (tagged below).
        let stored =
            matches!(value, Value::List(_) | Value::Map(_) | Value::Struct(_)).then(|| value.clone());
        let mut value = Some(value);
        // One look at the slot (is it peered, may this side write it, the lock, the write),
        // then one at the log (the lock held, the undo).
        let (peered, foreign) = poll_fn(|cx| -> Poll<Flow<(bool, Option<Foreign>)>> {
            if Self::is_peered(ep, slot) && self.inner.admitted.load(Ordering::Relaxed) != ep.serial {
                // A write this side may not make is refused before it asks for admission.
                let foreign = ep.slots.lock().get(slot).and_then(|s| s.foreign);
                if let Some(f) = foreign.filter(|_| controls) {
                    return Poll::Ready(f.refuse());
                }
                std::task::ready!(self.poll_admitted(cx, ep))?;
            }
            let mut slots = ep.slots.lock();
            let Some(s) = slots.get_mut(slot) else { return no_variable(ep, slot) };
            if let Some(f) = s.foreign.filter(|_| controls) {
                return Poll::Ready(f.refuse());
            }
            match self.poll_grant(cx, &mut s.lock, Mode::Write) {
                Poll::Ready(Ok(new)) => {
                    let old = std::mem::replace(&mut s.value, value.take().unwrap_or(Value::Nothing));
                    let kind = (s.peered, s.foreign);
                    drop(slots);
                    let mut log = self.inner.log.lock();
                    if new {
                        log.held.push(Held::Slot(ep.clone(), slot));
                    }
                    log.undo.push(Undo::Slot { ep: ep.clone(), slot, old });
                    Poll::Ready(Ok(kind))
                }
                Poll::Ready(Err(a)) => Poll::Ready(Err(a.into())),
                Poll::Pending => Poll::Pending,
            }
        })
        .await?;
        if peered {
            let tag = PeeredTag { core: ep.serial, slot: slot as u32, foreign };
            if let Some(stored) = &stored {
                crate::core::value::tag_value(stored, &[tag]);
            }
            self.mark_dirty(&[tag]);
        }
        Ok(())
    }

    /// Installs a peered value received from the other replica: locks the variable for
    /// writing and replaces its contents in place (references to the old container keep
    /// seeing the variable), recording the undo. It does not make the variable dirty.
    pub(crate) async fn apply_peered(&self, ep: &Arc<EndpointCore>, slot: usize, value: Value) -> Flow<()> {
        let foreign = ep.slots.lock().get(slot).and_then(|s| s.foreign);
        let tag = PeeredTag { core: ep.serial, slot: slot as u32, foreign };
        let current = self.with_slot(ep, slot, Mode::Write, false, |v| v.clone()).await?;
        let same_kind = matches!(
            (&current, &value),
            (Value::List(_), Value::List(_))
                | (Value::Map(_), Value::Map(_))
                | (Value::Struct(_), Value::Struct(_))
        );
        if same_kind
            && let (
                Value::List(o) | Value::Map(o) | Value::Struct(o),
                Value::List(n) | Value::Map(n) | Value::Struct(n),
            ) = (&current, &value)
        {
            let fresh = n.snapshot();
            // Lock the container itself: readers that hold a reference to it must not see
            // the change before this transaction ends.
            let old = self.with_obj_untracked(o, |d| std::mem::replace(d, fresh.clone())).await?;
            self.log_undo(Undo::Contents { obj: o.clone(), old });
            // The objects inside are the received ones (shared with `value`): mark them.
            crate::core::value::tag_value(&value, &[tag]);
        } else {
            crate::core::value::tag_value(&value, &[tag]);
            let mut value = Some(value);
            let old = self
                .with_slot(ep, slot, Mode::Write, false, |v| {
                    std::mem::replace(v, value.take().unwrap_or(Value::Nothing))
                })
                .await?;
            self.log_undo(Undo::Slot { ep: ep.clone(), slot, old });
        }
        Ok(())
    }
}

/// What an access to slot `slot`, which `ep` does not have, finds.
fn no_variable<T>(ep: &EndpointCore, slot: usize) -> Poll<Flow<T>> {
    Poll::Ready(Err(Exception::application(format!("no variable {slot} on {}", ep.name)).into()))
}
