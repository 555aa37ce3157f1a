//! Every libcrypto call the `openssl` crate does not wrap, in one place. Each
//! `unsafe` block says why it is sound; every pointer OpenSSL may return as
//! NULL is checked before use, and every failure becomes a `CryptoError` that
//! says which step failed even when OpenSSL's error queue is empty.
//!
//! Functions that OpenSSL 3 exports but openssl-sys does not declare are
//! declared here with the signatures of OpenSSL 3.0's headers.

use std::ffi::{c_char, c_int, c_long, c_void, CStr};
use std::ptr;
use std::sync::OnceLock;

use foreign_types::{ForeignType, ForeignTypeRef};
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, PKeyRef, Params, Private, Public};
use openssl::stack::{Stack, StackRef};
use openssl::x509::{GeneralName, GeneralNameRef, X509Extension, X509Ref, X509Req, X509ReqRef};
use openssl_sys as sys;

use super::CryptoError;

extern "C" {
    fn X509_get_X509_PUBKEY(x: *const sys::X509) -> *mut c_void;
    fn X509_PUBKEY_set0_param(
        pubkey: *mut c_void,
        aobj: *mut sys::ASN1_OBJECT,
        ptype: c_int,
        pval: *mut c_void,
        penc: *mut u8,
        penclen: c_int,
    ) -> c_int;
    fn X509_REQ_it() -> *const c_void;
    fn ASN1_item_d2i_ex(
        val: *mut *mut c_void,
        input: *mut *const u8,
        len: c_long,
        it: *const c_void,
        ctx: *mut sys::OSSL_LIB_CTX,
        propq: *const c_char,
    ) -> *mut c_void;
    fn PEM_bytes_read_bio(
        data: *mut *mut u8,
        len: *mut c_long,
        name: *mut *mut c_char,
        wanted: *const c_char,
        bio: *mut sys::BIO,
        cb: Option<PasswordCallback>,
        u: *mut c_void,
    ) -> c_int;
    fn X509_REQ_verify_ex(
        req: *mut sys::X509_REQ,
        key: *mut sys::EVP_PKEY,
        ctx: *mut sys::OSSL_LIB_CTX,
        propq: *const c_char,
    ) -> c_int;
    fn EVP_PKEY_dup(key: *mut sys::EVP_PKEY) -> *mut sys::EVP_PKEY;
    fn EVP_PKEY_set1_encoded_public_key(
        key: *mut sys::EVP_PKEY,
        bytes: *const u8,
        len: usize,
    ) -> c_int;
    fn EVP_PKEY_get_group_name(
        key: *const sys::EVP_PKEY,
        name: *mut c_char,
        size: usize,
        len: *mut usize,
    ) -> c_int;
    fn EVP_PKEY_get0_provider(key: *const sys::EVP_PKEY) -> *const c_void;
    fn OSSL_PARAM_construct_utf8_string(
        key: *const c_char,
        buf: *mut c_char,
        size: usize,
    ) -> sys::OSSL_PARAM;
}

/// `V_ASN1_UNDEF` (asn1.h): an AlgorithmIdentifier without parameters.
const V_ASN1_UNDEF: c_int = -1;

/// The file name OpenSSL's allocator records for our allocations.
const HERE: &CStr = c"pki/ffi.rs";

type PasswordCallback = unsafe extern "C" fn(*mut c_char, c_int, c_int, *mut c_void) -> c_int;

/// Whether the certificate has basicConstraints CA:TRUE.
pub fn is_ca(cert: &X509Ref) -> bool {
    // SAFETY: `cert` is a valid X509 for the borrow; the call only decodes
    // and caches its extensions.
    let flags = unsafe { sys::X509_get_extension_flags(cert.as_ptr()) };
    flags & sys::EXFLAG_CA != 0
}

/// What a CSR's requested extensions say about subjectAltName.
pub enum RequestedSans {
    None,
    Names(Stack<GeneralName>),
    /// The extension appears more than once: ambiguous, so refused.
    Duplicate,
    /// The extension is there but does not decode.
    Malformed,
}

/// Decodes the subjectAltName extension among a CSR's requested extensions.
pub fn requested_sans(exts: &StackRef<X509Extension>) -> RequestedSans {
    let mut crit: c_int = 0;
    // SAFETY: `exts` is a valid stack for the borrow; X509V3_get_d2i returns
    // a new GENERAL_NAMES we own, or NULL with `crit` saying why.
    let names = unsafe {
        sys::X509V3_get_d2i(
            exts.as_ptr(),
            sys::NID_subject_alt_name,
            &mut crit,
            ptr::null_mut(),
        )
    };
    if !names.is_null() {
        // SAFETY: a non-NULL result for NID_subject_alt_name is a
        // GENERAL_NAMES (STACK_OF(GENERAL_NAME)), now owned by the Stack.
        return RequestedSans::Names(unsafe { Stack::from_ptr(names.cast()) });
    }
    // A failed decode may have queued errors: clear them so they cannot be
    // mistaken for the next call's.
    drop(ErrorStack::get());
    match crit {
        -1 => RequestedSans::None,
        -2 => RequestedSans::Duplicate,
        _ => RequestedSans::Malformed,
    }
}

