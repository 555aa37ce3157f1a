//! Raises the open-files limit to its hard maximum, as the Go runtime does for
//! every Go server: each connection is a descriptor, and a soft limit of 1024
//! would let a few hundred idle sockets starve real workers of accept().

#[repr(C)]
struct Rlimit {
    cur: u64,
    max: u64,
}

const RLIMIT_NOFILE: i32 = 7;

extern "C" {
    fn getrlimit(resource: i32, rlim: *mut Rlimit) -> i32;
    fn setrlimit(resource: i32, rlim: *const Rlimit) -> i32;
}

/// Returns the open-files limit now in force.
pub fn raise_open_files_limit() -> u64 {
    let mut lim = Rlimit { cur: 0, max: 0 };
    // SAFETY: plain libc calls on a properly sized, initialised struct.
    unsafe {
        if getrlimit(RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.cur < lim.max {
            let raised = Rlimit {
                cur: lim.max,
                max: lim.max,
            };
            if setrlimit(RLIMIT_NOFILE, &raised) == 0 {
                return raised.cur;
            }
        }
    }
    lim.cur
}
