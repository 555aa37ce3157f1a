//! The one certificate builder. Every certificate this program makes — a
//! worker's apid certificate, our own serving certificate, talosctl's admin
//! certificate, the throwaway dev CA — is built and signed here, with one
//! rule for its validity window, its serial and its key identifiers.

use std::time::Duration;

use openssl::asn1::{Asn1Object, Asn1OctetString, Asn1Time};
use openssl::bn::{BigNum, MsbOption};
use openssl::hash::{hash, MessageDigest};
use openssl::nid::Nid;
use openssl::pkey::{PKey, PKeyRef, Private};
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
};
use openssl::x509::{X509Builder, X509Extension, X509Name, X509NameRef, X509Ref, X509};

use super::keys::{CsrKey, KeyType};
use super::{der, ffi, CryptoError, San};

/// How far notBefore is backdated, so a worker whose clock runs a little
/// behind ours (or talosctl's) does not see a certificate from the future.
pub const CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

/// What a certificate is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// An end-entity TLS server: apid on a worker, or this signer.
    Server,
    /// An end-entity TLS client: talosctl's admin certificate.
    Client,
    /// A self-signed CA (the dev machine CA).
    Ca,
}

/// The extensions every certificate of one profile from one issuer carries,
/// besides its names and key identifier. Built once per issuer (at start and
/// on reload for the machine CA) rather than on every call: `X509_add_ext`
/// copies them into each certificate.
pub struct Extensions {
    /// basicConstraints, keyUsage and (end entities) extendedKeyUsage.
    usage: Vec<X509Extension>,
    /// Goes after the subjectKeyIdentifier, as OpenSSL and Go order them.
    authority_key_id: Option<X509Extension>,
}

impl Extensions {
    /// `issuer`: the CA certificate, for the authorityKeyIdentifier; `None`
    /// for a self-signed certificate.
    pub fn new(profile: Profile, issuer: Option<&X509Ref>) -> Result<Extensions, CryptoError> {
        let step = "building the certificate extensions";
        let e = |r: Result<X509Extension, openssl::error::ErrorStack>| {
            r.map_err(|err| CryptoError::new(step, &err))
        };
        let mut list = Vec::with_capacity(3);
        match profile {
            // End-entity certificates that say so explicitly; apid and this
            // signer only serve TLS, talosctl only authenticates with it.
            Profile::Server | Profile::Client => {
                list.push(e(BasicConstraints::new().critical().build())?);
                list.push(e(KeyUsage::new().critical().digital_signature().build())?);
                let mut eku = ExtendedKeyUsage::new();
                if profile == Profile::Server {
                    eku.server_auth();
                } else {
                    eku.client_auth();
                }
                list.push(e(eku.build())?);
            }
            Profile::Ca => {
                list.push(e(BasicConstraints::new().critical().ca().build())?);
                let mut ku = KeyUsage::new();
                list.push(e(ku
                    .critical()
                    .key_cert_sign()
                    .digital_signature()
                    .build())?);
            }
        }
        // The CA's key identifier, so clients find the issuer even when
        // several CAs share a subject (rotation).
        let authority_key_id = match issuer {
            Some(ca) => {
                let b = X509Builder::new().map_err(|err| CryptoError::new(step, &err))?;
                let aki = AuthorityKeyIdentifier::new()
                    .keyid(false)
                    .issuer(false)
                    .build(&b.x509v3_context(Some(ca), None));
                Some(e(aki)?)
            }
            None => None,
        };
        Ok(Extensions {
            usage: list,
            authority_key_id,
        })
    }
}

/// Who signs: its name, key and lifetime (a certificate never outlives it).
pub struct Issuer<'a> {
    pub name: &'a X509NameRef,
    pub key: &'a PKeyRef<Private>,
    pub key_type: KeyType,
    pub not_before_unix: i64,
    pub not_after_unix: i64,
}

/// The key a certificate certifies.
pub enum SubjectKey<'a> {
    /// A CSR's, copied byte for byte.
    Csr(&'a CsrKey),
    /// One of ours.
    Own(&'a PKeyRef<Private>),
}

/// One certificate to make.
pub struct Spec<'a> {
    pub subject: &'a X509NameRef,
    pub key: SubjectKey<'a>,
    pub sans: &'a [San],
    pub lifetime: Duration,
    pub now_unix: i64,
    pub extensions: &'a Extensions,
}

pub struct Signed {
    pub cert: X509,
    pub serial_hex: String,
    pub not_after_unix: i64,
}

