//! The libcrypto calls the `openssl` crate does not wrap.

use foreign_types::{ForeignType, ForeignTypeRef};
use openssl::error::ErrorStack;
use openssl::stack::{Stack, StackRef};
use openssl::x509::{GeneralName, X509Extension, X509Ref, X509Req, X509ReqRef};
use std::ffi::c_void;
use std::os::raw::{c_char, c_int, c_long};

/// Whether the certificate has basicConstraints CA:TRUE.
pub fn is_ca(cert: &X509Ref) -> bool {
    // SAFETY: `cert` is a valid X509; the call only caches decoded extensions.
    let flags = unsafe { openssl_sys::X509_get_extension_flags(cert.as_ptr()) };
    flags & openssl_sys::EXFLAG_CA != 0
}

/// What a CSR's extensionRequest says about subjectAltName.
pub enum RequestedSans {
    None,
    Names(Stack<GeneralName>),
    /// The extension appears more than once: ambiguous, so refused.
    Duplicate,
    /// The extension is there but does not decode.
    Malformed,
}

/// Decodes the subjectAltName extension from a CSR's requested extensions.
pub fn requested_sans(exts: &StackRef<X509Extension>) -> RequestedSans {
    let mut crit: std::os::raw::c_int = 0;
    // SAFETY: `exts` is a valid stack; X509V3_get_d2i returns a new GENERAL_NAMES
    // (a stack of GENERAL_NAME) that we own, or NULL with `crit` telling why.
    let names = unsafe {
        openssl_sys::X509V3_get_d2i(
            exts.as_ptr(),
            openssl_sys::NID_subject_alt_name,
            &mut crit,
            std::ptr::null_mut(),
        )
    };
    if !names.is_null() {
        // SAFETY: non-NULL result of X509V3_get_d2i for NID_subject_alt_name is
        // a GENERAL_NAMES, which is a STACK_OF(GENERAL_NAME) we now own.
        return RequestedSans::Names(unsafe { Stack::from_ptr(names.cast()) });
    }
    // Clear whatever the failed decode queued so it cannot leak into the next call.
    drop(ErrorStack::get());
    match crit {
        -1 => RequestedSans::None,
        -2 => RequestedSans::Duplicate,
        _ => RequestedSans::Malformed,
    }
}

/// Whether a GeneralName is a dNSName, whatever bytes it holds (the safe
/// accessor hides names that are not UTF-8, and those must be refused, not missed).
pub fn is_dns_name(name: &openssl::x509::GeneralNameRef) -> bool {
    // SAFETY: a GeneralNameRef always points to a valid GENERAL_NAME.
    unsafe { (*name.as_ptr()).type_ == openssl_sys::GEN_DNS }
}

/// Whether a GeneralName is an iPAddress.
pub fn is_ip_address(name: &openssl::x509::GeneralNameRef) -> bool {
    // SAFETY: as above.
    unsafe { (*name.as_ptr()).type_ == openssl_sys::GEN_IPADD }
}

/// The raw bytes of a dNSName (IA5String), whatever they are.
pub fn dns_name_bytes(name: &openssl::x509::GeneralNameRef) -> &[u8] {
    debug_assert!(is_dns_name(name));
    // SAFETY: for GEN_DNS the union member `d` is an ASN1_IA5STRING*; the data
    // pointer and length stay valid as long as `name` is borrowed.
    unsafe {
        let s = (*name.as_ptr()).d as *mut openssl_sys::ASN1_STRING;
        let ptr = openssl_sys::ASN1_STRING_get0_data(s);
        let len = openssl_sys::ASN1_STRING_length(s);
        if ptr.is_null() || len <= 0 {
            return &[];
        }
        std::slice::from_raw_parts(ptr, len as usize)
    }
}

/// Whether a CSR carries an extensionRequest attribute at all.
pub fn has_extension_request(req: &openssl::x509::X509ReqRef) -> bool {
    // SAFETY: valid X509_REQ; the lookup only reads its attributes.
    let idx = unsafe {
        openssl_sys::X509_REQ_get_attr_by_NID(req.as_ptr(), openssl_sys::NID_ext_req, -1)
    };
    drop(ErrorStack::get());
    idx >= 0
}