/// A GeneralName's type (`GEN_DNS`, `GEN_URI`…) and, for the string and
/// address types, its raw content. The safe accessors hide names that are
/// not UTF-8, and those must be refused, not missed.
pub fn general_name(name: &GeneralNameRef) -> (c_int, &[u8]) {
    // SAFETY: a GeneralNameRef points to a valid GENERAL_NAME for the borrow.
    let (kind, d) = unsafe {
        let raw = &*name.as_ptr();
        (raw.type_, raw.d)
    };
    let is_string = matches!(
        kind,
        sys::GEN_DNS | sys::GEN_EMAIL | sys::GEN_URI | sys::GEN_IPADD
    );
    if !is_string || d.is_null() {
        return (kind, &[]);
    }
    // SAFETY: for these four types the union member is an ASN1_STRING
    // (IA5String or OCTET STRING), checked non-NULL; its data pointer and
    // length stay valid while `name` is borrowed. A NULL data pointer or a
    // non-positive length is an empty string.
    let bytes = unsafe {
        let s = d.cast::<sys::ASN1_STRING>();
        let data = sys::ASN1_STRING_get0_data(s);
        let len = sys::ASN1_STRING_length(s);
        match usize::try_from(len) {
            Ok(len) if len > 0 && !data.is_null() => std::slice::from_raw_parts(data, len),
            _ => &[],
        }
    };
    (kind, bytes)
}

/// Whether a CSR carries an extensionRequest attribute at all.
pub fn has_extension_request(req: &X509ReqRef) -> bool {
    // SAFETY: valid X509_REQ for the borrow; the lookup only reads it.
    let idx = unsafe { sys::X509_REQ_get_attr_by_NID(req.as_ptr(), sys::NID_ext_req, -1) };
    drop(ErrorStack::get());
    idx >= 0
}

/// The AlgorithmIdentifier of a SubjectPublicKeyInfo, in the three forms
/// the keys we certify take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spki {
    pub algorithm: Nid,
    pub params: SpkiParams,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpkiParams {
    /// No parameters (Ed25519, RFC 8410).
    Absent,
    /// An ASN.1 NULL (RSA, RFC 3279).
    Null,
    /// A named curve's OID (ECDSA, RFC 5480).
    Curve(Nid),
}

/// Sets the certificate's public key to `bits` under `spki`, byte for byte as
/// the CSR carried them. `X509_set_pubkey` would push the key through OpenSSL
/// 3's encoder and then its decoder: measured at 60 % of the instructions of
/// a whole issuance.
pub fn set_public_key(cert: &X509Ref, spki: &Spki, bits: &[u8]) -> Result<(), CryptoError> {
    let step = "copying the CSR's public key into the certificate";
    let len =
        c_int::try_from(bits.len()).map_err(|_| CryptoError::message(step, "key too long"))?;
    if bits.is_empty() {
        return Err(CryptoError::message(step, "empty key"));
    }
    let (ptype, pval) = match spki.params {
        SpkiParams::Absent => (V_ASN1_UNDEF, ptr::null_mut()),
        SpkiParams::Null => (sys::V_ASN1_NULL, ptr::null_mut()),
        SpkiParams::Curve(curve) => {
            // SAFETY: OBJ_nid2obj returns a static object (or NULL for an
            // unknown NID); X509_PUBKEY_set0_param takes it, and freeing a
            // static object is a no-op.
            let obj = unsafe { sys::OBJ_nid2obj(curve.as_raw()) };
            if obj.is_null() {
                return Err(CryptoError::last(step));
            }
            (sys::V_ASN1_OBJECT, obj.cast::<c_void>())
        }
    };
    // SAFETY: as above, a static object or NULL.
    let alg = unsafe { sys::OBJ_nid2obj(spki.algorithm.as_raw()) };
    if alg.is_null() {
        return Err(CryptoError::last(step));
    }
    // SAFETY: `cert` is a valid X509 being built; its X509_PUBKEY is checked
    // non-NULL. The key octets are copied into a fresh OpenSSL allocation
    // (checked non-NULL, `len` > 0) whose ownership passes to the
    // X509_PUBKEY with the objects on success; on failure nothing was taken
    // and the copy is freed here.
    unsafe {
        let dst = X509_get_X509_PUBKEY(cert.as_ptr());
        if dst.is_null() {
            return Err(CryptoError::last(step));
        }
        let copy = sys::CRYPTO_malloc(bits.len(), HERE.as_ptr(), line!() as c_int).cast::<u8>();
        if copy.is_null() {
            return Err(CryptoError::last(step));
        }
        ptr::copy_nonoverlapping(bits.as_ptr(), copy, bits.len());
        if X509_PUBKEY_set0_param(dst, alg, ptype, pval, copy, len) != 1 {
            sys::CRYPTO_free(copy.cast(), HERE.as_ptr(), line!() as c_int);
            return Err(CryptoError::last(step));
        }
    }
    Ok(())
}