#[derive(Debug, PartialEq, Eq)]
pub enum CertError {
    /// The issuer's own validity has ended.
    IssuerExpired,
    Crypto(CryptoError),
}

impl From<CryptoError> for CertError {
    fn from(e: CryptoError) -> Self {
        CertError::Crypto(e)
    }
}

impl std::error::Error for CertError {}

impl std::fmt::Display for CertError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CertError::IssuerExpired => f.write_str("the issuing CA has expired"),
            CertError::Crypto(e) => e.fmt(f),
        }
    }
}

/// notBefore backdated by the skew, notAfter `lifetime` ahead; both inside
/// the issuer's own lifetime, because a chain is only valid while every link
/// is.
pub fn window(issuer: &Issuer<'_>, lifetime: Duration, now: i64) -> Result<(i64, i64), CertError> {
    if issuer.not_after_unix <= now {
        return Err(CertError::IssuerExpired);
    }
    let skew = i64::try_from(CLOCK_SKEW.as_secs()).unwrap_or(0);
    let not_before = now.saturating_sub(skew).max(issuer.not_before_unix);
    let not_after = now
        .saturating_add(i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX))
        .min(issuer.not_after_unix);
    Ok((not_before, not_after))
}

/// Builds and signs one certificate.
pub fn build(issuer: &Issuer<'_>, spec: &Spec<'_>) -> Result<Signed, CertError> {
    let (not_before, not_after) = window(issuer, spec.lifetime, spec.now_unix)?;
    let c = |step: &'static str| move |e| CryptoError::new(step, &e);
    let mut serial = BigNum::new().map_err(c("making a serial"))?;
    // 128 random bits with the top bit set: positive, 17 DER octets (≤ 20),
    // from the provider's DRBG.
    serial
        .rand(128, MsbOption::ONE, false)
        .map_err(c("making a serial"))?;
    let step = c("building the certificate");
    let mut b = X509Builder::new().map_err(step)?;
    b.set_version(2).map_err(step)?;
    let serial_asn1 = serial.to_asn1_integer().map_err(step)?;
    b.set_serial_number(&serial_asn1).map_err(step)?;
    b.set_subject_name(spec.subject).map_err(step)?;
    b.set_issuer_name(issuer.name).map_err(step)?;
    let key_bits = match spec.key {
        SubjectKey::Own(key) => {
            b.set_pubkey(key).map_err(step)?;
            own_key_bits(key)?
        }
        SubjectKey::Csr(key) => key.bits.clone(),
    };
    let nb = Asn1Time::from_unix(not_before).map_err(step)?;
    let na = Asn1Time::from_unix(not_after).map_err(step)?;
    b.set_not_before(&nb).map_err(step)?;
    b.set_not_after(&na).map_err(step)?;
    for ext in &spec.extensions.usage {
        b.append_extension2(ext).map_err(step)?;
    }
    if !spec.sans.is_empty() {
        // RFC 5280 4.2.1.6: with an empty subject the SAN extension is critical.
        let critical = spec.subject.entries().next().is_none();
        b.append_extension(san_extension(spec.sans, critical, &b)?)
            .map_err(step)?;
    }
    b.append_extension(subject_key_id(&key_bits)?)
        .map_err(step)?;
    if let Some(aki) = &spec.extensions.authority_key_id {
        b.append_extension2(aki).map_err(step)?;
    }
    let cert = b.build();
    if let SubjectKey::Csr(key) = spec.key {
        ffi::set_public_key(&cert, &key.spki, &key.bits)?;
    }
    ffi::sign(&cert, issuer.key, issuer.key_type.signing_digest())?;
    Ok(Signed {
        cert,
        serial_hex: serial
            .to_hex_str()
            .map_err(c("printing the serial"))?
            .to_string(),
        not_after_unix: not_after,
    })
}

/// The subjectPublicKey octets of one of our own keys.
fn own_key_bits(key: &PKeyRef<Private>) -> Result<Vec<u8>, CryptoError> {
    let step = "encoding our public key";
    let spki = key
        .public_key_to_der()
        .map_err(|e| CryptoError::new(step, &e))?;
    der::spki_parts(&spki)
        .map(|p| p.key.to_vec())
        .ok_or_else(|| CryptoError::message(step, "OpenSSL wrote a malformed SubjectPublicKeyInfo"))
}

