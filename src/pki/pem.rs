//! The PEM forms Talos, cert-manager and OpenSSL write for keys and
//! certificates: every label they use, never a pass-phrase prompt.

use openssl::pkey::{PKey, Private};
use openssl::x509::X509;

use super::openssl_reason;

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

/// DER as one PEM block labelled `label`, in 64-character lines as OpenSSL
/// writes it (the tests and the fuzz targets send CSRs so).
pub fn encode(label: &str, der: &[u8]) -> Vec<u8> {
    let b64 = openssl::base64::encode_block(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out.into_bytes()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::keys::KeyType;

    #[test]
    fn encode_writes_what_openssl_writes() {
        let key = PKey::generate_ed25519().unwrap();
        let der = key.private_key_to_pkcs8().unwrap();
        assert_eq!(
            encode("PRIVATE KEY", &der),
            key.private_key_to_pem_pkcs8().unwrap()
        );
        let now = crate::unix_now();
        let (cert, _) = crate::pki::cert::self_signed_ca(KeyType::Rsa(2048), now).unwrap();
        assert_eq!(
            encode("CERTIFICATE", &cert.to_der().unwrap()),
            cert.to_pem().unwrap()
        );
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
