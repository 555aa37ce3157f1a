//! The fixed pool of signing threads. gRPC core's completion-queue thread only
//! accepts and parses calls; token checks and signatures run here, so a burst
//! of signing never stalls accepting connections.

use std::sync::Arc;

#[derive(Clone)]
pub struct Pool {
    threads: Arc<rayon::ThreadPool>,
}

impl Pool {
    pub fn new(count: usize) -> Result<Pool, String> {
        let threads = rayon::ThreadPoolBuilder::new()
            .num_threads(count)
            .thread_name(|i| format!("signer-{i}"))
            // rayon aborts the process on a panicking job unless told otherwise;
            // one bad call must not take the others down.
            .panic_handler(|_| log::error!("a signing job panicked; its call was cancelled"))
            .build()
            .map_err(|e| format!("cannot start {count} signing threads: {e}"))?;
        Ok(Pool {
            threads: Arc::new(threads),
        })
    }

    pub fn spawn(&self, job: impl FnOnce() + Send + 'static) {
        self.threads.spawn(job);
    }

    pub fn threads(&self) -> usize {
        self.threads.current_num_threads()
    }
}
