//! The binary uses the system OpenSSL for everything (TLS inside gRPC core and
//! signing alike) and carries no BoringSSL: the FIPS story depends on it.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_talos-csr-signer");

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn links_system_libssl_and_libcrypto() {
    let ldd = run("ldd", &[BIN]);
    for lib in ["libssl.so.3", "libcrypto.so.3"] {
        let line = ldd
            .lines()
            .find(|l| l.contains(lib))
            .unwrap_or_else(|| panic!("{lib} not linked:\n{ldd}"));
        let path = line
            .split("=>")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap();
        assert!(
            path.starts_with("/lib/") || path.starts_with("/usr/lib/"),
            "{lib} from {path}"
        );
    }
}

#[test]
fn tls_and_signing_symbols_come_from_the_system_library_not_a_bundled_copy() {
    let imported = run("nm", &["-D", "--undefined-only", BIN]);
    let defined = run("nm", &["--defined-only", BIN]);
    // gRPC core's TLS and our signing both call into libssl/libcrypto 3.
    for sym in [
        "SSL_CTX_new",
        "SSL_do_handshake",
        "X509_sign",
        "EVP_DigestSignInit",
    ] {
        assert!(
            imported
                .lines()
                .any(|l| l.ends_with(&format!(" {sym}@OPENSSL_3.0.0"))),
            "{sym} is not imported from OpenSSL 3"
        );
        assert!(
            !defined.lines().any(|l| l.ends_with(&format!(" {sym}"))),
            "{sym} is compiled in"
        );
    }
    let boring: Vec<&str> = defined
        .lines()
        .filter(|l| l.to_ascii_lowercase().contains("boringssl") || l.contains("bssl"))
        .take(5)
        .collect();
    assert!(boring.is_empty(), "BoringSSL symbols present: {boring:?}");
}
