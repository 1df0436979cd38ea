//! Blocks that wait only for locks, run as plain functions and restarted.
//!
//! Most blocks of a sequence wait for nothing but the locks of the data they touch. Such a
//! block is generated as a plain `fn` (an `async fn` costs rustc several times as much to
//! check), whose lock operations go through [`now`]: it polls the operation once, and if
//! the lock is not free, the request stays queued (in age order, with the task's waker) and
//! the block stops with [`Abort::Blocked`]. Its runner, [`run`], then undoes what the block
//! did (back to a savepoint taken before it began, and the sequence data as they were),
//! waits until it is woken (the lock freed, or the transaction wounded), and runs the block
//! again from the start, now holding the locks it got. The generator makes a block
//! restartable only if it calls no host function, no other endpoint and no function that
//! waits, and starts no sequence, so nothing of an undone run shows: its writes, its
//! sequence data and its effects (`print`, `signal`) go with it.

use std::cell::RefCell;
use std::future::Future;
use std::task::{Context, Poll, Waker};

use crate::core::error::{Abort, Flow, Raise, app_error};
use crate::core::tx::Tx;
use crate::core::value::Value;

thread_local! {
    /// The waker of the task running a restartable block on this thread, while it runs (the
    /// block's lock requests wake that task). Set and cleared around each run by [`run`].
    static WAKER: RefCell<Option<Waker>> = const { RefCell::new(None) };
}

/// Runs `op`, a lock operation of a restartable block, at once: its outcome, or
/// `Abort::Blocked` if it must wait (its request stays queued, and the block's task is
/// woken when it may go on).
pub fn now<T>(op: impl Future<Output = Flow<T>>) -> Flow<T> {
    let Some(waker) = WAKER.with(|w| w.borrow().clone()) else {
        return app_error("internal error: a restartable block's operation ran outside its runner");
    };
    let op = std::pin::pin!(op);
    match op.poll(&mut Context::from_waker(&waker)) {
        Poll::Ready(outcome) => outcome,
        Poll::Pending => Err(Raise::Abort(Abort::Blocked)),
    }
}

