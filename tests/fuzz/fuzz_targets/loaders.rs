//! The key and certificate loaders, with every PEM label, and the machine CA
//! checks on top of them: input is `key bytes \0 certificate bytes`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use talos_csr_signer::pki::ca::MachineCa;
use talos_csr_signer::pki::pem;

fuzz_target!(|data: &[u8]| {
    let (key, cert) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, data),
    };
    let _ = pem::parse_private_key(key);
    let _ = pem::parse_certificates(cert);
    let _ = pem::first_pem_label(data);
    let _ = MachineCa::new(cert, key, &[cert.to_vec()], talos_csr_signer::unix_now());
});
