//! The fixed pool of signing threads. gRPC core's completion-queue thread only
//! accepts and decodes calls; token checks and signatures run here, so a burst
//! of signing never stalls accepting connections. The queue in front of it is
//! bounded: when full, callers are told so at once instead of memory growing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

#[derive(Clone)]
pub struct Pool {
    threads: Arc<rayon::ThreadPool>,
    /// Jobs queued or running.
    pending: Arc<AtomicUsize>,
    max_pending: usize,
}

/// The queue is full; the job was not taken.
#[derive(Debug)]
pub struct Full {
    pub pending: usize,
}

impl Pool {
    /// `on_start` runs on each signing thread as it starts (the server sets
    /// its scheduling there).
    pub fn new(count: usize, max_pending: usize, on_start: fn()) -> Result<Pool, String> {
        let threads = rayon::ThreadPoolBuilder::new()
            .num_threads(count)
            .thread_name(|i| format!("signer-{i}"))
            .start_handler(move |_| on_start())
            // rayon aborts the process on a panicking job unless told otherwise;
            // one bad call must not take the others down.
            .panic_handler(|_| log::error!("a signing job panicked; its call was cancelled"))
            .build()
            .map_err(|e| format!("cannot start {count} signing threads: {e}"))?;
        Ok(Pool {
            threads: Arc::new(threads),
            pending: Arc::new(AtomicUsize::new(0)),
            max_pending: max_pending.max(1),
        })
    }

    /// Takes a place in the queue, or says how full it is. Reserving first
    /// lets the caller answer a refused call itself.
    pub fn reserve(&self) -> Result<Slot, Full> {
        let before = self.pending.fetch_add(1, Ordering::AcqRel);
        let slot = Slot {
            threads: Arc::clone(&self.threads),
            done: Decrement(Arc::clone(&self.pending)),
        };
        if before >= self.max_pending {
            drop(slot);
            return Err(Full { pending: before });
        }
        Ok(slot)
    }

    pub fn threads(&self) -> usize {
        self.threads.current_num_threads()
    }

    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }

    pub fn max_pending(&self) -> usize {
        self.max_pending
    }
}

/// A reserved place in the queue; released when its job ends (or if dropped).
pub struct Slot {
    threads: Arc<rayon::ThreadPool>,
    done: Decrement,
}

impl Slot {
    pub fn spawn(self, job: impl FnOnce() + Send + 'static) {
        let done = self.done;
        self.threads.spawn(move || {
            // Released even if the job panics.
            let _done = done;
            job();
        });
    }
}

struct Decrement(Arc<AtomicUsize>);

impl Drop for Decrement {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn refuses_when_full_and_recovers() {
        let pool = Pool::new(1, 2, || {}).unwrap();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let (done_tx, done_rx) = mpsc::channel::<u32>();
        let release = std::sync::Mutex::new(release_rx);
        let release = Arc::new(release);
        for i in 0..2 {
            let (r, d) = (Arc::clone(&release), done_tx.clone());
            pool.reserve().unwrap().spawn(move || {
                r.lock().unwrap().recv().unwrap();
                d.send(i).unwrap();
            });
        }
        let full = pool.reserve().err().expect("third job refused");
        assert_eq!(full.pending, 2);
        release_tx.send(()).unwrap();
        release_tx.send(()).unwrap();
        for _ in 0..2 {
            done_rx.recv_timeout(Duration::from_secs(5)).unwrap();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while pool.pending() > 0 {
            assert!(std::time::Instant::now() < deadline);
            std::thread::yield_now();
        }
        drop(pool.reserve().expect("room again"));
        assert_eq!(pool.pending(), 0, "an unused slot is released");
    }
}
