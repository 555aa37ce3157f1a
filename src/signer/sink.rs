//! Finishing a call from a pool thread without blocking it.
//!
//! `UnarySink::success`/`fail` start sending at once, but the returned future
//! holds gRPC core's reference to the call. Dropping it early unrefs the call
//! before the client's close arrives, and gRPC core then *cancels* the call:
//! the client may see CANCELLED instead of our answer. Blocking the worker on
//! it would cost a thread hand-off per call. Instead the future is parked here
//! and polled again by whichever thread wakes it (gRPC core's completion-queue
//! thread, when the batch completes) until it is done.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};

type Pending = Pin<Box<dyn Future<Output = ()> + Send>>;

struct Parked(Mutex<Option<Pending>>);

impl Parked {
    fn poll(self: &Arc<Self>) {
        let waker = Waker::from(Arc::clone(self));
        let mut slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(fut) = slot.as_mut() {
            if let Poll::Ready(()) = fut.as_mut().poll(&mut Context::from_waker(&waker)) {
                *slot = None;
            }
        }
    }
}

impl Wake for Parked {
    fn wake(self: Arc<Self>) {
        self.poll();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.poll();
    }
}

/// Drives `result` (a sink's completion future) to its end in the background.
/// A failure there means the client went away; there is no one left to tell.
pub fn finish<F, E>(result: F)
where
    F: Future<Output = Result<(), E>> + Send + 'static,
{
    let parked = Arc::new(Parked(Mutex::new(Some(Box::pin(async move {
        let _ = result.await;
    })))));
    parked.poll();
}
