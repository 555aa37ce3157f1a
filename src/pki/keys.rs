//! Key types we sign with and for, and the checks of a CSR's key.

use std::fmt;
use std::str::FromStr;

use openssl::ec::{EcGroup, EcKey};
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{HasPublic, Id, PKey, PKeyRef, Private, Public};
use openssl::rsa::Rsa;

use super::{der, ffi};

/// Smallest RSA modulus we accept anywhere: below this a key is breakable.
pub const MIN_RSA_BITS: u32 = 2048;
/// Largest RSA modulus we accept anywhere: Talos makes 4096-bit keys at most,
/// and a bigger one only makes every verification slower.
pub const MAX_RSA_BITS: u32 = 8192;

/// The key algorithms Talos machine CAs and workers use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyType {
    Ed25519,
    EcP256,
    EcP384,
    EcP521,
    Rsa(u32),
}

impl KeyType {
    /// Classifies a key; `None` for algorithms and curves we do not support.
    pub fn of<T: HasPublic>(key: &PKeyRef<T>) -> Option<KeyType> {
        match key.id() {
            Id::ED25519 => Some(KeyType::Ed25519),
            Id::RSA => Some(KeyType::Rsa(key.bits())),
            Id::EC => match ec_curve(key)? {
                Nid::X9_62_PRIME256V1 => Some(KeyType::EcP256),
                Nid::SECP384R1 => Some(KeyType::EcP384),
                Nid::SECP521R1 => Some(KeyType::EcP521),
                _ => None,
            },
            _ => None,
        }
    }

    /// Describes a key for error messages, including ones `of` rejects.
    pub fn describe<T: HasPublic>(key: &PKeyRef<T>) -> String {
        if let Some(t) = KeyType::of(key) {
            return t.to_string();
        }
        let curve = key
            .ec_key()
            .ok()
            .and_then(|k| k.group().curve_name())
            .and_then(|n| n.short_name().ok());
        match (key.id(), curve) {
            (Id::EC, Some(name)) => format!("ECDSA {name}"),
            (Id::ED448, _) => "Ed448".to_string(),
            (Id::DSA, _) => "DSA".to_string(),
            (id, _) => format!("key algorithm #{}", id.as_raw()),
        }
    }

    pub fn generate(self) -> Result<PKey<Private>, ErrorStack> {
        let ec = |nid| EcGroup::from_curve_name(nid).and_then(|g| EcKey::generate(&g));
        match self {
            KeyType::Ed25519 => PKey::generate_ed25519(),
            KeyType::EcP256 => PKey::from_ec_key(ec(Nid::X9_62_PRIME256V1)?),
            KeyType::EcP384 => PKey::from_ec_key(ec(Nid::SECP384R1)?),
            KeyType::EcP521 => PKey::from_ec_key(ec(Nid::SECP521R1)?),
            KeyType::Rsa(bits) => PKey::from_rsa(Rsa::generate(bits)?),
        }
    }

    /// The digest to sign with a key of this type: Ed25519 hashes internally
    /// (PureEdDSA), ECDSA matches the hash to the curve size, RSA uses SHA-256.
    pub fn signing_digest(self) -> MessageDigest {
        match self {
            KeyType::Ed25519 => MessageDigest::null(),
            KeyType::EcP256 | KeyType::Rsa(_) => MessageDigest::sha256(),
            KeyType::EcP384 => MessageDigest::sha384(),
            KeyType::EcP521 => MessageDigest::sha512(),
        }
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyType::Ed25519 => f.write_str("Ed25519"),
            KeyType::EcP256 => f.write_str("ECDSA P-256"),
            KeyType::EcP384 => f.write_str("ECDSA P-384"),
            KeyType::EcP521 => f.write_str("ECDSA P-521"),
            KeyType::Rsa(bits) => write!(f, "RSA-{bits}"),
        }
    }
}

