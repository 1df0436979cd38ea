//! An endpoint's life after creation: running, stopping, stopped (the book's runtime chapter, "Connections over TCP").
//!
//! Every host call enters the endpoint's [`Lifecycle`] for its whole length; once a stop has
//! begun, new calls are refused with [`Error::Stopped`] and the stop waits for the calls
//! already inside to finish (commit, raise or abort). Stop listeners run once, when the stop
//! is complete, whether it was asked for here or by the partner.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use parking_lot::Mutex;
use tokio::sync::{Notify, watch};

use crate::core::error::Error;

/// A stop listener: runs once when the endpoint has stopped.
pub(crate) type StopListener = Box<dyn FnOnce() + Send>;

/// Where an endpoint is in its life.
pub(crate) struct Lifecycle {
    stopping: AtomicBool,
    /// Host calls running now.
    calls: AtomicUsize,
    idle: Notify,
    stopped: watch::Sender<bool>,
    listeners: Mutex<Vec<(u64, StopListener)>>,
    /// The id of the next stop listener.
    next_listener: AtomicU64,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle {
            stopping: AtomicBool::new(false),
            calls: AtomicUsize::new(0),
            idle: Notify::new(),
            stopped: watch::Sender::new(false),
            listeners: Mutex::new(Vec::new()),
            next_listener: AtomicU64::new(0),
        }
    }
}

/// A host call inside the endpoint; leaving it (dropping) lets a waiting stop go on.
pub(crate) struct Call<'a>(&'a Lifecycle);

impl Drop for Call<'_> {
    fn drop(&mut self) {
        if self.0.calls.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Lifecycle {
    /// Enters a host call, unless the endpoint is stopping or stopped.
    pub(crate) fn enter(&self) -> Result<Call<'_>, Error> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let call = Call(self);
        if self.stopping.load(Ordering::SeqCst) {
            return Err(Error::Stopped);
        }
        Ok(call)
    }

    /// Enters a call that code running inside the endpoint makes into it (`self.f()`, a call
    /// back): it finishes what a running call started, so only a completed stop refuses it.
    pub(crate) fn enter_nested(&self) -> Result<Call<'_>, Error> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let call = Call(self);
        if *self.stopped.borrow() {
            return Err(Error::Stopped);
        }
        Ok(call)
    }

    /// Refuses new calls from now on. True for the first caller (who must finish the stop).
    pub(crate) fn begin_stop(&self) -> bool {
        !self.stopping.swap(true, Ordering::SeqCst)
    }

    /// Whether a stop has begun.
    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Waits until no host call is running.
    pub(crate) async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.calls.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Marks the stop complete and runs the listeners (once).
    pub(crate) fn finish_stop(&self) {
        let listeners = std::mem::take(&mut *self.listeners.lock());
        self.stopped.send_replace(true);
        for (_, listener) in listeners {
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(listener)).is_err() {
                tracing::error!("a stop listener panicked");
            }
        }
        // A listener added while the others ran still runs.
        for (_, listener) in std::mem::take(&mut *self.listeners.lock()) {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(listener));
        }
    }

    /// Waits until the stop is complete.
    pub(crate) async fn stopped(&self) {
        let mut rx = self.stopped.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// Adds a stop listener; it runs at once if the endpoint has already stopped. Returns its
    /// id, for [`Lifecycle::remove_on_stop`].
    pub(crate) fn on_stop(&self, listener: StopListener) -> u64 {
        let id = self.next_listener.fetch_add(1, Ordering::Relaxed);
        let mut listeners = self.listeners.lock();
        if *self.stopped.borrow() {
            drop(listeners);
            listener();
        } else {
            listeners.push((id, listener));
        }
        id
    }

    /// Removes stop listener `id`; whether it was still waiting to run.
    pub(crate) fn remove_on_stop(&self, id: u64) -> bool {
        let mut listeners = self.listeners.lock();
        let before = listeners.len();
        listeners.retain(|(i, _)| *i != id);
        listeners.len() != before
    }
}
