//! FIPS mode. Everything cryptographic here goes through the system OpenSSL —
//! TLS inside gRPC core and our signing alike — so a FIPS-validated OpenSSL 3
//! provider can do all of it. `--fips` loads the `fips` and `base` providers
//! and makes `fips=yes` the default property query, before anything else uses
//! OpenSSL; the policy then refuses keys the validated modules do not approve.

use std::ffi::{c_char, c_int, c_uint, c_void, CStr};
use std::ptr;
use std::sync::OnceLock;

use openssl::provider::Provider;

/// What FIPS mode is in force, for logs, `check` and metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FipsState {
    pub enabled: bool,
    /// `--fips`, or a configuration (OPENSSL_CONF) that had already done it.
    pub source: &'static str,
    /// Name and version of the provider that does SHA-256, e.g. `fips 3.0.8`.
    pub provider: String,
    pub allow_ed25519: bool,
}

static STATE: OnceLock<FipsState> = OnceLock::new();

/// The state set up at startup (off if `setup` never ran).
pub fn state() -> FipsState {
    STATE.get().cloned().unwrap_or(FipsState {
        enabled: false,
        source: "off",
        provider: String::new(),
        allow_ed25519: false,
    })
}

pub fn enabled() -> bool {
    state().enabled
}

/// Why Ed25519 is refused in FIPS mode, for every message that says so.
pub const ED25519_REFUSED: &str = "validated OpenSSL 3.0/3.1 FIPS modules list EdDSA as \
    non-approved; use ECDSA P-256/P-384/P-521 or RSA >= 2048, or pass --fips-allow-ed25519 if \
    your module approves EdDSA";

/// Turns FIPS mode on when asked (or notices it is already on through
/// OPENSSL_CONF), and proves it by checking which provider does SHA-256.
pub fn setup(requested: bool, allow_ed25519: bool) -> Result<FipsState, String> {
    openssl::init();
    let already = properties_fips();
    if !requested && !already {
        let state = FipsState {
            enabled: false,
            source: "off",
            provider: digest_provider().unwrap_or_default(),
            allow_ed25519: false,
        };
        let _ = STATE.set(state.clone());
        return Ok(state);
    }
    if requested {
        for name in ["fips", "base"] {
            let provider = Provider::load(None, name).map_err(|e| load_error(name, &e))?;
            // Loaded for the life of the process: unloading it would pull the
            // algorithms out from under gRPC core.
            std::mem::forget(provider);
        }
        // SAFETY: NULL is the default library context; the call only sets its
        // default property query.
        if unsafe { openssl_sys::EVP_default_properties_enable_fips(ptr::null_mut(), 1) } != 1 {
            return Err(
                "FIPS mode: OpenSSL refused to make fips=yes the default property query"
                    .to_string(),
            );
        }
    }
    let provider =
        digest_provider().ok_or("FIPS mode: no provider offers SHA-256 with fips=yes")?;
    if !provider.starts_with("fips") {
        return Err(format!(
            "FIPS mode: SHA-256 comes from the {provider:?} provider, not fips; check OPENSSL_CONF"
        ));
    }
    let state = FipsState {
        enabled: true,
        source: if already { "OPENSSL_CONF" } else { "--fips" },
        provider,
        allow_ed25519,
    };
    let _ = STATE.set(state.clone());
    Ok(state)
}

fn load_error(name: &str, e: &openssl::error::ErrorStack) -> String {
    let reason = super::openssl_reason(e);
    format!(
        "FIPS mode: the OpenSSL {name} provider cannot be loaded ({reason}); point OpenSSL at a \
         validated provider: OPENSSL_MODULES=<directory of fips.so> and OPENSSL_CONF=<a config \
         that includes the fipsmodule.cnf written by `openssl fipsinstall`> (scripts/fips-provider.sh \
         builds one for trials)"
    )
}

fn properties_fips() -> bool {
    // SAFETY: reads the default library context's property query.
    unsafe { openssl_sys::EVP_default_properties_is_fips_enabled(ptr::null_mut()) == 1 }
}

/// `OSSL_PARAM_UTF8_PTR` (core.h): a pointer to a UTF-8 string.
const OSSL_PARAM_UTF8_PTR: c_uint = 6;

extern "C" {
    fn EVP_MD_get0_provider(md: *const openssl_sys::EVP_MD) -> *const openssl_sys::OSSL_PROVIDER;
    fn OSSL_PROVIDER_get0_name(prov: *const openssl_sys::OSSL_PROVIDER) -> *const c_char;
    fn OSSL_PROVIDER_get_params(
        prov: *const openssl_sys::OSSL_PROVIDER,
        params: *mut openssl_sys::OSSL_PARAM,
    ) -> c_int;
}

/// `name version` of the provider a SHA-256 fetch resolves to under the
/// current default properties.
fn digest_provider() -> Option<String> {
    // SAFETY: fetch (checked non-NULL), inspect and free one EVP_MD on every
    // path. The provider and its name (both checked non-NULL) belong to
    // OpenSSL and outlive this function; the parameter array, terminated by
    // OSSL_PARAM_construct_end, points OpenSSL at our `version` pointer,
    // which it sets to a string of its own (checked non-NULL).
    unsafe {
        let md = openssl_sys::EVP_MD_fetch(ptr::null_mut(), c"SHA256".as_ptr(), ptr::null());
        if md.is_null() {
            drop(openssl::error::ErrorStack::get());
            return None;
        }
        let prov = EVP_MD_get0_provider(md);
        let raw_name = if prov.is_null() {
            ptr::null()
        } else {
            OSSL_PROVIDER_get0_name(prov)
        };
        let name = if raw_name.is_null() {
            None
        } else {
            let name = CStr::from_ptr(raw_name).to_string_lossy().into_owned();
            let mut version: *const c_char = ptr::null();
            let mut params = [
                openssl_sys::OSSL_PARAM {
                    key: c"version".as_ptr(),
                    data_type: OSSL_PARAM_UTF8_PTR,
                    data: (&mut version as *mut *const c_char).cast::<c_void>(),
                    data_size: 0,
                    return_size: usize::MAX,
                },
                openssl_sys::OSSL_PARAM_construct_end(),
            ];
            if OSSL_PROVIDER_get_params(prov, params.as_mut_ptr()) == 1 && !version.is_null() {
                Some(format!(
                    "{name} {}",
                    CStr::from_ptr(version).to_string_lossy()
                ))
            } else {
                drop(openssl::error::ErrorStack::get());
                Some(name)
            }
        };
        openssl_sys::EVP_MD_free(md);
        name
    }
}