impl FromStr for KeyType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "ed25519" => Ok(KeyType::Ed25519),
            "ecdsa-p256" | "p256" | "p-256" => Ok(KeyType::EcP256),
            "ecdsa-p384" | "p384" | "p-384" => Ok(KeyType::EcP384),
            "ecdsa-p521" | "p521" | "p-521" => Ok(KeyType::EcP521),
            "rsa" | "rsa-2048" => Ok(KeyType::Rsa(2048)),
            "rsa-3072" => Ok(KeyType::Rsa(3072)),
            "rsa-4096" => Ok(KeyType::Rsa(4096)),
            _ => Err(format!(
                "unknown key type {s:?}; use ed25519, ecdsa-p256, ecdsa-p384, ecdsa-p521, \
                 rsa-2048, rsa-3072 or rsa-4096"
            )),
        }
    }
}

/// The ECDSA curves of `KeyType`: its variant, OpenSSL's NID, the curve OID's
/// content octets, and the size of a coordinate in octets.
const EC_CURVES: [(KeyType, Nid, &[u8], usize); 3] = [
    (
        KeyType::EcP256,
        Nid::X9_62_PRIME256V1,
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07],
        32,
    ),
    (
        KeyType::EcP384,
        Nid::SECP384R1,
        &[0x2b, 0x81, 0x04, 0x00, 0x22],
        48,
    ),
    (
        KeyType::EcP521,
        Nid::SECP521R1,
        &[0x2b, 0x81, 0x04, 0x00, 0x23],
        66,
    ),
];

/// Algorithm OIDs (content octets) of the keys we certify.
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];

/// An EC key's curve. By name first: `PKey::ec_key` on a provider's key
/// (as CSR keys are) makes a legacy copy that builds the curve again.
fn ec_curve<T: HasPublic>(key: &PKeyRef<T>) -> Option<Nid> {
    match ffi::ec_group_name(key) {
        Some(name) => EC_CURVES
            .iter()
            .map(|c| c.1)
            .find(|n| n.short_name().is_ok_and(|s| s == name))
            .or(Some(Nid::UNDEF)),
        None => key.ec_key().ok()?.group().curve_name(),
    }
}

/// A CSR's public key, checked: its type, OpenSSL's key (to verify the CSR's
/// signature with), and the SubjectPublicKeyInfo the certificate carries
/// byte for byte.
pub struct CsrKey {
    pub key_type: KeyType,
    pub key: PKey<Public>,
    pub spki: ffi::Spki,
    pub bits: Vec<u8>,
}

/// Why a CSR's key is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum CsrKeyError {
    /// An algorithm, curve or form we never certify; the text names it.
    Unsupported(String),
    /// Not a well-formed key; the text says what is wrong.
    Malformed(String),
}

/// Checks a CSR's SubjectPublicKeyInfo (DER, as sent) and builds its key.
/// Only the forms Talos workers (Go's crypto/x509) send are accepted, each
/// as its RFC writes it: Ed25519 without parameters and 32 octets (RFC
/// 8410), ECDSA on a named curve with an uncompressed point on that curve
/// (RFC 5480; Go's x509 cannot read compressed points, so a certificate with
/// one would break talosctl), RSA with NULL parameters and an RSAPublicKey
/// (RFC 3279) whose exponent Go accepts. Keys are built from these octets
/// directly: OpenSSL 3.0's decoder costs a million instructions per CSR.
pub fn csr_key(spki_der: &[u8]) -> Result<CsrKey, CsrKeyError> {
    use CsrKeyError::Malformed;
    let parts = der::spki_parts(spki_der)
        .ok_or_else(|| Malformed("its SubjectPublicKeyInfo is not well-formed DER".into()))?;
    // Every key we certify is whole octets; unused bits could only smuggle
    // a second reading of the same BIT STRING.
    if parts.unused_bits != 0 {
        return Err(Malformed(format!(
            "its subjectPublicKey BIT STRING has {} unused bits; a key is whole octets",
            parts.unused_bits
        )));
    }
    match parts.algorithm {
        OID_ED25519 => ed25519_key(&parts),
        OID_EC_PUBLIC_KEY => ec_key(&parts),
        OID_RSA => rsa_key(&parts),
        other => Err(CsrKeyError::Unsupported(algorithm_name(other))),
    }
}

