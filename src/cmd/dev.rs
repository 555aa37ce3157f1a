//! `serve --dev`: a throwaway machine CA (Ed25519 and O=talos, as Talos makes
//! them; P-256 in FIPS mode) and a Talos-format token, written where the
//! normal loader reads them. Nothing here signs by its own rules: the CA is
//! `pki::cert`'s, the token `signer::auth`'s.

use std::fs;

use crate::pki::cert::self_signed_ca;
use crate::pki::fips;
use crate::pki::keys::KeyType;
use crate::pki::openssl_reason;
use crate::server::config::DevPlan;
use crate::signer::auth;
use crate::write_new_file;

pub fn prepare(plan: &DevPlan) -> Result<(), String> {
    fs::create_dir_all(&plan.dir)
        .map_err(|e| format!("--dev: cannot create {}: {e}", plan.dir.display()))?;
    if plan.make_ca {
        // FIPS mode refuses Ed25519 (unless allowed): the dev CA is P-256 then.
        let f = fips::state();
        let key_type = if f.enabled && !f.allow_ed25519 {
            KeyType::EcP256
        } else {
            KeyType::Ed25519
        };
        let (cert, key) = self_signed_ca(key_type, crate::unix_now())
            .map_err(|e| format!("--dev: cannot create a CA: {e}"))?;
        let cert_pem = cert.to_pem().map_err(|e| openssl_reason(&e))?;
        let key_pem = key
            .private_key_to_pem_pkcs8()
            .map_err(|e| openssl_reason(&e))?;
        write_new_file(&plan.dir.join("ca.crt"), &cert_pem, 0o644)?;
        write_new_file(&plan.dir.join("ca.key"), &key_pem, 0o600)?;
    }
    if plan.make_token {
        let (id, secret) = auth::generate().map_err(|e| format!("--dev: {e}"))?;
        write_new_file(
            &plan.dir.join("token"),
            format!("{id}.{secret}\n").as_bytes(),
            0o600,
        )?;
    }
    Ok(())
}
