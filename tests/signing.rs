//! What the signer issues, checked field by field on real certificates from the
//! real binary over real TLS.

mod common;

use common::*;
use openssl::nid::Nid;
use openssl::x509::{X509ExtendedKeyUsage, X509KeyUsage, X509};
use talos_csr_signer::pki::keys::KeyType;
use talos_csr_signer::pki::{cert_sans, is_ca, San};

/// Every property of an issued certificate that workers, apid and talosctl
/// depend on, for a CSR made from `spec`.
fn assert_issued(
    ca: &Ca,
    ca_type: KeyType,
    spec: &CsrSpec,
    key: &openssl::pkey::PKey<openssl::pkey::Private>,
    crt: &[u8],
    bundle: &[X509],
    validity_secs: i64,
) -> X509 {
    let certs = X509::stack_from_pem(crt).unwrap();
    assert_eq!(certs.len(), 1, "crt must hold exactly one certificate");
    let leaf = certs.into_iter().next().unwrap();
    let now = now_unix();

    assert_eq!(leaf.version(), 2, "X.509 v3");
    assert!(
        leaf.public_key().unwrap().public_eq(key),
        "certifies the CSR's key"
    );
    assert_eq!(
        leaf.issuer_name().to_der().unwrap(),
        ca.cert.subject_name().to_der().unwrap()
    );
    assert_eq!(leaf.signature_algorithm().object().nid(), sig_alg(ca_type));

    // Serial: positive, at most 20 octets, and random (at least 120 bits).
    let serial = leaf.serial_number().to_bn().unwrap();
    assert!(!serial.is_negative());
    assert!(
        serial.num_bits() >= 120 && serial.num_bytes() <= 20,
        "serial {} bits",
        serial.num_bits()
    );

    // Subject: the CSR's, without any O.
    let subject: Vec<(Nid, String)> = leaf
        .subject_name()
        .entries()
        .map(|e| {
            (
                e.object().nid(),
                String::from_utf8(e.data().as_slice().to_vec()).unwrap(),
            )
        })
        .collect();
    let expected: Vec<(Nid, String)> = spec
        .subject
        .iter()
        .filter(|(n, _)| *n != Nid::ORGANIZATIONNAME)
        .cloned()
        .collect();
    assert_eq!(subject, expected);

    // SANs: exactly the DNS and IP names asked for, in order; nothing else.
    let mut want: Vec<San> = spec.dns.iter().map(|d| San::Dns(d.clone())).collect();
    want.extend(spec.ips.iter().map(|i| San::Ip(i.parse().unwrap())));
    let got = cert_sans(&leaf);
    let (mut w, mut g) = (want.clone(), got.clone());
    w.sort_by_key(|s| s.to_string());
    g.sort_by_key(|s| s.to_string());
    assert_eq!(g, w, "SANs");
    let san_entries = leaf.subject_alt_names().map_or(0, |s| s.len());
    assert_eq!(san_entries, want.len(), "no URI/email/other SAN entries");

    // Extensions: exactly these, with these criticalities.
    let mut exts = vec![
        (Nid::BASIC_CONSTRAINTS, true),
        (Nid::KEY_USAGE, true),
        (Nid::EXT_KEY_USAGE, false),
    ];
    if !want.is_empty() {
        exts.push((Nid::SUBJECT_ALT_NAME, false));
    }
    exts.push((Nid::SUBJECT_KEY_IDENTIFIER, false));
    exts.push((Nid::AUTHORITY_KEY_IDENTIFIER, false));
    assert_eq!(extensions(&leaf), exts);
    // RFC 7093 method 1: SHA-256 of the key bits, leftmost 160 bits.
    let spki = leaf.public_key().unwrap().public_key_to_der().unwrap();
    let bits = &spki[spki.len() - key_bits_len(&spki)..];
    let want = openssl::sha::sha256(bits);
    assert_eq!(
        leaf.subject_key_id().unwrap().as_slice(),
        &want[..20],
        "SKI"
    );
    assert!(!is_ca(&leaf), "never a CA");
    assert_eq!(leaf.key_usage(), Some(X509KeyUsage::DIGITAL_SIGNATURE));
    assert_eq!(
        leaf.extended_key_usage(),
        Some(X509ExtendedKeyUsage::SSL_SERVER)
    );
    assert!(aki_matches_ski(&leaf, &ca.cert), "AKI = CA's SKI");

    // Validity: backdated by the fixed skew, `validity` ahead, inside the CA's.
    let nb = unix(leaf.not_before());
    let na = unix(leaf.not_after());
    assert!(
        nb <= now - 240 && nb >= now - 360,
        "notBefore backdated ~5 min: {}",
        now - nb
    );
    let ca_na = unix(ca.cert.not_after());
    let expect_na = (now + validity_secs).min(ca_na);
    assert!(
        (na - expect_na).abs() <= 30,
        "notAfter {na}, expected ~{expect_na}"
    );
    assert!(na <= ca_na, "never beyond the CA");

    verify_chain(&leaf, bundle).expect("chain verifies with OpenSSL against the returned ca");
    leaf
}