fn ed25519_key(p: &der::Spki<'_>) -> Result<CsrKey, CsrKeyError> {
    use CsrKeyError::Malformed;
    if p.params.is_some() {
        return Err(Malformed(
            "its Ed25519 AlgorithmIdentifier has parameters (RFC 8410 forbids them)".into(),
        ));
    }
    if p.key.len() != 32 {
        return Err(Malformed(format!(
            "its Ed25519 key is {} bytes; an Ed25519 key is 32",
            p.key.len()
        )));
    }
    let key = PKey::public_key_from_raw_bytes(p.key, Id::ED25519).map_err(|e| {
        Malformed(format!(
            "its Ed25519 key does not load: {}",
            super::openssl_reason(&e)
        ))
    })?;
    Ok(CsrKey {
        key_type: KeyType::Ed25519,
        key,
        spki: ffi::Spki {
            algorithm: Nid::from_raw(openssl_sys::NID_ED25519),
            params: ffi::SpkiParams::Absent,
        },
        bits: p.key.to_vec(),
    })
}

fn ec_key(p: &der::Spki<'_>) -> Result<CsrKey, CsrKeyError> {
    use CsrKeyError::{Malformed, Unsupported};
    let curve_oid =
        match p.params {
            Some(der::Element {
                tag: der::OID,
                content,
            }) => content,
            Some(der::Element {
                tag: der::SEQUENCE, ..
            }) => return Err(Unsupported(
                "ECDSA with explicit curve parameters (use a named curve: P-256, P-384 or P-521)"
                    .into(),
            )),
            _ => return Err(Malformed("its ECDSA key names no curve".into())),
        };
    let Some(&(key_type, nid, _, size)) = EC_CURVES.iter().find(|c| c.2 == curve_oid) else {
        return Err(Unsupported(format!("ECDSA {}", oid_name(curve_oid))));
    };
    if p.key.len() != 1 + 2 * size || p.key[0] != 0x04 {
        return Err(Malformed(format!(
            "its {key_type} key is not an uncompressed point ({} bytes starting with 04)",
            1 + 2 * size
        )));
    }
    let params = curve_parameters(nid)
        .ok_or_else(|| Malformed(format!("{key_type} is not available in this OpenSSL")))?;
    let key = ffi::ec_public_key(params, p.key)
        .ok_or_else(|| Malformed(format!("its {key_type} key is not a point on the curve")))?;
    Ok(CsrKey {
        key_type,
        key,
        spki: ffi::Spki {
            algorithm: Nid::X9_62_ID_ECPUBLICKEY,
            params: ffi::SpkiParams::Curve(nid),
        },
        bits: p.key.to_vec(),
    })
}