extern "C" {
    fn X509_REQ_get_X509_PUBKEY(req: *mut openssl_sys::X509_REQ) -> *mut std::ffi::c_void;
    fn X509_get_X509_PUBKEY(x: *const openssl_sys::X509) -> *mut std::ffi::c_void;
    fn X509_PUBKEY_get0_param(
        ppkalg: *mut *mut openssl_sys::ASN1_OBJECT,
        pk: *mut *const u8,
        ppklen: *mut std::os::raw::c_int,
        pa: *mut *mut openssl_sys::X509_ALGOR,
        pub_: *const std::ffi::c_void,
    ) -> std::os::raw::c_int;
    fn X509_PUBKEY_set0_param(
        pub_: *mut std::ffi::c_void,
        aobj: *mut openssl_sys::ASN1_OBJECT,
        ptype: std::os::raw::c_int,
        pval: *mut std::ffi::c_void,
        penc: *mut u8,
        penclen: std::os::raw::c_int,
    ) -> std::os::raw::c_int;
}

const V_ASN1_UNDEF: std::os::raw::c_int = -1;

/// The parts of a CSR's SubjectPublicKeyInfo: algorithm OID, key bits and the
/// AlgorithmIdentifier, borrowed from the CSR.
///
/// # Safety
/// The pointers and the slice are valid while `req` is borrowed.
unsafe fn csr_spki(
    req: &openssl::x509::X509ReqRef,
) -> Result<
    (
        *mut openssl_sys::ASN1_OBJECT,
        &[u8],
        *mut openssl_sys::X509_ALGOR,
    ),
    ErrorStack,
> {
    let src = X509_REQ_get_X509_PUBKEY(req.as_ptr());
    let (mut alg, mut bits, mut len, mut algor) = (
        std::ptr::null_mut(),
        std::ptr::null(),
        0,
        std::ptr::null_mut(),
    );
    if src.is_null() || X509_PUBKEY_get0_param(&mut alg, &mut bits, &mut len, &mut algor, src) != 1
    {
        return Err(ErrorStack::get());
    }
    Ok((alg, std::slice::from_raw_parts(bits, len as usize), algor))
}

/// Puts the CSR's SubjectPublicKeyInfo into the certificate byte for byte.
/// `X509_set_pubkey` would push the key through OpenSSL 3's encoder and then
/// its decoder: measured at 60 % of the instructions of a whole issuance.
/// Handles the parameter forms of the keys policy admits: none (Ed25519),
/// NULL (RSA) and a named curve (ECDSA).
pub fn copy_public_key(
    req: &openssl::x509::X509ReqRef,
    cert: &openssl::x509::X509Ref,
) -> Result<(), ErrorStack> {
    use openssl_sys::{V_ASN1_NULL, V_ASN1_OBJECT};
    // SAFETY: every pointer comes from OpenSSL for objects we hold; the key
    // bytes are copied into a fresh OpenSSL allocation whose ownership, like
    // that of the duplicated OIDs, passes to the certificate's X509_PUBKEY.
    unsafe {
        let (alg, bits, algor) = csr_spki(req)?;
        let (mut _obj, mut ptype, mut pval) = (std::ptr::null(), 0, std::ptr::null());
        openssl_sys::X509_ALGOR_get0(&mut _obj, &mut ptype, &mut pval, algor);
        let param: *mut std::ffi::c_void = match ptype {
            V_ASN1_OBJECT => openssl_sys::OBJ_dup(pval.cast()).cast(),
            V_ASN1_NULL | V_ASN1_UNDEF => std::ptr::null_mut(),
            _ => return Err(ErrorStack::get()),
        };
        let copy = openssl_sys::CRYPTO_malloc(bits.len(), c"pki/ffi.rs".as_ptr(), 0).cast::<u8>();
        if copy.is_null() {
            return Err(ErrorStack::get());
        }
        std::ptr::copy_nonoverlapping(bits.as_ptr(), copy, bits.len());
        let dst = X509_get_X509_PUBKEY(cert.as_ptr());
        if X509_PUBKEY_set0_param(
            dst,
            openssl_sys::OBJ_dup(alg),
            ptype,
            param,
            copy,
            bits.len() as i32,
        ) != 1
        {
            return Err(ErrorStack::get());
        }
    }
    Ok(())
}

