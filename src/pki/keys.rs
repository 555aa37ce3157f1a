//! Key types we sign with and for, and the PEM forms Talos and OpenSSL write.

use std::fmt;
use std::str::FromStr;

use openssl::ec::{EcGroup, EcKey};
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{HasPublic, Id, PKey, PKeyRef, Private, Public};
use openssl::rsa::Rsa;
use openssl::x509::{X509ReqRef, X509};

use super::ffi::{self, Params, SpkiParts};

/// Smallest RSA modulus we accept anywhere: below this a key is breakable.
pub const MIN_RSA_BITS: u32 = 2048;

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

/// Parses a private key from PEM: `PRIVATE KEY` (PKCS#8), `ED25519 PRIVATE KEY`
/// (Talos's label for a PKCS#8 body), `EC PRIVATE KEY` (SEC1) or
/// `RSA PRIVATE KEY` (PKCS#1). Encrypted keys are refused.
pub fn parse_private_key(pem: &[u8]) -> Result<PKey<Private>, String> {
    let label = first_pem_label(pem).ok_or("no PEM block found (expected a private key)")?;
    let relabeled;
    let pem = match label {
        "PRIVATE KEY" | "EC PRIVATE KEY" | "RSA PRIVATE KEY" => pem,
        // OpenSSL does not know Talos's label; the body is plain PKCS#8.
        "ED25519 PRIVATE KEY" => {
            relabeled = relabel(pem, "ED25519 PRIVATE KEY", "PRIVATE KEY");
            &relabeled
        }
        "ENCRYPTED PRIVATE KEY" => return Err(encrypted_key()),
        other => {
            return Err(format!(
                "holds a {other:?} PEM block; expected PRIVATE KEY, ED25519 PRIVATE KEY, \
                 EC PRIVATE KEY or RSA PRIVATE KEY"
            ))
        }
    };
    if contains(pem, b"Proc-Type: 4,ENCRYPTED") {
        return Err(encrypted_key());
    }
    // An explicit empty passphrase: OpenSSL must never prompt on a terminal.
    PKey::private_key_from_pem_passphrase(pem, b"")
        .map_err(|e| format!("is not a valid {label} PEM: {}", openssl_reason(&e)))
}

/// Parses every `CERTIFICATE` block of a PEM file.
pub fn parse_certificates(pem: &[u8]) -> Result<Vec<X509>, String> {
    match X509::stack_from_pem(pem) {
        Ok(certs) if !certs.is_empty() => Ok(certs),
        Ok(_) => Err("holds no CERTIFICATE PEM block".to_string()),
        Err(e) => Err(format!(
            "is not a valid CERTIFICATE PEM: {}",
            openssl_reason(&e)
        )),
    }
}

fn encrypted_key() -> String {
    "is encrypted; provide the key unencrypted (protect it with file mode 0600)".to_string()
}

/// The label of the first `-----BEGIN <label>-----` line.
pub fn first_pem_label(pem: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(pem).ok()?;
    let start = text.find("-----BEGIN ")? + "-----BEGIN ".len();
    let end = text[start..].find("-----")?;
    Some(&text[start..start + end])
}