/// subjectKeyIdentifier as RFC 7093 method 1: the leftmost 160 bits of the
/// SHA-256 of the key octets (RFC 5280 asks end-entity certificates to carry
/// one; SHA-256 keeps SHA-1 out of FIPS deployments).
fn subject_key_id(key_bits: &[u8]) -> Result<X509Extension, CryptoError> {
    let step = |e| CryptoError::new("building the subjectKeyIdentifier", &e);
    let digest = hash(MessageDigest::sha256(), key_bits).map_err(step)?;
    let mut octets = vec![0x04, 20];
    octets.extend_from_slice(&digest[..20]);
    let oid = Asn1Object::from_str("2.5.29.14").map_err(step)?;
    let value = Asn1OctetString::new_from_bytes(&octets).map_err(step)?;
    X509Extension::new_from_der(&oid, false, &value).map_err(step)
}

fn san_extension(
    sans: &[San],
    critical: bool,
    b: &X509Builder,
) -> Result<X509Extension, CryptoError> {
    let mut ext = SubjectAlternativeName::new();
    if critical {
        ext.critical();
    }
    for san in sans {
        match san {
            San::Dns(name) => ext.dns(name),
            San::Ip(ip) => ext.ip(&ip.to_string()),
        };
    }
    ext.build(&b.x509v3_context(None, None))
        .map_err(|e| CryptoError::new("building the subjectAltName", &e))
}

/// A subject with only these (nid, value) entries.
pub fn name(entries: &[(Nid, &str)]) -> Result<X509Name, CryptoError> {
    let step = |e| CryptoError::new("building a subject name", &e);
    let mut b = X509Name::builder().map_err(step)?;
    for (nid, value) in entries {
        b.append_entry_by_nid(*nid, value).map_err(step)?;
    }
    Ok(b.build())
}

/// Dev CAs and test CAs live a year: long enough for any session.
pub const SELF_SIGNED_CA_LIFETIME: Duration = Duration::from_secs(365 * 86_400);

