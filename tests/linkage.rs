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

/// What a Debian 12 host provides in its base system (glibc 2.36, libstdc++
/// 12 = GLIBCXX_3.4.30, OpenSSL 3.0): the bastion build, which the systemd
/// unit runs, needs nothing more.
const RUNTIME_LIBS: &[&str] = &[
    "linux-vdso.so.1",
    "libssl.so.3",
    "libcrypto.so.3",
    "libstdc++.so.6",
    "libgcc_s.so.1",
    "libm.so.6",
    "libc.so.6",
    "ld-linux-x86-64.so.2",
];

#[test]
fn dynamic_dependencies_are_what_debian_12_provides() {
    let ldd = run("ldd", &[BIN]);
    for line in ldd.lines() {
        let soname = line.split_whitespace().next().unwrap_or("");
        let soname = soname.rsplit('/').next().unwrap();
        assert!(
            RUNTIME_LIBS.contains(&soname),
            "{soname} is not in Debian 12's base system:\n{ldd}"
        );
    }
    // Symbol versions no newer than Debian 12's glibc and libstdc++.
    let symbols = run("objdump", &["-T", BIN]);
    let newest = |prefix: &str| -> Vec<u32> {
        symbols
            .split_whitespace()
            .filter_map(|w| w.strip_prefix(prefix))
            .map(|v| {
                v.split('.')
                    .map(|n| n.parse::<u32>().unwrap_or(0))
                    .collect::<Vec<_>>()
            })
            .max()
            .unwrap_or_default()
    };
    assert!(
        newest("GLIBC_") <= vec![2, 36],
        "needs glibc {:?}",
        newest("GLIBC_")
    );
    assert!(
        newest("GLIBCXX_") <= vec![3, 4, 30],
        "needs libstdc++ {:?}",
        newest("GLIBCXX_")
    );
}

/// The image's runtime stage is FROM scratch with only what the build stage
/// copied (the binary and its libraries), run as 65532, serving by default.
#[test]
fn dockerfile_runtime_is_scratch_non_root_serving() {
    let dockerfile =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile")).unwrap();
    let runtime = dockerfile.rsplit("\nFROM ").next().unwrap();
    assert!(runtime.starts_with("scratch\n"), "runtime stage: {runtime}");
    assert!(
        runtime
            .lines()
            .filter(|l| l.starts_with("COPY"))
            .all(|l| l.starts_with("COPY --from=build /rootfs/ /")),
        "runtime copies only the assembled /rootfs"
    );
    assert!(
        runtime.lines().any(|l| l.trim() == "USER 65532:65532"),
        "runtime user"
    );
    assert!(runtime.contains("EXPOSE 50001"));
    assert!(runtime.contains(r#"ENTRYPOINT ["/usr/local/bin/talos-csr-signer"]"#));
    assert!(
        !runtime.lines().any(|l| l.starts_with("CMD")),
        "no arguments means serve"
    );
    // Nothing but comments may name BoringSSL.
    assert!(!dockerfile
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .any(|l| l.to_lowercase().contains("boringssl")));
}
