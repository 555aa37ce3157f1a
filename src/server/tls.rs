//! TLS as gRPC core itself now sets it up (grpc/grpc#41805, fixed by PR
//! #41807 in 2026): the key-exchange groups OpenSSL would choose, and no
//! session tickets. gRPC core 1.56, the one grpcio 0.13 bundles, calls
//! `SSL_CTX_set_tmp_ecdh(P-256)` on every context it makes; under OpenSSL 3
//! that makes P-256 the only group. Every Talos worker (Go's crypto/tls)
//! offers X25519 first, so each of its handshakes paid a HelloRetryRequest
//! and OpenSSL 3.0's full check of its P-256 share, and OpenSSL sent two
//! session tickets no worker ever uses (together about a fifth of a new
//! connection's instructions; scripts/BENCHMARKS.md).
//!
//! build.rs links every binary of this package with `--wrap=SSL_CTX_ctrl`
//! (the macro `SSL_CTX_set_tmp_ecdh` is a call of it), so gRPC core's call
//! lands here: that one request becomes our group list and a ticket count of
//! zero; every other control goes to OpenSSL unchanged. Our own gRPC clients
//! (`request`, the load generator, the tests) get the same groups.
//!
//! This file and the two link arguments can go once grpcio bundles a gRPC
//! core with that fix. If a grpcio stops making the call, tests/tls.rs fails
//! (it checks the group a Go worker negotiates, that one ServerHello was
//! needed, and that no ticket arrives), rather than P-256 coming back
//! unnoticed.

use std::ffi::{c_int, c_long, c_void, CStr};
use std::sync::OnceLock;

use openssl_sys as sys;

use crate::pki::fips;

/// X25519 first, as Go and OpenSSL order them, then the NIST curves.
const GROUPS: &CStr = c"X25519:P-256:P-384";
/// FIPS-approved groups only (X25519 is not approved for validated OpenSSL
/// 3.0/3.1 modules).
const FIPS_GROUPS: &CStr = c"P-256:P-384";

/// The group list for this process's mode.
fn groups() -> &'static CStr {
    if fips::enabled() {
        FIPS_GROUPS
    } else {
        GROUPS
    }
}

type CtxCtrl = unsafe extern "C" fn(*mut sys::SSL_CTX, c_int, c_long, *mut c_void) -> c_long;

/// libssl's own `SSL_CTX_ctrl`, found past this executable. Looked up rather
/// than linked as `__real_SSL_CTX_ctrl`, so that a binary linked without
/// `--wrap` (a fuzz target) never needs that symbol.
fn real_ctrl() -> Option<CtxCtrl> {
    static REAL: OnceLock<usize> = OnceLock::new();
    let addr = *REAL.get_or_init(|| {
        // SAFETY: dlsym with RTLD_NEXT and a NUL-terminated name only looks
        // the symbol up; NULL (not found) is checked below.
        unsafe { libc::dlsym(libc::RTLD_NEXT, c"SSL_CTX_ctrl".as_ptr()) as usize }
    });
    // SAFETY: a non-NULL address of the symbol `SSL_CTX_ctrl` in libssl is
    // that function, whose C signature `CtxCtrl` is.
    (addr != 0).then(|| unsafe { std::mem::transmute::<usize, CtxCtrl>(addr) })
}

/// What every `SSL_CTX_ctrl` call in this program's static code reaches (see
/// the module comment). It must not unwind: it only calls OpenSSL.
///
/// # Safety
/// The caller's contract is `SSL_CTX_ctrl`'s: `ctx` a valid context, `parg`
/// what `cmd` expects.
#[no_mangle]
pub unsafe extern "C" fn __wrap_SSL_CTX_ctrl(
    ctx: *mut sys::SSL_CTX,
    cmd: c_int,
    larg: c_long,
    parg: *mut c_void,
) -> c_long {
    let Some(real) = real_ctrl() else {
        // No libssl to forward to: fail this control as OpenSSL would.
        return 0;
    };
    if cmd != sys::SSL_CTRL_SET_TMP_ECDH || ctx.is_null() {
        // SAFETY: the caller's arguments, unchanged, to the function they
        // were meant for.
        return unsafe { real(ctx, cmd, larg, parg) };
    }
    // SAFETY: `ctx` is the caller's valid context (checked non-NULL); the
    // group list is a NUL-terminated static string OpenSSL only reads.
    let set = unsafe {
        real(
            ctx,
            sys::SSL_CTRL_SET_GROUPS_LIST,
            0,
            groups().as_ptr().cast_mut().cast(),
        )
    };
    if set != 1 {
        drop(openssl::error::ErrorStack::get());
        // Keep what gRPC core asked for rather than fail its context.
        // SAFETY: as above, the caller's own request.
        return unsafe { real(ctx, cmd, larg, parg) };
    }
    // SAFETY: a valid context; 0 tickets is a valid count. Tickets matter to
    // servers only, and a client context ignores the setting.
    if unsafe { sys::SSL_CTX_set_num_tickets(ctx, 0) } != 1 {
        drop(openssl::error::ErrorStack::get());
    }
    1
}