fn rsa_key(p: &der::Spki<'_>) -> Result<CsrKey, CsrKeyError> {
    use CsrKeyError::Malformed;
    if p.params
        != Some(der::Element {
            tag: 0x05,
            content: &[],
        })
    {
        return Err(Malformed(
            "its RSA AlgorithmIdentifier parameters are not NULL (RFC 3279)".into(),
        ));
    }
    // Exactly one RSAPublicKey: OpenSSL's reader would ignore bytes after it.
    let bad = || Malformed("its RSA key is not an RSAPublicKey (PKCS #1)".into());
    der::only(p.key, der::SEQUENCE).ok_or_else(bad)?;
    let rsa = Rsa::public_key_from_der_pkcs1(p.key).map_err(|_| bad())?;
    let (n, e) = (rsa.n(), rsa.e());
    if n.is_negative() || !n.is_bit_set(0) {
        return Err(Malformed(
            "its RSA modulus is not a positive odd number".into(),
        ));
    }
    // Go's crypto/rsa refuses exponents outside 2..2^31-1, so apid could
    // not load the key; even exponents are never RSA.
    if e.is_negative() || !e.is_bit_set(0) || e.num_bits() < 2 || e.num_bits() > 31 {
        return Err(Malformed(
            "its RSA public exponent is not an odd number from 3 to 2^31-1".into(),
        ));
    }
    let key_type = KeyType::Rsa(u32::try_from(n.num_bits()).unwrap_or(0));
    let key = PKey::from_rsa(rsa).map_err(|e| {
        Malformed(format!(
            "its RSA key does not load: {}",
            super::openssl_reason(&e)
        ))
    })?;
    Ok(CsrKey {
        key_type,
        key,
        spki: ffi::Spki {
            algorithm: Nid::RSAENCRYPTION,
            params: ffi::SpkiParams::Null,
        },
        bits: p.key.to_vec(),
    })
}

/// A key algorithm's name for messages: OpenSSL's short name where it knows
/// the OID (spelled as people write the well-known ones), else the OID.
fn algorithm_name(oid: &[u8]) -> String {
    match oid_name(oid).as_str() {
        "ED448" => "Ed448".to_string(),
        "RSASSA-PSS" => "RSA-PSS".to_string(),
        other => other.to_string(),
    }
}

fn oid_name(oid: &[u8]) -> String {
    let Some(dotted) = der::dotted_oid(oid) else {
        return "a malformed algorithm OID".to_string();
    };
    openssl::asn1::Asn1Object::from_str(&dotted)
        .ok()
        .map(|o| o.nid())
        .filter(|n| *n != Nid::UNDEF)
        .and_then(|n| n.short_name().ok())
        .map_or(dotted, str::to_string)
}