/// Runs `block` (a restartable block: a plain `fn` whose waits go through [`now`]) on
/// `data` in `tx` until it finishes without having to wait: each run that must wait is
/// undone, and the next one starts once the task is woken.
pub(crate) async fn run<F>(tx: &Tx, data: &mut [Value], mut block: F) -> Flow<()>
where
    F: FnMut(&mut [Value]) -> Flow<()>,
{
    let start: Vec<Value> = data.to_vec();
    let savepoint = tx.savepoint();
    std::future::poll_fn(|cx| {
        // The previous waker is put back when the run ends, even by unwinding.
        struct Restore(Option<Waker>);
        impl Drop for Restore {
            fn drop(&mut self) {
                WAKER.with(|w| *w.borrow_mut() = self.0.take());
            }
        }
        let _restore = Restore(WAKER.with(|w| w.replace(Some(cx.waker().clone()))));
        match block(data) {
            Err(Raise::Abort(Abort::Blocked)) => {
                tx.rollback_to(savepoint.clone());
                data.clone_from_slice(&start);
                Poll::Pending
            }
            outcome => Poll::Ready(outcome),
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::sync::{Arc, Mutex};
    use std::task::{Context, Poll, Waker};

    use super::{now, run};
    use crate::core::endpoint::EndpointCore;
    use crate::core::error::{Abort, Raise};
    use crate::core::tx::{Clock, Tx};
    use crate::core::value::Value;
    use crate::core::wakers::Flag;

    fn number(v: &Value) -> f64 {
        match v {
            Value::Number(n) => *n,
            other => panic!("expected a number, got {other:?}"),
        }
    }

    /// A block that must wait for a lock is undone (its sequence data, its writes and its
    /// effects), woken when the lock is released, and run again: it completes once, with
    /// what the lock's holder committed.
    #[test]
    fn a_block_that_must_wait_is_undone_and_run_again() {
        let printed = Arc::new(Mutex::new(Vec::<String>::new()));
        let sink = printed.clone();
        let ep = EndpointCore::with_printer(
            "E",
            vec![Value::Number(0.0), Value::Number(0.0)],
            Arc::new(move |line: &str| sink.lock().expect("the lines").push(line.to_owned())),
        );
        let clock = Clock::with_origin(1);
        let (holder, tx) = (Tx::begin(&clock, clock.next()), Tx::begin(&clock, clock.next()));
        let mut hold = Box::pin(holder.write(&ep, 0, Value::Number(5.0)));
        assert!(matches!(hold.as_mut().poll(&mut Context::from_waker(Waker::noop())), Poll::Ready(Ok(()))));

        let runs = std::cell::Cell::new(0);
        let mut data = vec![Value::Number(0.0), Value::Nothing];
        let (woken, waker) = Flag::new();
        {
            // Each run: counts itself in the sequence data, writes slot 1, prints, then reads
            // slot 0, which the holder has.
            let mut block = Box::pin(run(&tx, &mut data, |data| {
                runs.set(runs.get() + 1);
                data[0] = Value::Number(number(&data[0]) + 1.0);
                now(tx.write(&ep, 1, Value::Number(7.0)))?;
                tx.print(&ep, "once".into());
                data[1] = now(tx.read(&ep, 0))?;
                Ok(())
            }));
            let mut cx = Context::from_waker(&waker);
            assert!(block.as_mut().poll(&mut cx).is_pending(), "the block waits for the holder");
            assert_eq!(runs.get(), 1);
            assert!(!woken.raised());
            drop(hold);
            let _ = holder.commit().map(drop);
            assert!(woken.raised(), "the release wakes the block's task");
            assert!(matches!(block.as_mut().poll(&mut cx), Poll::Ready(Ok(()))));
            assert_eq!(runs.get(), 2, "run again once woken");
        }
        assert_eq!(number(&data[0]), 1.0, "the sequence data were put back before the second run");
        assert_eq!(number(&data[1]), 5.0, "the second run read what the holder committed");
        let _ = tx.commit().map(drop);
        assert_eq!(*printed.lock().expect("the lines"), ["once"], "the undone run's effect was dropped");
        let reader = Tx::begin(&clock, clock.next());
        let mut read = Box::pin(reader.read(&ep, 1));
        match read.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(Ok(v)) => assert_eq!(number(&v), 7.0),
            other => panic!("expected the committed write, got {other:?}"),
        }
    }

    /// A block waiting for a lock is woken by a wound, and stops with it.
    #[test]
    fn a_waiting_block_stops_when_wounded() {
        let ep = EndpointCore::new("E", vec![Value::Number(0.0)]);
        let clock = Clock::with_origin(1);
        let (holder, tx) = (Tx::begin(&clock, clock.next()), Tx::begin(&clock, clock.next()));
        let mut hold = Box::pin(holder.write(&ep, 0, Value::Number(5.0)));
        assert!(matches!(hold.as_mut().poll(&mut Context::from_waker(Waker::noop())), Poll::Ready(Ok(()))));
        let mut data = vec![Value::Nothing];
        let (woken, waker) = Flag::new();
        let mut block = Box::pin(run(&tx, &mut data, |data| {
            data[0] = now(tx.read(&ep, 0))?;
            Ok(())
        }));
        let mut cx = Context::from_waker(&waker);
        assert!(block.as_mut().poll(&mut cx).is_pending());
        tx.wound();
        assert!(woken.raised(), "the wound wakes the block's task");
        assert!(matches!(block.as_mut().poll(&mut cx), Poll::Ready(Err(Raise::Abort(Abort::Wounded)))));
    }

    /// Outside a restartable block's runner, `now` is an error, not a hang or a panic.
    #[test]
    fn now_outside_a_runner_is_an_error() {
        let outcome: crate::core::error::Flow<()> = now(std::future::pending());
        match outcome {
            Err(Raise::Exception(e)) => assert!(e.message.contains("outside its runner"), "{}", e.message),
            other => panic!("expected an exception, got {other:?}"),
        }
    }
}