/// Signs a finished certificate (X509_sign), as the builder would.
pub fn sign(cert: &X509Ref, key: &PKeyRef<Private>, md: MessageDigest) -> Result<(), CryptoError> {
    // SAFETY: valid certificate and key for the borrows; `md` may be NULL
    // (Ed25519 signs without a digest).
    if unsafe { sys::X509_sign(cert.as_ptr(), key.as_ptr(), md.as_ptr()) } <= 0 {
        return Err(CryptoError::last("signing the certificate"));
    }
    Ok(())
}

/// A CSR is never encrypted. Without a callback OpenSSL would ask for a pass
/// phrase on the controlling terminal when a caller sends a PEM block with
/// encryption headers, holding a signing thread until someone answers.
unsafe extern "C" fn no_password(_: *mut c_char, _: c_int, _: c_int, _: *mut c_void) -> c_int {
    0
}

/// A library context holding only OpenSSL's "null" provider. A CSR decoded in
/// it keeps its SubjectPublicKeyInfo as bytes: in the default context OpenSSL
/// 3.0 turns that key into an EVP_PKEY through a decoder context it builds
/// afresh for every CSR (a million instructions, twenty times the rest of the
/// parse; scripts/BENCHMARKS.md), and `keys::csr_key` builds it for a
/// fraction of that. No algorithm is ever fetched from this context.
fn keyless() -> *mut sys::OSSL_LIB_CTX {
    static CTX: OnceLock<usize> = OnceLock::new();
    *CTX.get_or_init(|| {
        // SAFETY: plain constructors, results checked. Without a context (NULL)
        // the decoder uses the default one: slower, still correct.
        unsafe {
            let ctx = sys::OSSL_LIB_CTX_new();
            if !ctx.is_null() && sys::OSSL_PROVIDER_load(ctx, c"null".as_ptr()).is_null() {
                drop(ErrorStack::get());
            }
            ctx as usize
        }
    }) as *mut sys::OSSL_LIB_CTX
}

/// A CSR as read: OpenSSL's structure and the DER it was decoded from.
pub struct ReadCsr {
    pub req: X509Req,
    pub der: Vec<u8>,
}

/// Why a PEM CSR could not be read.
pub enum ReadError {
    /// Not a well-formed PEM CERTIFICATE REQUEST or not DER inside: OpenSSL's
    /// reason.
    Malformed(String),
    /// Our side failed (no memory).
    Crypto(CryptoError),
}

/// Reads one PEM CERTIFICATE REQUEST as `X509Req::from_pem` does (same PEM
/// reader, same labels, same DER decoder), except that the public key is
/// left undecoded (see `keyless`) and no pass phrase is ever asked for.
pub fn csr_from_pem(pem: &[u8]) -> Result<ReadCsr, ReadError> {
    let len = c_int::try_from(pem.len())
        .map_err(|_| ReadError::Malformed("the PEM text is too long".to_string()))?;
    // SAFETY: the memory BIO only reads `pem`, which outlives it; it is freed
    // on every path. The DER buffer PEM_bytes_read_bio allocates is ours to
    // free (also on every path, after it is copied); the X509_REQ decoded
    // from it owns no part of it. Every returned pointer is checked.
    unsafe {
        let bio = sys::BIO_new_mem_buf(pem.as_ptr().cast(), len);
        if bio.is_null() {
            return Err(ReadError::Crypto(CryptoError::last("reading the CSR")));
        }
        let (mut der, mut der_len): (*mut u8, c_long) = (ptr::null_mut(), 0);
        let read = PEM_bytes_read_bio(
            &mut der,
            &mut der_len,
            ptr::null_mut(),
            c"CERTIFICATE REQUEST".as_ptr(),
            bio,
            Some(no_password),
            ptr::null_mut(),
        );
        sys::BIO_free_all(bio);
        let der_len = usize::try_from(der_len).unwrap_or(0);
        if read != 1 || der.is_null() || der_len == 0 {
            if !der.is_null() {
                sys::CRYPTO_free(der.cast(), HERE.as_ptr(), line!() as c_int);
            }
            return Err(ReadError::Malformed(super::openssl_reason(
                &ErrorStack::get(),
            )));
        }
        let owned = std::slice::from_raw_parts(der, der_len).to_vec();
        sys::CRYPTO_free(der.cast(), HERE.as_ptr(), line!() as c_int);
        let mut p = owned.as_ptr();
        let req = ASN1_item_d2i_ex(
            &mut ptr::null_mut(),
            &mut p,
            owned.len() as c_long,
            X509_REQ_it(),
            keyless(),
            ptr::null(),
        );
        if req.is_null() {
            return Err(ReadError::Malformed(super::openssl_reason(
                &ErrorStack::get(),
            )));
        }
        Ok(ReadCsr {
            req: X509Req::from_ptr(req.cast()),
            der: owned,
        })
    }
}

