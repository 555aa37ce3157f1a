//! The Talos secrets-bundle / machine-config importer, on arbitrary YAML.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = talos_csr_signer::cmd::import::from_text(text, "fuzz");
    }
});
