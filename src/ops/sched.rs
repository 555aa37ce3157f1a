//! Who may interrupt whom. gRPC core's completion-queue thread wakes for every
//! network event and completion, several times per call; woken, Linux let it
//! preempt the signing thread at once, so on a busy core each call paid for
//! about eight context switches (perf: a quarter of the server's time in the
//! kernel, mostly switching). Two settings, measured together
//! (scripts/BENCHMARKS.md):
//!
//! - the queue thread is SCHED_BATCH: woken, it no longer preempts; it runs
//!   when the signer blocks or its slice ends, and then handles everything
//!   that arrived meanwhile in one go. An idle signer leaves it the core at
//!   once, so a lone call waits no longer;
//! - the signing threads ask for a 0.5 ms slice (EEVDF's sched_runtime, Linux
//!   6.6 and later; older kernels ignore it), so the queue thread waits at
//!   most about that long under load and tail latency stays where it was.
//!
//! Both are best effort: a sandbox that refuses them leaves the threads as
//! they were.

#[repr(C)]
struct SchedParam {
    priority: i32,
}

/// `struct sched_attr` (linux/sched/types.h), version 1.
#[repr(C)]
struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
    util_min: u32,
    util_max: u32,
}

const SCHED_OTHER: u32 = 0;
const SCHED_BATCH: i32 = 3;
const SYS_SCHED_SETATTR: i64 = 314;
/// The slice the signing threads ask for.
const SIGNER_SLICE_NS: u64 = 500_000;

extern "C" {
    fn sched_setscheduler(pid: i32, policy: i32, param: *const SchedParam) -> i32;
    fn syscall(number: i64, ...) -> i64;
}

/// For gRPC core's completion-queue threads: SCHED_BATCH (nice value kept).
pub fn batch_this_thread() {
    let param = SchedParam { priority: 0 };
    // SAFETY: pid 0 is the calling thread; the struct is initialised.
    if unsafe { sched_setscheduler(0, SCHED_BATCH, &param) } != 0 {
        refused("SCHED_BATCH for the completion-queue thread");
    }
}

/// For the signing threads: SCHED_OTHER with a 0.5 ms slice.
pub fn short_slice_this_thread() {
    let attr = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        policy: SCHED_OTHER,
        flags: 0,
        nice: 0,
        priority: 0,
        runtime: SIGNER_SLICE_NS,
        deadline: 0,
        period: 0,
        util_min: 0,
        util_max: 0,
    };
    // SAFETY: sched_setattr(0 = this thread, attr, flags 0) on an
    // initialised struct whose size field says how much the kernel may read.
    if unsafe { syscall(SYS_SCHED_SETATTR, 0i32, &attr as *const SchedAttr, 0u32) } != 0 {
        refused("a short slice for a signing thread");
    }
}

fn refused(what: &str) {
    log::debug!("{what} refused: {}", std::io::Error::last_os_error());
}