/// The parameters of the curves of `KeyType`, built once: OpenSSL 3.0
/// rebuilds a curve's tables every time one is asked for by name, and a
/// CSR's key made from these copies them instead (`ffi::ec_public_key`).
fn curve_parameters(curve: Nid) -> Option<&'static PKey<openssl::pkey::Params>> {
    type Curves = Vec<(Nid, PKey<openssl::pkey::Params>)>;
    static CURVES: std::sync::OnceLock<Curves> = std::sync::OnceLock::new();
    CURVES
        .get_or_init(|| {
            EC_CURVES
                .iter()
                .filter_map(|&(_, n, _, _)| {
                    let name = std::ffi::CString::new(n.short_name().ok()?).ok()?;
                    ffi::ec_curve_parameters(&name).ok().map(|k| (n, k))
                })
                .collect()
        })
        .iter()
        .find(|(n, _)| *n == curve)
        .map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spki_of(key: &PKey<Private>) -> Vec<u8> {
        key.public_key_to_der().unwrap()
    }

    /// The CSR key built from its octets is the key itself, for every type
    /// workers use, and its SubjectPublicKeyInfo parts say what they are.
    #[test]
    fn supported_keys_are_built_from_their_octets() {
        let mut types = vec![KeyType::Ed25519, KeyType::EcP256, KeyType::EcP384];
        types.extend([KeyType::EcP521, KeyType::Rsa(2048)]);
        for kt in types {
            let key = kt.generate().unwrap();
            let got = csr_key(&spki_of(&key)).unwrap_or_else(|e| panic!("{kt}: {e:?}"));
            assert_eq!(got.key_type, kt);
            assert!(got.key.public_eq(&key), "{kt}");
            // EC keys are the provider's own, named by curve: no legacy copy.
            assert_eq!(
                ffi::ec_group_name(&got.key).is_some(),
                got.key.id() == Id::EC,
                "{kt}"
            );
            let want = der::spki_parts(&spki_of(&key)).unwrap().key.to_vec();
            assert_eq!(got.bits, want, "{kt}");
        }
    }

    /// SubjectPublicKeyInfo DER from its parts.
    fn spki(alg: &[u8], params: &[u8], unused: u8, key: &[u8]) -> Vec<u8> {
        fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
            let mut out = vec![tag];
            if content.len() < 128 {
                out.push(content.len() as u8);
            } else {
                out.extend([0x82, (content.len() >> 8) as u8, content.len() as u8]);
            }
            out.extend(content);
            out
        }
        let algorithm = tlv(0x30, &[tlv(0x06, alg), params.to_vec()].concat());
        let bits = tlv(0x03, &[&[unused][..], key].concat());
        tlv(0x30, &[algorithm, bits].concat())
    }

    /// Every malformed or unsupported key form gets its own reason, and none
    /// reaches OpenSSL with something it could misread.
    #[test]
    fn malformed_and_unsupported_keys_are_refused_with_a_reason() {
        let ed = PKey::generate_ed25519().unwrap().raw_public_key().unwrap();
        let p256 = KeyType::EcP256.generate().unwrap();
        let p256_point = der::spki_parts(&spki_of(&p256)).unwrap().key.to_vec();
        let p256_oid: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
        let rsa = KeyType::Rsa(2048).generate().unwrap();
        let rsa_bits = der::spki_parts(&spki_of(&rsa)).unwrap().key.to_vec();
        let compressed = {
            let ec = p256.ec_key().unwrap();
            let mut ctx = openssl::bn::BigNumContext::new().unwrap();
            ec.public_key()
                .to_bytes(
                    ec.group(),
                    openssl::ec::PointConversionForm::COMPRESSED,
                    &mut ctx,
                )
                .unwrap()
        };
        let mut off_curve = p256_point.clone();
        off_curve[10] ^= 1;
        // RSAPublicKey { n, e } with the given exponent octets.
        let rsa_with_e = |e: &[u8]| {
            let r = rsa.rsa().unwrap();
            let n = [&[0u8][..], &r.n().to_vec()].concat();
            let mut body = vec![0x02, 0x82, (n.len() >> 8) as u8, n.len() as u8];
            body.extend(&n);
            body.extend([0x02, e.len() as u8]);
            body.extend(e);
            let mut out = vec![0x30, 0x82, (body.len() >> 8) as u8, body.len() as u8];
            out.extend(body);
            out
        };
        let explicit = [0x30, 0x03, 0x02, 0x01, 0x01];
        let brainpool: &[u8] = &[
            0x06, 0x09, 0x2b, 0x24, 0x03, 0x03, 0x02, 0x08, 0x01, 0x01, 0x07,
        ];
        use CsrKeyError::{Malformed as M, Unsupported as U};
        let table: Vec<(&str, Vec<u8>, CsrKeyError)> = vec![
            (
                "empty Ed25519",
                spki(OID_ED25519, &[], 0, &[]),
                M("is 0 bytes".into()),
            ),
            (
                "short Ed25519",
                spki(OID_ED25519, &[], 0, &ed[..31]),
                M("is 31 bytes".into()),
            ),
            (
                "long Ed25519",
                spki(OID_ED25519, &[], 0, &[&ed[..], &[0]].concat()),
                M("is 33 bytes".into()),
            ),
            (
                "Ed25519 with parameters",
                spki(OID_ED25519, &[0x05, 0x00], 0, &ed),
                M("has parameters".into()),
            ),
            (
                "Ed25519 with unused bits",
                spki(OID_ED25519, &[], 3, &ed),
                M("3 unused bits".into()),
            ),
            (
                "empty P-256",
                spki(OID_EC_PUBLIC_KEY, p256_oid, 0, &[]),
                M("not an uncompressed point".into()),
            ),
            (
                "short P-256",
                spki(OID_EC_PUBLIC_KEY, p256_oid, 0, &p256_point[..64]),
                M("not an uncompressed point".into()),
            ),
            (
                "compressed P-256",
                spki(OID_EC_PUBLIC_KEY, p256_oid, 0, &compressed),
                M("not an uncompressed point".into()),
            ),
            (
                "P-256 point at infinity",
                spki(OID_EC_PUBLIC_KEY, p256_oid, 0, &[0]),
                M("not an uncompressed point".into()),
            ),
            (
                "P-256 off its curve",
                spki(OID_EC_PUBLIC_KEY, p256_oid, 0, &off_curve),
                M("not a point on the curve".into()),
            ),
            (
                "P-256 with unused bits",
                spki(OID_EC_PUBLIC_KEY, p256_oid, 1, &p256_point),
                M("1 unused bits".into()),
            ),
            (
                "EC without a curve",
                spki(OID_EC_PUBLIC_KEY, &[], 0, &p256_point),
                M("names no curve".into()),
            ),
            (
                "EC with NULL for a curve",
                spki(OID_EC_PUBLIC_KEY, &[0x05, 0x00], 0, &p256_point),
                M("names no curve".into()),
            ),
            (
                "explicit curve",
                spki(OID_EC_PUBLIC_KEY, &explicit, 0, &p256_point),
                U("explicit curve parameters".into()),
            ),
            (
                "brainpool",
                spki(OID_EC_PUBLIC_KEY, brainpool, 0, &p256_point),
                U("ECDSA brainpoolP256r1".into()),
            ),
            (
                "empty RSA",
                spki(OID_RSA, &[0x05, 0x00], 0, &[]),
                M("not an RSAPublicKey".into()),
            ),
            (
                "RSA without NULL",
                spki(OID_RSA, &[], 0, &rsa_bits),
                M("not NULL".into()),
            ),
            (
                "RSA with trailing bytes",
                spki(OID_RSA, &[0x05, 0x00], 0, &[&rsa_bits[..], &[0]].concat()),
                M("not an RSAPublicKey".into()),
            ),
            (
                "RSA exponent 1",
                spki(OID_RSA, &[0x05, 0x00], 0, &rsa_with_e(&[1])),
                M("exponent".into()),
            ),
            (
                "RSA even exponent",
                spki(OID_RSA, &[0x05, 0x00], 0, &rsa_with_e(&[1, 0, 0])),
                M("exponent".into()),
            ),
            (
                "RSA exponent 2^32+1",
                spki(OID_RSA, &[0x05, 0x00], 0, &rsa_with_e(&[1, 0, 0, 0, 1])),
                M("exponent".into()),
            ),
            (
                "Ed448",
                spki(&[0x2b, 0x65, 0x71], &[], 0, &[0; 57]),
                U("Ed448".into()),
            ),
            (
                "X25519",
                spki(&[0x2b, 0x65, 0x6e], &[], 0, &ed),
                U("X25519".into()),
            ),
            (
                "unknown OID",
                spki(&[0x2a, 0x03, 0x04], &[], 0, &ed),
                U("1.2.3.4".into()),
            ),
            (
                "malformed OID",
                spki(&[0x2a, 0x83], &[], 0, &ed),
                U("malformed algorithm OID".into()),
            ),
        ];
        for (name, der, want) in table {
            let got = csr_key(&der)
                .err()
                .unwrap_or_else(|| panic!("{name}: accepted"));
            let ok = match (&got, &want) {
                (M(g), M(w)) | (U(g), U(w)) => g.contains(w.as_str()),
                _ => false,
            };
            assert!(ok, "{name}: got {got:?}, want {want:?}");
        }
        assert!(
            rsa_with_e(&[1, 0, 1]) == rsa_bits,
            "the exponent builder rebuilds the real key"
        );
        let good_rsa = csr_key(&spki(OID_RSA, &[0x05, 0x00], 0, &rsa_with_e(&[1, 0, 1]))).unwrap();
        assert_eq!(good_rsa.key_type, KeyType::Rsa(2048));
    }
}