/// A machine CA shaped like `talosctl gen secrets` makes it: a fresh key of
/// `key_type`, subject O=talos, CA:TRUE, keyUsage certSign+digitalSignature,
/// self-signed, valid for a year.
pub fn self_signed_ca(
    key_type: KeyType,
    now_unix: i64,
) -> Result<(X509, PKey<Private>), CertError> {
    let key = key_type
        .generate()
        .map_err(|e| CryptoError::new("generating the CA key", &e))?;
    let subject = name(&[(Nid::ORGANIZATIONNAME, "talos")])?;
    let issuer = Issuer {
        name: &subject,
        key: &key,
        key_type,
        not_before_unix: i64::MIN,
        not_after_unix: i64::MAX,
    };
    let spec = Spec {
        subject: &subject,
        key: SubjectKey::Own(&key),
        sans: &[],
        lifetime: SELF_SIGNED_CA_LIFETIME,
        now_unix,
        extensions: &Extensions::new(Profile::Ca, None)?,
    };
    let signed = build(&issuer, &spec)?;
    Ok((signed.cert, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer_of(key: &PKey<Private>, subject: &X509NameRef, nb: i64, na: i64) -> Issuer<'static> {
        // Leaked: the tests keep the key and name for their whole run.
        let key: &'static PKey<Private> = Box::leak(Box::new(key.clone()));
        let name: &'static X509Name = Box::leak(Box::new(X509NameRef::to_owned(subject).unwrap()));
        Issuer {
            name,
            key,
            key_type: KeyType::of(key).unwrap(),
            not_before_unix: nb,
            not_after_unix: na,
        }
    }

    /// The validity rule: backdated by the skew, never before the issuer's
    /// start, never after its end, refused once it has ended.
    #[test]
    fn validity_windows() {
        let key = PKey::generate_ed25519().unwrap();
        let ca = name(&[(Nid::ORGANIZATIONNAME, "talos")]).unwrap();
        let day = Duration::from_secs(86_400);
        let now = 1_800_000_000;
        let skew = CLOCK_SKEW.as_secs() as i64;
        let table = [
            // (issuer from, issuer until, lifetime) → window
            (
                (now - 3600, now + 10 * 86_400, day),
                Ok((now - skew, now + 86_400)),
            ),
            (
                (now - 60, now + 10 * 86_400, day),
                Ok((now - 60, now + 86_400)),
            ),
            ((now - 3600, now + 3600, day), Ok((now - skew, now + 3600))),
            ((now - 3600, now, day), Err(CertError::IssuerExpired)),
            (
                (i64::MIN, i64::MAX, Duration::from_secs(u64::MAX)),
                Ok((now - skew, i64::MAX)),
            ),
        ];
        for ((nb, na, lifetime), want) in table {
            let issuer = issuer_of(&key, &ca, nb, na);
            assert_eq!(
                window(&issuer, lifetime, now),
                want,
                "{nb} {na} {lifetime:?}"
            );
        }
    }

    /// (nid, critical) of a certificate's extensions, in order.
    fn extensions(cert: &X509) -> Vec<(Nid, bool)> {
        use foreign_types::ForeignTypeRef;
        let x = cert.as_ref().as_ptr();
        // SAFETY: a read-only walk over a valid certificate's extensions.
        unsafe {
            (0..openssl_sys::X509_get_ext_count(x))
                .map(|i| {
                    let ext = openssl_sys::X509_get_ext(x, i);
                    let obj = openssl_sys::X509_EXTENSION_get_object(ext);
                    let nid = Nid::from_raw(openssl_sys::OBJ_obj2nid(obj));
                    (nid, openssl_sys::X509_EXTENSION_get_critical(ext) == 1)
                })
                .collect()
        }
    }

    /// Each profile carries exactly its extensions, in order; the SAN is
    /// critical only with an empty subject; the SKI is RFC 7093 method 1;
    /// the signature follows the issuer's key.
    #[test]
    fn profiles_and_their_extensions() {
        let now = crate::unix_now();
        for kt in [
            KeyType::Ed25519,
            KeyType::EcP256,
            KeyType::EcP384,
            KeyType::Rsa(2048),
        ] {
            let (ca_cert, ca_key) = self_signed_ca(kt, now).unwrap();
            assert_eq!(
                extensions(&ca_cert),
                [
                    (Nid::BASIC_CONSTRAINTS, true),
                    (Nid::KEY_USAGE, true),
                    (Nid::SUBJECT_KEY_IDENTIFIER, false)
                ]
            );
            assert!(super::super::is_ca(&ca_cert));
            let issuer = issuer_of(&ca_key, ca_cert.subject_name(), i64::MIN, i64::MAX);
            let leaf_key = KeyType::EcP256.generate().unwrap();
            for (profile, subject, sans) in [
                (
                    Profile::Server,
                    name(&[(Nid::COMMONNAME, "w")]).unwrap(),
                    vec![San::Dns("w".into())],
                ),
                (
                    Profile::Server,
                    name(&[]).unwrap(),
                    vec![San::Ip("10.0.0.1".parse().unwrap())],
                ),
                (
                    Profile::Client,
                    name(&[(Nid::ORGANIZATIONNAME, "os:admin")]).unwrap(),
                    vec![],
                ),
            ] {
                let extensions_ = Extensions::new(profile, Some(&ca_cert)).unwrap();
                let spec = Spec {
                    subject: &subject,
                    key: SubjectKey::Own(&leaf_key),
                    sans: &sans,
                    lifetime: Duration::from_secs(3600),
                    now_unix: now,
                    extensions: &extensions_,
                };
                let cert = build(&issuer, &spec).unwrap().cert;
                let mut want = vec![
                    (Nid::BASIC_CONSTRAINTS, true),
                    (Nid::KEY_USAGE, true),
                    (Nid::EXT_KEY_USAGE, false),
                ];
                if !sans.is_empty() {
                    let empty = subject.entries().next().is_none();
                    want.push((Nid::SUBJECT_ALT_NAME, empty));
                }
                want.push((Nid::SUBJECT_KEY_IDENTIFIER, false));
                want.push((Nid::AUTHORITY_KEY_IDENTIFIER, false));
                assert_eq!(extensions(&cert), want, "{kt} {profile:?}");
                assert!(cert.verify(&ca_key).unwrap(), "{kt}");
                assert_eq!(
                    cert.authority_key_id().unwrap().as_slice(),
                    ca_cert.subject_key_id().unwrap().as_slice()
                );
                let bits = own_key_bits(&leaf_key).unwrap();
                let sha = hash(MessageDigest::sha256(), &bits).unwrap();
                assert_eq!(cert.subject_key_id().unwrap().as_slice(), &sha[..20]);
                let eku = cert.extended_key_usage().unwrap();
                let want_eku = if profile == Profile::Server {
                    openssl::x509::X509ExtendedKeyUsage::SSL_SERVER
                } else {
                    openssl::x509::X509ExtendedKeyUsage::SSL_CLIENT
                };
                assert_eq!(eku, want_eku);
                // 128 random bits, top bit set: 16 octets.
                assert_eq!(cert.serial_number().to_bn().unwrap().num_bits(), 128);
            }
        }
    }
}