/// Whether the CSR is signed by `key`, checked in the default library context
/// (the CSR's own context fetches nothing).
pub fn csr_signed_by(req: &X509ReqRef, key: &PKeyRef<Public>) -> bool {
    // SAFETY: valid CSR and key for the borrows; NULL selects the default
    // library context and property query.
    let ok =
        unsafe { X509_REQ_verify_ex(req.as_ptr(), key.as_ptr(), ptr::null_mut(), ptr::null()) };
    if ok != 1 {
        drop(ErrorStack::get());
    }
    ok == 1
}

/// The parameters-only key of a named curve ("prime256v1"…), from the default
/// library context (so FIPS mode's properties choose its key management).
pub fn ec_curve_parameters(curve: &CStr) -> Result<PKey<Params>, CryptoError> {
    let step = "building EC curve parameters";
    // SAFETY: the context (checked non-NULL) and the parameter array live
    // through the calls that use them, and the context is freed on every
    // path; the key returned (checked non-NULL) is owned by the PKey. OpenSSL
    // only reads the curve name through the non-const pointer.
    unsafe {
        let ctx = sys::EVP_PKEY_CTX_new_from_name(ptr::null_mut(), c"EC".as_ptr(), ptr::null());
        if ctx.is_null() {
            return Err(CryptoError::last(step));
        }
        let mut params = [
            OSSL_PARAM_construct_utf8_string(c"group".as_ptr(), curve.as_ptr().cast_mut(), 0),
            sys::OSSL_PARAM_construct_end(),
        ];
        let mut key = ptr::null_mut();
        let ok = sys::EVP_PKEY_fromdata_init(ctx) > 0
            && sys::EVP_PKEY_fromdata(
                ctx,
                &mut key,
                sys::EVP_PKEY_KEY_PARAMETERS,
                params.as_mut_ptr(),
            ) > 0;
        sys::EVP_PKEY_CTX_free(ctx);
        if !ok || key.is_null() {
            return Err(CryptoError::last(step));
        }
        Ok(PKey::from_ptr(key))
    }
}

/// A public key on `curve` (from `ec_curve_parameters`) at the SEC1-encoded
/// point `encoded`, which OpenSSL checks is on the curve. A copy of the
/// parameters shares the curve's tables: importing a key by curve name makes
/// OpenSSL 3.0 build the curve again (~150 k instructions, about a fifth of
/// an ECDSA verification). `None` when the point is refused.
pub fn ec_public_key(curve: &PKeyRef<Params>, encoded: &[u8]) -> Option<PKey<Public>> {
    if encoded.is_empty() {
        return None;
    }
    // SAFETY: EVP_PKEY_dup returns a new key we own (checked non-NULL, freed
    // by the PKey on every path); the point is read from a live, non-empty
    // slice of the given length.
    unsafe {
        let key = EVP_PKEY_dup(curve.as_ptr());
        if key.is_null() {
            drop(ErrorStack::get());
            return None;
        }
        let key = PKey::<Public>::from_ptr(key);
        if EVP_PKEY_set1_encoded_public_key(key.as_ptr(), encoded.as_ptr(), encoded.len()) <= 0 {
            drop(ErrorStack::get());
            return None;
        }
        Some(key)
    }
}

/// The curve of a provider's EC key by its name, without the legacy EC_KEY
/// copy that `PKey::ec_key` makes of it (which builds the curve again);
/// `None` for a legacy key, which asking would copy to a provider instead.
pub fn ec_group_name<T>(key: &PKeyRef<T>) -> Option<String> {
    // SAFETY: a valid key for the borrow; only its key management is read.
    if unsafe { EVP_PKEY_get0_provider(key.as_ptr()) }.is_null() {
        return None;
    }
    let mut name = [0u8; 64];
    let mut len = 0usize;
    // SAFETY: the buffer's size is passed; OpenSSL writes at most that many
    // bytes (NUL included) and the name's length into `len`.
    let ok = unsafe {
        EVP_PKEY_get_group_name(key.as_ptr(), name.as_mut_ptr().cast(), name.len(), &mut len)
    };
    if ok <= 0 {
        drop(ErrorStack::get());
        return None;
    }
    std::str::from_utf8(name.get(..len)?)
        .ok()
        .map(str::to_string)
}