/// The subjectPublicKey bits of a CSR (BIT STRING content), as they will
/// appear in the certificate.
pub fn public_key_bits(req: &openssl::x509::X509ReqRef) -> Result<Vec<u8>, ErrorStack> {
    // SAFETY: read-only access to the CSR's own key; the bytes are copied.
    unsafe { csr_spki(req).map(|(_, bits, _)| bits.to_vec()) }
}

/// Signs a finished certificate (X509_sign), as the builder would.
pub fn sign(
    cert: &openssl::x509::X509Ref,
    key: &openssl::pkey::PKeyRef<openssl::pkey::Private>,
    md: openssl::hash::MessageDigest,
) -> Result<(), ErrorStack> {
    // SAFETY: valid certificate and key; md may be NULL (Ed25519).
    if unsafe { openssl_sys::X509_sign(cert.as_ptr(), key.as_ptr(), md.as_ptr()) } <= 0 {
        return Err(ErrorStack::get());
    }
    Ok(())
}

extern "C" {
    fn OSSL_LIB_CTX_new() -> *mut c_void;
    fn OSSL_PROVIDER_load(ctx: *mut c_void, name: *const c_char) -> *mut c_void;
    fn X509_REQ_it() -> *const c_void;
    fn ASN1_item_d2i_ex(
        val: *mut *mut c_void,
        input: *mut *const u8,
        len: c_long,
        it: *const c_void,
        ctx: *mut c_void,
        propq: *const c_char,
    ) -> *mut c_void;
    fn PEM_bytes_read_bio(
        data: *mut *mut u8,
        len: *mut c_long,
        name: *mut *mut c_char,
        wanted: *const c_char,
        bio: *mut openssl_sys::BIO,
        cb: Option<PasswordCallback>,
        u: *mut c_void,
    ) -> c_int;
    fn X509_REQ_verify_ex(
        req: *mut openssl_sys::X509_REQ,
        key: *mut openssl_sys::EVP_PKEY,
        ctx: *mut c_void,
        propq: *const c_char,
    ) -> c_int;
    fn i2d_X509_PUBKEY(key: *mut c_void, out: *mut *mut u8) -> c_int;
}

type PasswordCallback = unsafe extern "C" fn(*mut c_char, c_int, c_int, *mut c_void) -> c_int;

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
/// parse; scripts/BENCHMARKS.md), and `keys::csr_public_key` does it for a
/// fraction of that. No algorithm is ever fetched from this context.
fn keyless() -> *mut c_void {
    static CTX: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CTX.get_or_init(|| {
        // SAFETY: plain constructors; a failure leaves NULL, which makes the
        // decoder fall back to the default context (slower, still correct).
        unsafe {
            let ctx = OSSL_LIB_CTX_new();
            if !ctx.is_null() && OSSL_PROVIDER_load(ctx, c"null".as_ptr()).is_null() {
                drop(ErrorStack::get());
            }
            ctx as usize
        }
    }) as *mut c_void
}