/// Length of the subjectPublicKey bits at the end of an SPKI DER
/// (SEQUENCE { AlgorithmIdentifier, BIT STRING }), without the unused-bits octet.
fn key_bits_len(spki: &[u8]) -> usize {
    let (outer, _) = der_element(spki, 0);
    let (alg_h, alg_len) = der_element(spki, outer);
    let (_, bits_len) = der_element(spki, outer + alg_h + alg_len);
    bits_len - 1
}

fn sign_and_check(ca_type: KeyType, csr_type: KeyType) {
    let setup = Setup::new(ca_type);
    let server = setup.start();
    let client = server.client(&setup.ca.cert_pem());
    let spec = CsrSpec::worker(csr_type);
    let (csr, key) = spec.build();
    let resp = call(&client, &csr).unwrap_or_else(|s| panic!("{s:?}\n{}", server.log()));
    assert_eq!(
        resp.ca,
        setup.ca.cert_pem(),
        "bundle is the issuing CA alone"
    );
    let bundle = X509::stack_from_pem(&resp.ca).unwrap();
    assert_issued(&setup.ca, ca_type, &spec, &key, &resp.crt, &bundle, 86_400);
    server.wait_log("code=OK cn=\"worker-1.example\"");
}

#[test]
fn ed25519_ca_signs_ed25519_worker() {
    sign_and_check(KeyType::Ed25519, KeyType::Ed25519);
}

#[test]
fn ecdsa_p256_ca_signs_p256_worker() {
    sign_and_check(KeyType::EcP256, KeyType::EcP256);
}

#[test]
fn ecdsa_p384_ca_signs_p384_worker() {
    sign_and_check(KeyType::EcP384, KeyType::EcP384);
}

#[test]
fn rsa_ca_signs_rsa_worker() {
    sign_and_check(KeyType::Rsa(2048), KeyType::Rsa(2048));
}

#[test]
fn any_supported_csr_key_type_under_any_ca_type() {
    // Upstream trustd fails when CSR and CA key types differ; we sign all.
    let setup = Setup::new(KeyType::Ed25519);
    let server = setup.start();
    let client = server.client(&setup.ca.cert_pem());
    for csr_type in [
        KeyType::EcP256,
        KeyType::EcP384,
        KeyType::Rsa(2048),
        KeyType::Rsa(3072),
    ] {
        let spec = CsrSpec::worker(csr_type);
        let (csr, key) = spec.build();
        let resp =
            call(&client, &csr).unwrap_or_else(|s| panic!("{csr_type}: {s:?}\n{}", server.log()));
        let bundle = X509::stack_from_pem(&resp.ca).unwrap();
        assert_issued(
            &setup.ca,
            KeyType::Ed25519,
            &spec,
            &key,
            &resp.crt,
            &bundle,
            86_400,
        );
    }
    let rsa = Setup::new(KeyType::Rsa(2048));
    let server = rsa.start();
    let client = server.client(&rsa.ca.cert_pem());
    let spec = CsrSpec::worker(KeyType::Ed25519);
    let (csr, key) = spec.build();
    let resp = call(&client, &csr).unwrap();
    let bundle = X509::stack_from_pem(&resp.ca).unwrap();
    assert_issued(
        &rsa.ca,
        KeyType::Rsa(2048),
        &spec,
        &key,
        &resp.crt,
        &bundle,
        86_400,
    );
}

