//! talosctl's client certificate, as `talosctl gen config` makes it for a
//! talosconfig: Organization `os:admin` (the Talos role apid authorises),
//! clientAuth only, signed by the machine (OS) CA, a fresh key of the CA's
//! type. apid accepts it when it chains to a CA in the bundle the worker got
//! from the signer.

use std::time::Duration;

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::nid::Nid;
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage,
};
use openssl::x509::{X509Builder, X509Name};

use super::ca::MachineCa;
use super::ffi;
use super::issue::IssueError;

/// The role talosctl needs for everything (`talosctl -n <worker> version`).
pub const ADMIN_ROLE: &str = "os:admin";

pub struct ClientCert {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

/// A client certificate for `role`, valid from now for `lifetime` (never past
/// the CA's own end).
pub fn issue(
    ca: &MachineCa,
    role: &str,
    lifetime: Duration,
    now_unix: i64,
) -> Result<ClientCert, IssueError> {
    let key = ca.key_type().generate()?;
    let mut subject = X509Name::builder()?;
    subject.append_entry_by_nid(Nid::ORGANIZATIONNAME, role)?;
    let subject = subject.build();
    let mut serial = BigNum::new()?;
    serial.rand(128, MsbOption::ONE, false)?;
    let lifetime = i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX);
    let not_after = now_unix.saturating_add(lifetime).min(ca.not_after_unix());

    let mut b = X509Builder::new()?;
    b.set_version(2)?;
    let serial = serial.to_asn1_integer()?;
    b.set_serial_number(&serial)?;
    b.set_subject_name(&subject)?;
    b.set_issuer_name(ca.cert().subject_name())?;
    b.set_pubkey(&key)?;
    // Backdated like the worker certificates, for clock skew.
    let (not_before, not_after) = (
        Asn1Time::from_unix(now_unix - 300)?,
        Asn1Time::from_unix(not_after)?,
    );
    b.set_not_before(&not_before)?;
    b.set_not_after(&not_after)?;
    b.append_extension(BasicConstraints::new().critical().build()?)?;
    b.append_extension(KeyUsage::new().critical().digital_signature().build()?)?;
    b.append_extension(ExtendedKeyUsage::new().client_auth().build()?)?;
    let aki = AuthorityKeyIdentifier::new()
        .keyid(false)
        .build(&b.x509v3_context(Some(ca.cert()), None))?;
    b.append_extension(aki)?;
    let cert = b.build();
    ffi::sign(&cert, ca.key(), ca.digest())?;
    Ok(ClientCert {
        cert_pem: cert.to_pem()?,
        key_pem: key.private_key_to_pem_pkcs8()?,
    })
}