/// Reads one PEM CERTIFICATE REQUEST as `X509Req::from_pem` does (same PEM
/// reader, same labels, same DER decoder), except that the public key is
/// left undecoded (see `keyless`) and no pass phrase is ever asked for.
pub fn csr_from_pem(pem: &[u8]) -> Result<X509Req, ErrorStack> {
    let len = c_int::try_from(pem.len()).map_err(|_| ErrorStack::get())?;
    // SAFETY: the BIO reads `pem` only while this function runs; the DER
    // buffer PEM_bytes_read_bio returns is ours to free, and the X509_REQ
    // decoded from it owns no part of it.
    unsafe {
        let bio = openssl_sys::BIO_new_mem_buf(pem.as_ptr().cast(), len);
        if bio.is_null() {
            return Err(ErrorStack::get());
        }
        let (mut der, mut der_len) = (std::ptr::null_mut(), 0);
        let read = PEM_bytes_read_bio(
            &mut der,
            &mut der_len,
            std::ptr::null_mut(),
            c"CERTIFICATE REQUEST".as_ptr(),
            bio,
            Some(no_password),
            std::ptr::null_mut(),
        );
        openssl_sys::BIO_free_all(bio);
        if read != 1 {
            return Err(ErrorStack::get());
        }
        let mut p = der as *const u8;
        let req = ASN1_item_d2i_ex(
            &mut std::ptr::null_mut(),
            &mut p,
            der_len,
            X509_REQ_it(),
            keyless(),
            std::ptr::null(),
        );
        openssl_sys::CRYPTO_free(der.cast(), c"pki/ffi.rs".as_ptr(), 0);
        if req.is_null() {
            return Err(ErrorStack::get());
        }
        Ok(X509Req::from_ptr(req.cast()))
    }
}

/// Whether the CSR is signed by `key`, checked in the default library context
/// (the CSR's own context fetches nothing).
pub fn csr_signed_by<T>(req: &X509ReqRef, key: &openssl::pkey::PKeyRef<T>) -> bool {
    // SAFETY: valid CSR and key; NULL selects the default library context.
    let ok = unsafe {
        X509_REQ_verify_ex(
            req.as_ptr(),
            key.as_ptr(),
            std::ptr::null_mut(),
            std::ptr::null(),
        )
    };
    if ok != 1 {
        drop(ErrorStack::get());
    }
    ok == 1
}

/// The CSR's SubjectPublicKeyInfo re-encoded as DER, byte for byte as sent.
pub fn csr_spki_der(req: &X509ReqRef) -> Result<Vec<u8>, ErrorStack> {
    // SAFETY: i2d on the CSR's own X509_PUBKEY, first sizing, then writing
    // into a buffer of that size.
    unsafe {
        let src = X509_REQ_get_X509_PUBKEY(req.as_ptr());
        if src.is_null() {
            return Err(ErrorStack::get());
        }
        let len = i2d_X509_PUBKEY(src, std::ptr::null_mut());
        if len <= 0 {
            return Err(ErrorStack::get());
        }
        let mut out = vec![0u8; len as usize];
        let mut p = out.as_mut_ptr();
        if i2d_X509_PUBKEY(src, &mut p) != len {
            return Err(ErrorStack::get());
        }
        Ok(out)
    }
}

/// What the CSR's SubjectPublicKeyInfo names: the algorithm, its parameters
/// and the key bits.
pub struct SpkiParts<'a> {
    pub algorithm: openssl::nid::Nid,
    pub params: Params,
    pub bits: &'a [u8],
}

/// The AlgorithmIdentifier's parameters, in the forms keys take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Params {
    Absent,
    Null,
    /// An OID, as ECDSA keys name their curve.
    Object(openssl::nid::Nid),
    Other,
}

pub fn csr_spki_parts(req: &X509ReqRef) -> Result<SpkiParts<'_>, ErrorStack> {
    use openssl_sys::{V_ASN1_NULL, V_ASN1_OBJECT};
    // SAFETY: the OIDs and bytes belong to the CSR, borrowed with it.
    unsafe {
        let (alg, bits, algor) = csr_spki(req)?;
        let (mut _obj, mut ptype, mut pval) = (std::ptr::null(), 0, std::ptr::null());
        openssl_sys::X509_ALGOR_get0(&mut _obj, &mut ptype, &mut pval, algor);
        let nid = |o: *const openssl_sys::ASN1_OBJECT| {
            openssl::nid::Nid::from_raw(openssl_sys::OBJ_obj2nid(o))
        };
        Ok(SpkiParts {
            algorithm: nid(alg),
            params: match ptype {
                V_ASN1_UNDEF => Params::Absent,
                V_ASN1_NULL => Params::Null,
                V_ASN1_OBJECT => Params::Object(nid(pval.cast())),
                _ => Params::Other,
            },
            bits,
        })
    }
}

