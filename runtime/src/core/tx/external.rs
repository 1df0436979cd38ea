//! External cells: reads of the committed or pending value, and writes through a pending
//! copy installed at commit.

use super::*;

impl Tx {
    // ---------------------------------------------------------------- External cells

    /// The current value of an External cell, as this transaction sees it. A container read
    /// from it is a copy: what the cell holds is never reachable from a variable, because the
    /// host reads it without locks.
    pub async fn ext_read(&self, cell: &ExtCell) -> Flow<Value> {
        let (value, pending) = poll_fn(|cx| -> Poll<Flow<(Value, bool)>> {
            let mut state = cell.0.lock();
            match self.poll_grant(cx, &mut state.lock, Mode::Read) {
                Poll::Ready(Ok(new)) => {
                    let read = match &state.pending {
                        Some(p) if state.lock.written_by(&self.inner) => (p.clone(), true),
                        _ => (state.committed.clone(), false),
                    };
                    drop(state);
                    if new {
                        self.hold(Held::Ext(cell.clone()));
                    }
                    Poll::Ready(Ok(read))
                }
                Poll::Ready(Err(a)) => Poll::Ready(Err(a.into())),
                Poll::Pending => Poll::Pending,
            }
        })
        .await?;
        let _ = pending;
        // Containers are copied even from this transaction's own pending value, so that no
        // variable ever aliases what the cell holds (the host reads it without locks).
        match value {
            Value::List(_) | Value::Map(_) | Value::Struct(_) => self.deep_copy(&value).await,
            other => Ok(other),
        }
    }

    /// Takes the write lock of an External cell; returns its pending value if this
    /// transaction already wrote it.
    async fn ext_lock_write(&self, cell: &ExtCell) -> Flow<Option<Value>> {
        poll_fn(|cx| -> Poll<Flow<Option<Value>>> {
            let mut state = cell.0.lock();
            match self.poll_grant(cx, &mut state.lock, Mode::Write) {
                Poll::Ready(Ok(new)) => {
                    let pending = state.pending.clone();
                    drop(state);
                    if new {
                        self.hold(Held::Ext(cell.clone()));
                    }
                    Poll::Ready(Ok(pending))
                }
                Poll::Ready(Err(a)) => Poll::Ready(Err(a.into())),
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    }

    /// Sets the pending value of a cell this transaction write-locked, recording the old one.
    fn ext_set_pending(&self, cell: &ExtCell, value: Value) {
        let old = cell.0.lock().pending.replace(value);
        self.log_undo(Undo::Ext { cell: cell.clone(), old });
    }

    /// The container an External cell holds, for changing it in place (`m[k] = v` on an
    /// External Map): this transaction's private pending copy, made on its first write.
    /// Generated code uses the result only for that change; it must not store it anywhere.
    pub async fn ext_for_write(&self, cell: &ExtCell) -> Flow<Value> {
        if let Some(pending) = self.ext_lock_write(cell).await? {
            return Ok(pending);
        }
        // The committed value is shared with the host: change a private copy.
        let committed = cell.committed();
        let copy = self.deep_copy(&committed).await?;
        self.ext_set_pending(cell, copy.clone());
        Ok(copy)
    }

    /// `extCopy value to cell`: the cell holds a copy of `value` once the transaction commits.
    pub async fn ext_write(&self, cell: &ExtCell, value: Value) -> Flow<()> {
        self.ext_lock_write(cell).await?;
        let copy = self.deep_copy(&value).await?;
        self.ext_set_pending(cell, copy);
        Ok(())
    }
}
