//! `serve --dev`: a throwaway Ed25519 machine CA (O=talos, as Talos makes
//! them) and a Talos-format token, written where the normal loader reads them.

use std::fs;

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{BasicConstraints, KeyUsage, SubjectKeyIdentifier};
use openssl::x509::{X509Builder, X509Name, X509};

use crate::config::DevPlan;
use crate::pki::keys::{openssl_reason, KeyType};
use crate::write_new_file;

/// Throwaway CAs live a year: long enough for any dev session.
const DEV_CA_DAYS: u32 = 365;

pub fn prepare(plan: &DevPlan) -> Result<(), String> {
    fs::create_dir_all(&plan.dir)
        .map_err(|e| format!("--dev: cannot create {}: {e}", plan.dir.display()))?;
    if plan.make_ca {
        // FIPS mode refuses Ed25519 (unless allowed): the dev CA is P-256 then.
        let fips = crate::fips::state();
        let key_type = if fips.enabled && !fips.allow_ed25519 {
            KeyType::EcP256
        } else {
            KeyType::Ed25519
        };
        let (cert, key) =
            self_signed_ca(key_type).map_err(|e| format!("--dev: cannot create a CA: {e}"))?;
        let cert_pem = cert.to_pem().map_err(|e| openssl_reason(&e))?;
        let key_pem = key
            .private_key_to_pem_pkcs8()
            .map_err(|e| openssl_reason(&e))?;
        write_new_file(&plan.dir.join("ca.crt"), &cert_pem, 0o644)?;
        write_new_file(&plan.dir.join("ca.key"), &key_pem, 0o600)?;
    }
    if plan.make_token {
        let token = talos_token().map_err(|e| format!("--dev: {e}"))?;
        write_new_file(
            &plan.dir.join("token"),
            format!("{token}\n").as_bytes(),
            0o600,
        )?;
    }
    Ok(())
}

/// A CA shaped like `talosctl gen secrets` makes (Ed25519 unless FIPS mode
/// refuses it), O=talos, CA:TRUE, keyUsage certSign + digitalSignature.
pub fn self_signed_ca(key_type: KeyType) -> Result<(X509, PKey<Private>), String> {
    let build = || -> Result<(X509, PKey<Private>), openssl::error::ErrorStack> {
        let key = key_type.generate()?;
        let mut name = X509Name::builder()?;
        name.append_entry_by_nid(Nid::ORGANIZATIONNAME, "talos")?;
        let name = name.build();
        let mut serial = BigNum::new()?;
        serial.rand(128, MsbOption::ONE, false)?;
        let mut b = X509Builder::new()?;
        b.set_version(2)?;
        let serial_asn1 = serial.to_asn1_integer()?;
        b.set_serial_number(&serial_asn1)?;
        b.set_subject_name(&name)?;
        b.set_issuer_name(&name)?;
        b.set_pubkey(&key)?;
        // Backdated like issued certificates, so the clock-skew margin applies.
        let now = crate::unix_now();
        let not_before = Asn1Time::from_unix(now - 3600)?;
        let not_after = Asn1Time::days_from_now(DEV_CA_DAYS)?;
        b.set_not_before(&not_before)?;
        b.set_not_after(&not_after)?;
        b.append_extension(BasicConstraints::new().critical().ca().build()?)?;
        b.append_extension(
            KeyUsage::new()
                .critical()
                .key_cert_sign()
                .digital_signature()
                .build()?,
        )?;
        let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(None, None))?;
        b.append_extension(ski)?;
        b.sign(&key, key_type.signing_digest())?;
        Ok((b.build(), key))
    };
    build().map_err(|e| openssl_reason(&e))
}

/// `[a-z0-9]{6}.[a-z0-9]{16}`, the shape of machine.token.
pub fn talos_token() -> Result<String, String> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(23);
    let mut buf = [0u8; 64];
    while out.len() < 23 {
        openssl::rand::rand_bytes(&mut buf).map_err(|e| openssl_reason(&e))?;
        // 252 = 7 × 36: rejecting larger bytes keeps every character equally likely.
        for &b in buf.iter().filter(|&&b| b < 252) {
            if out.len() == 6 {
                out.push('.');
            }
            if out.len() == 23 {
                break;
            }
            out.push(ALPHABET[usize::from(b % 36)] as char);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_has_talos_shape() {
        for _ in 0..50 {
            let t = talos_token().unwrap();
            let (a, b) = t.split_once('.').unwrap();
            assert_eq!((a.len(), b.len()), (6, 16), "{t}");
            assert!(t
                .bytes()
                .all(|c| c == b'.' || c.is_ascii_lowercase() || c.is_ascii_digit()));
        }
        assert_ne!(talos_token().unwrap(), talos_token().unwrap());
    }
}