extern "C" {
    fn EVP_PKEY_dup(key: *mut openssl_sys::EVP_PKEY) -> *mut openssl_sys::EVP_PKEY;
    fn EVP_PKEY_set1_encoded_public_key(
        key: *mut openssl_sys::EVP_PKEY,
        bytes: *const u8,
        len: usize,
    ) -> c_int;
    fn EVP_PKEY_get_group_name(
        key: *const openssl_sys::EVP_PKEY,
        name: *mut c_char,
        size: usize,
        len: *mut usize,
    ) -> c_int;
    fn EVP_PKEY_get0_provider(key: *const openssl_sys::EVP_PKEY) -> *const c_void;
    fn OSSL_PARAM_construct_utf8_string(
        key: *const c_char,
        buf: *mut c_char,
        size: usize,
    ) -> openssl_sys::OSSL_PARAM;
}

/// The parameters-only key of a named curve ("prime256v1"…), from the default
/// library context (so FIPS mode's properties choose its key management).
pub fn ec_curve_parameters(
    curve: &std::ffi::CStr,
) -> Result<openssl::pkey::PKey<openssl::pkey::Params>, ErrorStack> {
    use openssl_sys::{EVP_PKEY_CTX_free, EVP_PKEY_CTX_new_from_name};
    // SAFETY: the context and the parameter array live through the calls
    // that use them; the key returned is owned by the PKey.
    unsafe {
        let ctx =
            EVP_PKEY_CTX_new_from_name(std::ptr::null_mut(), c"EC".as_ptr(), std::ptr::null());
        if ctx.is_null() {
            return Err(ErrorStack::get());
        }
        let mut params = [
            OSSL_PARAM_construct_utf8_string(c"group".as_ptr(), curve.as_ptr().cast_mut(), 0),
            openssl_sys::OSSL_PARAM_construct_end(),
        ];
        let mut key = std::ptr::null_mut();
        let ok = openssl_sys::EVP_PKEY_fromdata_init(ctx) > 0
            && openssl_sys::EVP_PKEY_fromdata(
                ctx,
                &mut key,
                openssl_sys::EVP_PKEY_KEY_PARAMETERS,
                params.as_mut_ptr(),
            ) > 0;
        EVP_PKEY_CTX_free(ctx);
        if !ok {
            return Err(ErrorStack::get());
        }
        Ok(openssl::pkey::PKey::from_ptr(key))
    }
}

/// A public key on `curve` (from `ec_curve_parameters`) at the SEC1-encoded
/// point `encoded`. A copy of the parameters shares the curve's tables:
/// importing a key by curve name makes OpenSSL 3.0 build the curve again
/// (~150 k instructions, about a fifth of an ECDSA verification).
pub fn ec_public_key(
    curve: &openssl::pkey::PKeyRef<openssl::pkey::Params>,
    encoded: &[u8],
) -> Result<openssl::pkey::PKey<openssl::pkey::Public>, ErrorStack> {
    // SAFETY: EVP_PKEY_dup returns a new key we own (NULL on failure);
    // the point is read from a live slice of the given length.
    unsafe {
        let key = EVP_PKEY_dup(curve.as_ptr());
        if key.is_null() {
            return Err(ErrorStack::get());
        }
        let key = openssl::pkey::PKey::<openssl::pkey::Public>::from_ptr(key);
        if EVP_PKEY_set1_encoded_public_key(key.as_ptr(), encoded.as_ptr(), encoded.len()) <= 0 {
            return Err(ErrorStack::get());
        }
        Ok(key)
    }
}

/// The curve of a provider's EC key by its name, without the legacy EC_KEY
/// copy that `PKey::ec_key` makes of it (which builds the curve again);
/// `None` for a legacy key, which asking would copy to a provider instead.
pub fn ec_group_name<T>(key: &openssl::pkey::PKeyRef<T>) -> Option<String> {
    // SAFETY: a valid key; only its key management is looked at.
    if unsafe { EVP_PKEY_get0_provider(key.as_ptr()) }.is_null() {
        return None;
    }
    let mut name = [0u8; 64];
    let mut len = 0usize;
    // SAFETY: the buffer's size is passed; OpenSSL writes at most that many
    // bytes and the name's length into `len`.
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