#[test]
fn a_p521_ca_accepts_p521_workers_by_default() {
    // P-521 is not in the default CSR key list, but workers key like their CA,
    // so the CA's own type is always allowed.
    let setup = Setup::new(KeyType::EcP521);
    let server = setup.start();
    let client = server.client(&setup.ca.cert_pem());
    let spec = CsrSpec::worker(KeyType::EcP521);
    let (csr, key) = spec.build();
    let resp = call(&client, &csr).unwrap();
    assert_issued(
        &setup.ca,
        KeyType::EcP521,
        &spec,
        &key,
        &resp.crt,
        &bundle_of(&resp.ca),
        86_400,
    );
    let ed = Setup::new(KeyType::Ed25519);
    let server = ed.start();
    let (csr, _) = CsrSpec::worker(KeyType::EcP521).build();
    let err = call(&server.client(&ed.ca.cert_pem()), &csr).unwrap_err();
    assert_eq!(err.code(), grpcio::RpcStatusCode::INVALID_ARGUMENT);
    assert!(err.message().contains("ECDSA P-521"), "{}", err.message());
}

#[test]
fn talos_fixture_ca_with_its_own_key_label() {
    let crt = b64(&talos_fixture("secrets.yaml", &["certs", "os", "crt"]));
    let key = b64(&talos_fixture("secrets.yaml", &["certs", "os", "key"]));
    let token = talos_fixture("secrets.yaml", &["trustdinfo", "token"]);
    assert!(String::from_utf8_lossy(&key).contains("BEGIN ED25519 PRIVATE KEY"));
    let dir = TempDir::new("fixture");
    let args: Vec<String> = [
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--ca-cert",
        &dir.write("ca.crt", &crt).display().to_string(),
        "--ca-key",
        &dir.write("ca.key", &key).display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let server = Server::start(&args, &[("TALOS_TOKEN".into(), token.clone())]);
    let client = server.client(&crt);
    let spec = CsrSpec::worker(KeyType::Ed25519);
    let (csr, leaf_key) = spec.build();
    let resp = call_with(&client, &[token.as_bytes()], &csr).expect("fixture CA signs");
    let ca = Ca {
        cert: X509::from_pem(&crt).unwrap(),
        key: talos_csr_signer::pki::pem::parse_private_key(&key).unwrap(),
    };
    let bundle = X509::stack_from_pem(&resp.ca).unwrap();
    assert_issued(
        &ca,
        KeyType::Ed25519,
        &spec,
        &leaf_key,
        &resp.crt,
        &bundle,
        86_400,
    );
    server.wait_log("code=OK");
    assert!(!server.log().contains(&token[..6]), "token prefix in log");
}

#[test]
fn organization_stripped_and_unasked_extensions_dropped() {
    let setup = Setup::new(KeyType::Ed25519);
    let server = setup.start();
    let client = server.client(&setup.ca.cert_pem());
    let mut spec = CsrSpec::worker(KeyType::Ed25519);
    spec.subject = vec![
        (Nid::ORGANIZATIONNAME, "os:admin".into()),
        (Nid::COMMONNAME, "node-a".into()),
        (Nid::ORGANIZATIONNAME, "os:impersonator".into()),
        (Nid::ORGANIZATIONALUNITNAME, "ou-kept".into()),
    ];
    spec.ask_ca = true;
    spec.ask_client_auth = true;
    spec.ask_cert_sign = true;
    let (csr, key) = spec.build();
    let resp = call(&client, &csr).expect("signed despite O and extra extensions");
    let bundle = X509::stack_from_pem(&resp.ca).unwrap();
    let leaf = assert_issued(
        &setup.ca,
        KeyType::Ed25519,
        &spec,
        &key,
        &resp.crt,
        &bundle,
        86_400,
    );
    assert!(leaf
        .subject_name()
        .entries_by_nid(Nid::ORGANIZATIONNAME)
        .next()
        .is_none());
    // O removal is logged, and so is what was dropped: the basicConstraints,
    // keyUsage and EKU requests.
    server.wait_log("removed_o=2 dropped=3");
    // SAN types we never issue are refused, not dropped: the certificate
    // would certify less than was asked without saying so.
    for (uris, emails, what) in [
        (
            vec!["spiffe://cluster/node-a".to_string()],
            vec![],
            "URI SAN",
        ),
        (
            vec![],
            vec!["root@node-a".to_string()],
            "email (rfc822Name) SAN",
        ),
    ] {
        let mut spec = CsrSpec::worker(KeyType::Ed25519);
        spec.uris = uris;
        spec.emails = emails;
        let s = call(&client, &spec.build().0).unwrap_err();
        assert_eq!(s.code(), grpcio::RpcStatusCode::INVALID_ARGUMENT);
        assert!(
            s.message().contains(what) && s.message().contains("only DNS and IP SANs"),
            "{}",
            s.message()
        );
    }
}

#[test]
fn sans_copied_exactly_including_none() {
    let setup = Setup::new(KeyType::EcP256);
    let server = setup.start();
    let client = server.client(&setup.ca.cert_pem());
    let mut spec = CsrSpec::worker(KeyType::EcP256);
    spec.ips = (1..=40)
        .map(|i| format!("10.1.{i}.1"))
        .chain(["2001:db8::1".to_string()])
        .collect();
    spec.dns = vec!["a.example".into(), "b".into(), "x-y_z.internal".into()];
    let (csr, key) = spec.build();
    let resp = call(&client, &csr).unwrap();
    let bundle = X509::stack_from_pem(&resp.ca).unwrap();
    assert_issued(
        &setup.ca,
        KeyType::EcP256,
        &spec,
        &key,
        &resp.crt,
        &bundle,
        86_400,
    );

    // No SANs at all: a CN-only certificate, as upstream signs.
    spec.ips.clear();
    spec.dns.clear();
    let (csr, key) = spec.build();
    let resp = call(&client, &csr).unwrap();
    assert_issued(
        &setup.ca,
        KeyType::EcP256,
        &spec,
        &key,
        &resp.crt,
        &bundle,
        86_400,
    );
}

#[test]
fn empty_subject_gets_critical_san() {
    let setup = Setup::new(KeyType::Ed25519);
    let server = setup.start();
    let client = server.client(&setup.ca.cert_pem());
    let mut spec = CsrSpec::worker(KeyType::Ed25519);
    spec.subject = vec![(Nid::ORGANIZATIONNAME, "os:admin".into())];
    let (csr, _) = spec.build();
    let resp = call(&client, &csr).unwrap();
    let leaf = X509::from_pem(&resp.crt).unwrap();
    assert_eq!(leaf.subject_name().entries().count(), 0);
    assert!(
        extensions(&leaf).contains(&(Nid::SUBJECT_ALT_NAME, true)),
        "RFC 5280: SAN critical with empty subject"
    );
    let bundle = X509::stack_from_pem(&resp.ca).unwrap();
    verify_chain(&leaf, &bundle).unwrap();
}

#[test]
fn validity_flag_and_ca_lifetime_bound() {
    let setup = Setup::new(KeyType::Ed25519)
        .arg("--cert-validity")
        .arg("14h");
    let server = setup.start();
    let client = server.client(&setup.ca.cert_pem());
    let spec = CsrSpec::worker(KeyType::Ed25519);
    let (csr, key) = spec.build();
    let resp = call(&client, &csr).unwrap();
    let bundle = X509::stack_from_pem(&resp.ca).unwrap();
    assert_issued(
        &setup.ca,
        KeyType::Ed25519,
        &spec,
        &key,
        &resp.crt,
        &bundle,
        14 * 3600,
    );

    // A CA that ends in one hour caps a 24 h certificate at its own notAfter.
    let mut short = CaSpec::new(KeyType::EcP256);
    short.not_after = now_unix() + 3600;
    let setup = Setup::with_ca(short.build());
    let server = setup.start();
    let client = server.client(&setup.ca.cert_pem());
    let spec = CsrSpec::worker(KeyType::EcP256);
    let (csr, key) = spec.build();
    let resp = call(&client, &csr).unwrap();
    let leaf = assert_issued(
        &setup.ca,
        KeyType::EcP256,
        &spec,
        &key,
        &resp.crt,
        &bundle_of(&resp.ca),
        86_400,
    );
    assert_eq!(unix(leaf.not_after()), unix(setup.ca.cert.not_after()));
}

fn bundle_of(pem: &[u8]) -> Vec<X509> {
    X509::stack_from_pem(pem).unwrap()
}

#[test]
fn every_request_gets_a_fresh_certificate() {
    let setup = Setup::new(KeyType::Ed25519);
    let server = setup.start();
    let client = server.client(&setup.ca.cert_pem());
    let (csr, _) = CsrSpec::worker(KeyType::Ed25519).build();
    let a = X509::from_pem(&call(&client, &csr).unwrap().crt).unwrap();
    let b = X509::from_pem(&call(&client, &csr).unwrap().crt).unwrap();
    assert_ne!(
        a.serial_number().to_bn().unwrap(),
        b.serial_number().to_bn().unwrap()
    );
}

#[test]
fn accepted_cas_lead_the_bundle_and_issuer_is_last() {
    let old1 = Ca::new(KeyType::Ed25519);
    let old2 = Ca::new(KeyType::EcP384);
    let setup = Setup::new(KeyType::Ed25519);
    let a1 = setup.dir.write("old1.crt", &old1.cert_pem());
    // One file may hold several CAs, and the issuing CA listed again adds nothing.
    let mut two = old2.cert_pem();
    two.extend_from_slice(&setup.ca.cert_pem());
    let a2 = setup.dir.write("old2.crt", &two);
    let setup = setup
        .arg("--accepted-ca")
        .arg(&a1.display().to_string())
        .arg("--accepted-ca")
        .arg(&a2.display().to_string());
    let server = setup.start();
    let client = server.client(&setup.ca.cert_pem());
    let spec = CsrSpec::worker(KeyType::Ed25519);
    let (csr, key) = spec.build();
    let resp = call(&client, &csr).unwrap();
    let mut expected = old1.cert_pem();
    expected.extend_from_slice(&old2.cert_pem());
    expected.extend_from_slice(&setup.ca.cert_pem());
    assert_eq!(
        String::from_utf8(resp.ca.clone()).unwrap(),
        String::from_utf8(expected).unwrap()
    );
    assert!(resp.ca.ends_with(b"-----END CERTIFICATE-----\n"));
    assert_issued(
        &setup.ca,
        KeyType::Ed25519,
        &spec,
        &key,
        &resp.crt,
        &bundle_of(&resp.ca),
        86_400,
    );

    // The same through ACCEPTED_CA_PATHS.
    let mut env_setup = Setup::with_ca(Ca {
        cert: setup.ca.cert.clone(),
        key: setup.ca.key.clone(),
    });
    env_setup.env.push((
        "ACCEPTED_CA_PATHS".into(),
        format!("{}, {}", a1.display(), a2.display()),
    ));
    let server = env_setup.start();
    let client = server.client(&setup.ca.cert_pem());
    let resp = call(&client, &csr).unwrap();
    assert_eq!(bundle_of(&resp.ca).len(), 3);
    assert_eq!(
        bundle_of(&resp.ca)[2].to_der().unwrap(),
        setup.ca.cert.to_der().unwrap()
    );
}

#[test]
fn ca_key_in_every_pem_form() {
    // Talos writes `ED25519 PRIVATE KEY`; OpenSSL tools write PKCS#8, SEC1, PKCS#1.
    let ed = Ca::new(KeyType::Ed25519);
    let talos_label = String::from_utf8(ed.key_pem())
        .unwrap()
        .replace("PRIVATE KEY", "ED25519 PRIVATE KEY");
    let ec = Ca::new(KeyType::EcP256);
    let sec1 = ec.key.ec_key().unwrap().private_key_to_pem().unwrap();
    let rsa = Ca::new(KeyType::Rsa(2048));
    let pkcs1 = rsa.key.rsa().unwrap().private_key_to_pem().unwrap();
    for (ca, kt, key_pem, label) in [
        (
            ed,
            KeyType::Ed25519,
            talos_label.into_bytes(),
            "ED25519 PRIVATE KEY",
        ),
        (ec, KeyType::EcP256, sec1, "EC PRIVATE KEY"),
        (rsa, KeyType::Rsa(2048), pkcs1, "RSA PRIVATE KEY"),
    ] {
        assert!(String::from_utf8_lossy(&key_pem).contains(&format!("BEGIN {label}")));
        let setup = Setup::with_ca(ca);
        setup.dir.write("ca.key", &key_pem);
        let server = setup.start();
        let client = server.client(&setup.ca.cert_pem());
        let spec = CsrSpec::worker(KeyType::Ed25519);
        let (csr, key) = spec.build();
        let resp = call(&client, &csr).unwrap_or_else(|s| panic!("{label}: {s:?}"));
        assert_issued(
            &setup.ca,
            kt,
            &spec,
            &key,
            &resp.crt,
            &bundle_of(&resp.ca),
            86_400,
        );
    }
}
