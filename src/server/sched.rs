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

/// `struct sched_attr` (linux/sched/types.h, version 1, 56 bytes): the libc
/// crate has no definition of it, and glibc 2.36 no wrapper for the call.
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

/// The slice the signing threads ask for.
const SIGNER_SLICE_NS: u64 = 500_000;

/// For gRPC core's completion-queue threads: SCHED_BATCH (nice value kept).
pub fn batch_this_thread() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 is the calling thread; `param` is initialised and lives
    // through the call.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) } != 0 {
        refused("SCHED_BATCH for the completion-queue thread");
    }
}

/// For the signing threads: SCHED_OTHER with a 0.5 ms slice.
pub fn short_slice_this_thread() {
    let attr = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        policy: libc::SCHED_OTHER as u32,
        flags: 0,
        nice: 0,
        priority: 0,
        runtime: SIGNER_SLICE_NS,
        deadline: 0,
        period: 0,
        util_min: 0,
        util_max: 0,
    };
    // SAFETY: sched_setattr(0 = this thread, attr, flags 0) on an initialised
    // struct that outlives the call, whose size field tells the kernel how
    // much it may read. The syscall number comes from the libc crate for the
    // target architecture (314 on x86-64, 274 on arm64).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_sched_setattr,
            0 as libc::pid_t,
            &attr as *const SchedAttr,
            0 as libc::c_uint,
        )
    };
    if rc != 0 {
        refused("a short slice for a signing thread");
    }
}

fn refused(what: &str) {
    log::debug!("{what} refused: {}", std::io::Error::last_os_error());
}

#[cfg(test)]
mod tests {
    /// The kernel's struct sched_attr version 1 is 56 bytes on every
    /// architecture (SCHED_ATTR_SIZE_VER1).
    #[test]
    fn sched_attr_has_the_kernel_layout() {
        assert_eq!(std::mem::size_of::<super::SchedAttr>(), 56);
    }
}