fn relabel(pem: &[u8], from: &str, to: &str) -> Vec<u8> {
    let text = String::from_utf8_lossy(pem);
    text.replace(
        &format!("-----BEGIN {from}-----"),
        &format!("-----BEGIN {to}-----"),
    )
    .replace(
        &format!("-----END {from}-----"),
        &format!("-----END {to}-----"),
    )
    .into_bytes()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The most specific reason OpenSSL gave, without the error-stack noise.
pub fn openssl_reason(e: &ErrorStack) -> String {
    e.errors()
        .last()
        .and_then(|err| err.reason().map(str::to_string))
        .unwrap_or_else(|| "malformed data".to_string())
}

/// The curves of `KeyType`'s ECDSA variants.
const EC_CURVES: [Nid; 3] = [Nid::X9_62_PRIME256V1, Nid::SECP384R1, Nid::SECP521R1];

/// An EC key's curve. By name first: `PKey::ec_key` on a provider's key
/// (as CSR keys are) makes a legacy copy that builds the curve again.
fn ec_curve<T: HasPublic>(key: &PKeyRef<T>) -> Option<Nid> {
    match ffi::ec_group_name(key) {
        Some(name) => EC_CURVES
            .into_iter()
            .find(|n| n.short_name().is_ok_and(|s| s == name))
            .or(Some(Nid::UNDEF)),
        None => key.ec_key().ok()?.group().curve_name(),
    }
}

/// A CSR's public key (the CSR must come from `ffi::csr_from_pem`). The key
/// types workers use are built straight from the SubjectPublicKeyInfo's bits;
/// any other form goes through OpenSSL's decoder as `X509Req::public_key`
/// would, so it is accepted or refused exactly as before.
pub fn csr_public_key(req: &X509ReqRef) -> Result<PKey<Public>, ErrorStack> {
    if let Some(key) = key_from_parts(&ffi::csr_spki_parts(req)?) {
        return Ok(key);
    }
    PKey::public_key_from_der(&ffi::csr_spki_der(req)?)
}

/// Ed25519 without parameters, RSA with NULL parameters, ECDSA on a named
/// curve we support; `None` for anything else or anything that does not build.
fn key_from_parts(p: &SpkiParts<'_>) -> Option<PKey<Public>> {
    let built = match (p.algorithm, p.params) {
        (a, Params::Absent) if a.as_raw() == openssl_sys::NID_ED25519 => {
            PKey::public_key_from_raw_bytes(p.bits, Id::ED25519)
        }
        (Nid::RSAENCRYPTION, Params::Null) => {
            Rsa::public_key_from_der_pkcs1(p.bits).and_then(PKey::from_rsa)
        }
        (Nid::X9_62_ID_ECPUBLICKEY, Params::Object(curve)) => {
            ffi::ec_public_key(curve_parameters(curve)?, p.bits)
        }
        _ => return None,
    };
    built.ok()
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
                .into_iter()
                .filter_map(|n| {
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

    /// The CSR's key built from its bits is the key OpenSSL's decoder finds,
    /// for every type workers use; other types still decode through OpenSSL.
    #[test]
    fn csr_keys_are_built_without_the_decoder_and_match_it() {
        use crate::pki::San;
        let mut types = vec![KeyType::Ed25519, KeyType::EcP256, KeyType::EcP384];
        types.extend([KeyType::EcP521, KeyType::Rsa(2048)]);
        for kt in types {
            let key = kt.generate().unwrap();
            let pem = crate::client::build_csr(&key, kt, "w", &[San::Dns("w".into())]).unwrap();
            let req = ffi::csr_from_pem(&pem).unwrap();
            let parts = ffi::csr_spki_parts(&req).unwrap();
            let fast = key_from_parts(&parts).unwrap_or_else(|| panic!("{kt}: no fast path"));
            let decoded = PKey::public_key_from_der(&ffi::csr_spki_der(&req).unwrap()).unwrap();
            assert!(fast.public_eq(&decoded), "{kt}");
            assert!(fast.public_eq(&key), "{kt}");
            assert_eq!(KeyType::of(&csr_public_key(&req).unwrap()), Some(kt));
            // EC keys are the provider's own, named by curve: no legacy copy.
            let named = ffi::ec_group_name(&fast).is_some();
            assert_eq!(named, fast.id() == openssl::pkey::Id::EC, "{kt}");
            assert!(ffi::csr_signed_by(&req, &fast), "{kt}");
        }
        // Ed448 has no fast path: decoded by OpenSSL, described, not supported.
        let ed448 = PKey::generate_ed448().unwrap();
        let mut b = openssl::x509::X509Req::builder().unwrap();
        b.set_pubkey(&ed448).unwrap();
        b.sign(&ed448, MessageDigest::null()).unwrap();
        let req = ffi::csr_from_pem(&b.build().to_pem().unwrap()).unwrap();
        assert!(key_from_parts(&ffi::csr_spki_parts(&req).unwrap()).is_none());
        let key = csr_public_key(&req).unwrap();
        assert_eq!(
            (KeyType::of(&key), KeyType::describe(&key)),
            (None, "Ed448".into())
        );
    }

    /// A key whose bits do not build (an EC point off the curve) is left to
    /// OpenSSL's decoder (which refuses it, as before).
    #[test]
    fn csr_keys_that_do_not_build_are_left_to_the_decoder() {
        let parts = SpkiParts {
            algorithm: Nid::X9_62_ID_ECPUBLICKEY,
            params: Params::Object(Nid::X9_62_PRIME256V1),
            bits: &[4u8; 65],
        };
        assert!(key_from_parts(&parts).is_none());
    }

    #[test]
    fn talos_label_is_relabeled_and_parsed() {
        let key = PKey::generate_ed25519().unwrap();
        let pem = relabel(
            &key.private_key_to_pem_pkcs8().unwrap(),
            "PRIVATE KEY",
            "ED25519 PRIVATE KEY",
        );
        assert_eq!(first_pem_label(&pem), Some("ED25519 PRIVATE KEY"));
        let parsed = parse_private_key(&pem).unwrap();
        assert!(parsed.public_eq(&key));
    }

    #[test]
    fn traditional_ec_and_rsa_labels_parse() {
        let ec = KeyType::EcP384.generate().unwrap();
        let sec1 = ec.ec_key().unwrap().private_key_to_pem().unwrap();
        assert_eq!(first_pem_label(&sec1), Some("EC PRIVATE KEY"));
        assert_eq!(
            KeyType::of(&parse_private_key(&sec1).unwrap()),
            Some(KeyType::EcP384)
        );

        let rsa = KeyType::Rsa(2048).generate().unwrap();
        let pkcs1 = rsa.rsa().unwrap().private_key_to_pem().unwrap();
        assert_eq!(first_pem_label(&pkcs1), Some("RSA PRIVATE KEY"));
        assert_eq!(
            KeyType::of(&parse_private_key(&pkcs1).unwrap()),
            Some(KeyType::Rsa(2048))
        );
    }

    #[test]
    fn encrypted_and_foreign_blocks_are_refused_without_prompting() {
        let key = PKey::generate_ed25519().unwrap();
        let enc = key
            .private_key_to_pem_pkcs8_passphrase(openssl::symm::Cipher::aes_256_cbc(), b"pw")
            .unwrap();
        assert!(parse_private_key(&enc).unwrap_err().contains("encrypted"));
        let err =
            parse_private_key(b"-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n")
                .unwrap_err();
        assert!(err.contains("\"CERTIFICATE\""), "{err}");
        assert!(parse_private_key(b"not pem")
            .unwrap_err()
            .contains("no PEM block"));
    }
}
