//! The hostile-input matrix: every row sends something a client should not,
//! checks the precise outcome (gRPC status or what happens to the connection),
//! and then checks a good request on the same server still succeeds. Figures
//! (rows, outcomes) are printed with --nocapture.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use common::*;
use grpcio::{
    CallOption, ChannelBuilder, ChannelCredentialsBuilder, Marshaller, MetadataBuilder, Method,
    MethodType, RpcStatusCode,
};
use openssl::asn1::{Asn1Object, Asn1OctetString};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::stack::Stack;
use openssl::x509::{X509Extension, X509Name, X509Req};
use talos_csr_signer::pki::keys::KeyType;
use talos_csr_signer::proto::security::{CertificateRequest, CertificateResponse};

/// A row: its name, what it does (Ok(()) for a certificate, Err(outcome)),
/// and what is expected.
type Row = (&'static str, Box<dyn Fn() -> Result<(), String>>, Expect);

/// What a row expects.
enum Expect {
    Status(RpcStatusCode, &'static str),
    /// gRPC core lets it through as a normal call: one certificate, no harm.
    Issued,
    /// The connection is closed without an HTTP/2 or HTTP/1.1 answer.
    Dropped,
}

/// A CSR for `key` with a raw subjectAltName extension body (DER of GeneralNames).
fn csr_raw(
    key: &PKey<Private>,
    md: MessageDigest,
    cn: Option<&[u8]>,
    san_der: Option<Vec<u8>>,
) -> Vec<u8> {
    let mut b = X509Req::builder().unwrap();
    let mut name = X509Name::builder().unwrap();
    if let Some(cn) = cn {
        let name = name.build();
        // SAFETY: adds a UTF8String CN with these exact bytes (NUL, invalid
        // UTF-8): a non-MBSTRING type makes OpenSSL copy them unchecked.
        let rc = unsafe {
            use foreign_types::ForeignTypeRef;
            openssl_sys::X509_NAME_add_entry_by_NID(
                name.as_ref().as_ptr(),
                openssl_sys::NID_commonName,
                openssl_sys::V_ASN1_UTF8STRING,
                cn.as_ptr() as *mut _,
                cn.len() as i32,
                -1,
                0,
            )
        };
        assert_eq!(rc, 1);
        b.set_subject_name(&name).unwrap();
    } else {
        name.append_entry_by_nid(Nid::COMMONNAME, "w").unwrap();
        b.set_subject_name(&name.build()).unwrap();
    }
    b.set_pubkey(key).unwrap();
    if let Some(der) = san_der {
        let mut seq = vec![0x30];
        push_len(&mut seq, der.len());
        seq.extend(der);
        let ext = X509Extension::new_from_der(
            &Asn1Object::from_str("2.5.29.17").unwrap(),
            false,
            &Asn1OctetString::new_from_bytes(&seq).unwrap(),
        )
        .unwrap();
        let mut exts = Stack::new().unwrap();
        exts.push(ext).unwrap();
        b.add_extensions(&exts).unwrap();
    }
    b.sign(key, md).unwrap();
    b.build().to_pem().unwrap()
}

/// A CSR whose CN holds invalid UTF-8 in a UTF8String. OpenSSL refuses to
/// build one, so the DER is patched and the request info signed again.
/// A P-256 CSR whose public point was moved off the curve (one byte of X
/// changed after signing).
fn ec_point_off_curve() -> Vec<u8> {
    let key = KeyType::EcP256.generate().unwrap();
    let csr = talos_csr_signer::pki::csr::build(&key, KeyType::EcP256, "w", &[]).unwrap();
    let mut der = X509Req::from_pem(&csr).unwrap().to_der().unwrap();
    let ec = key.ec_key().unwrap();
    let mut ctx = openssl::bn::BigNumContext::new().unwrap();
    let point = ec
        .public_key()
        .to_bytes(
            ec.group(),
            openssl::ec::PointConversionForm::UNCOMPRESSED,
            &mut ctx,
        )
        .unwrap();
    let at = der.windows(point.len()).position(|w| w == point).unwrap();
    der[at + 10] ^= 1;
    pem(&der, "CERTIFICATE REQUEST")
}

fn invalid_utf8_cn(key: &PKey<Private>) -> Vec<u8> {
    let clean = csr_raw(key, MessageDigest::null(), Some(b"nodeXY"), None);
    let mut der = X509Req::from_pem(&clean).unwrap().to_der().unwrap();
    let at = der.windows(6).position(|w| w == b"nodeXY").unwrap();
    der[at + 4] = 0xff;
    der[at + 5] = 0xfe;
    // CertificationRequest ::= SEQUENCE { info, algorithm, signature BIT STRING }
    let (info_start, info_end) = {
        let (outer_hdr, _) = der_element(&der, 0);
        let (info_hdr, info_len) = der_element(&der, outer_hdr);
        (outer_hdr, outer_hdr + info_hdr + info_len)
    };
    let sig = openssl::sign::Signer::new_without_digest(key)
        .unwrap()
        .sign_oneshot_to_vec(&der[info_start..info_end])
        .unwrap();
    let n = der.len();
    der[n - 64..].copy_from_slice(&sig);
    pem(&der, "CERTIFICATE REQUEST")
}

fn push_len(out: &mut Vec<u8>, len: usize) {
    if len < 128 {
        out.push(len as u8);
    } else {
        let bytes = (len as u32).to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (4 - skip) as u8);
        out.extend(&bytes[skip..]);
    }
}

fn general_name(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    push_len(&mut out, value.len());
    out.extend(value);
    out
}

/// A DER element.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    push_len(&mut out, content.len());
    out.extend(content);
    out
}

/// SubjectPublicKeyInfo from its parts: the algorithm OID's content octets,
/// raw parameter elements, the unused-bits octet and the key octets.
fn spki(oid: &[u8], params: &[u8], unused: u8, key: &[u8]) -> Vec<u8> {
    let algorithm = tlv(0x30, &[tlv(0x06, oid), params.to_vec()].concat());
    tlv(
        0x30,
        &[algorithm, tlv(0x03, &[&[unused][..], key].concat())].concat(),
    )
}

/// A CSR around `spki` (CN=w, no attributes) with a signature of zeros: the
/// key is checked before any signature is, so a malformed key is refused for
/// what it is.
fn csr_with_spki(spki: Vec<u8>) -> Vec<u8> {
    let cn = tlv(
        0x30,
        &tlv(
            0x31,
            &tlv(0x30, &[tlv(0x06, &[0x55, 4, 3]), tlv(0x0c, b"w")].concat()),
        ),
    );
    let info = tlv(
        0x30,
        &[vec![0x02, 0x01, 0x00], cn, spki, vec![0xa0, 0x00]].concat(),
    );
    let alg = tlv(0x30, &tlv(0x06, &[0x2b, 0x65, 0x70]));
    let sig = tlv(0x03, &[0u8; 65]);
    pem(
        &tlv(0x30, &[info, alg, sig].concat()),
        "CERTIFICATE REQUEST",
    )
}

const ED25519: &[u8] = &[0x2b, 0x65, 0x70];
const EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];

/// A signed P-256 CSR whose key is encoded with explicit curve parameters,
/// as `openssl ecparam -name prime256v1 -param_enc explicit -genkey` makes it.
fn explicit_curve_csr() -> Vec<u8> {
    let mut group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    group.set_asn1_flag(openssl::ec::Asn1Flag::EXPLICIT_CURVE);
    let ec = EcKey::generate(&group).unwrap();
    let key = PKey::from_ec_key(ec).unwrap();
    let csr = csr_raw(
        &key,
        MessageDigest::sha256(),
        None,
        Some(general_name(0x82, b"w")),
    );
    let der = X509Req::from_pem(&csr).unwrap().to_der().unwrap();
    // The curve's prime, only present when the parameters are explicit.
    let prime = [
        0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
    ];
    assert!(
        der.windows(12).any(|w| w == prime),
        "the key has explicit parameters"
    );
    csr
}

fn with_key(key: PKey<Private>, md: MessageDigest) -> Vec<u8> {
    csr_raw(&key, md, None, Some(general_name(0x87, &[10, 0, 0, 1])))
}

fn many_sans(n: usize) -> Vec<u8> {
    let mut spec = CsrSpec::worker(KeyType::Ed25519);
    spec.ips.clear();
    spec.dns = (0..n).map(|i| format!("n{i}")).collect();
    spec.build().0
}

fn huge_subject() -> Vec<u8> {
    let mut spec = CsrSpec::worker(KeyType::Ed25519);
    spec.subject = (0..700)
        .map(|i| {
            (
                Nid::ORGANIZATIONALUNITNAME,
                format!("unit-{i:05}-xxxxxxxxxx"),
            )
        })
        .collect();
    spec.build().0
}

/// One Certificate call on a fresh channel with raw metadata entries.
fn call_raw(
    addr: &str,
    trust: &[u8],
    md: &[(&str, &str)],
    csr: &[u8],
) -> Result<CertificateResponse, grpcio::RpcStatus> {
    let c = client(addr, trust);
    let mut b = MetadataBuilder::new();
    for (k, v) in md {
        b.add_str(k, v).unwrap();
    }
    let opt = CallOption::default()
        .headers(b.build())
        .timeout(Duration::from_secs(10));
    let req = CertificateRequest {
        csr: csr.to_vec(),
        ..Default::default()
    };
    c.certificate_opt(&req, opt).map_err(|e| match e {
        grpcio::Error::RpcFailure(s) => s,
        other => grpcio::RpcStatus::with_message(RpcStatusCode::UNKNOWN, other.to_string()),
    })
}

fn generic_client(addr: &str, trust: &[u8]) -> grpcio::Client {
    let creds = ChannelCredentialsBuilder::new()
        .root_cert(trust.to_vec())
        .build();
    grpcio::Client::new(
        ChannelBuilder::new(env())
            .set_credentials(creds)
            .connect(addr),
    )
}

fn method(name: &'static str, ty: MethodType) -> Method<CertificateRequest, CertificateResponse> {
    Method {
        ty,
        name,
        req_mar: Marshaller {
            ser: grpcio::pb_ser,
            de: grpcio::pb_de,
        },
        resp_mar: Marshaller {
            ser: grpcio::pb_ser,
            de: grpcio::pb_de,
        },
    }
}

fn token_opt() -> CallOption {
    let mut b = MetadataBuilder::new();
    b.add_str("token", TOKEN).unwrap();
    CallOption::default()
        .headers(b.build())
        .timeout(Duration::from_secs(10))
}

/// Reads until EOF or the timeout; returns what came back.
fn drain(stream: &mut impl Read) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend(&buf[..n]);
    }
    out
}

fn tls(
    addr: &str,
    trust: &openssl::x509::X509,
    alpn: Option<&[u8]>,
) -> openssl::ssl::SslStream<TcpStream> {
    let mut b = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls_client()).unwrap();
    b.cert_store_mut().add_cert(trust.clone()).unwrap();
    if let Some(p) = alpn {
        b.set_alpn_protos(p).unwrap();
    }
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    b.build().connect("127.0.0.1", tcp).unwrap()
}

fn h2_case(
    addr: &std::net::SocketAddr,
    ca: &std::path::Path,
    case: &str,
    token: &str,
    csr: &[u8],
    dir: &TempDir,
) -> String {
    let csr_file = dir.write("h2.csr", csr);
    let out = Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/hostile_h2.py"))
        .args([
            &addr.ip().to_string(),
            &addr.port().to_string(),
            &ca.display().to_string(),
            case,
            token,
            &csr_file.display().to_string(),
        ])
        .output()
        .expect("python3 (with the h2 package, which scripts/test.sh installs)");
    assert!(
        out.status.success(),
        "hostile_h2.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn hostile_input_matrix() {
    let setup = Setup::new(KeyType::Ed25519);
    let server = setup.start();
    let addr = server.addr.to_string();
    let trust = setup.ca.cert_pem();
    let ca_file = setup.dir.path("ca.crt");
    let good = CsrSpec::worker(KeyType::Ed25519).build().0;
    let der = X509Req::from_pem(&good).unwrap().to_der().unwrap();
    let text = String::from_utf8(good.clone()).unwrap();
    let ed = PKey::generate_ed25519().unwrap();

    let mut rows: Vec<Row> = Vec::new();
    let mut csr_row = |name: &'static str, csr: Vec<u8>, expect: Expect| {
        let (a, t) = (addr.clone(), trust.clone());
        rows.push((
            name,
            Box::new(move || outcome(call_raw(&a, &t, &[("token", TOKEN)], &csr))),
            expect,
        ));
    };
    use Expect::*;
    use RpcStatusCode as C;
    csr_row(
        "empty csr",
        vec![],
        Status(C::INVALID_ARGUMENT, "csr is empty"),
    );
    csr_row(
        "random bytes",
        (0..2048).map(|i| (i * 7919 % 251) as u8).collect(),
        Status(C::INVALID_ARGUMENT, "not PEM"),
    );
    csr_row(
        "wrong PEM label",
        pem(&der, "CERTIFICATE"),
        Status(C::INVALID_ARGUMENT, "\"CERTIFICATE\" PEM block"),
    );
    csr_row(
        "two PEM blocks",
        [good.clone(), good.clone()].concat(),
        Status(C::INVALID_ARGUMENT, "2 PEM blocks"),
    );
    csr_row(
        "DER instead of PEM",
        der.clone(),
        Status(C::INVALID_ARGUMENT, "not PEM"),
    );
    csr_row(
        "trailing garbage",
        [good.clone(), b"trailing".to_vec()].concat(),
        Status(C::INVALID_ARGUMENT, "data after its PEM block"),
    );
    csr_row(
        "leading garbage",
        [b"hello\n".to_vec(), good.clone()].concat(),
        Status(C::INVALID_ARGUMENT, "data before its PEM block"),
    );
    csr_row(
        "truncated PEM",
        good[..good.len() / 2].to_vec(),
        Status(C::INVALID_ARGUMENT, "no END line"),
    );
    let (head, body) = text.split_once('\n').unwrap();
    csr_row(
        "corrupted base64",
        format!("{head}\n{}", body.replacen('A', "!", 3)).into_bytes(),
        Status(C::INVALID_ARGUMENT, "csr PEM does not decode"),
    );
    csr_row(
        "bad signature",
        {
            let mut d = der.clone();
            let n = d.len();
            d[n - 1] ^= 1;
            pem(&d, "CERTIFICATE REQUEST")
        },
        Status(C::INVALID_ARGUMENT, "signature does not verify"),
    );
    csr_row(
        "PEM with encryption headers (no pass phrase is asked for)",
        format!(
            "{head}\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00112233445566778899AABBCCDDEEFF\n\n{body}"
        )
        .into_bytes(),
        Status(C::INVALID_ARGUMENT, "csr PEM does not decode"),
    );
    csr_row(
        "ECDSA key off its curve",
        ec_point_off_curve(),
        Status(C::INVALID_ARGUMENT, "not a point on the curve"),
    );
    csr_row(
        "10 000 SANs",
        many_sans(10_000),
        Status(C::RESOURCE_EXHAUSTED, ""),
    );
    csr_row(
        "500 SANs",
        many_sans(500),
        Status(C::INVALID_ARGUMENT, "CSR has 500 SANs; the limit is 64"),
    );
    csr_row(
        "huge subject",
        huge_subject(),
        Status(C::INVALID_ARGUMENT, "the limit is 16384"),
    );
    csr_row(
        "NUL in the CN",
        csr_raw(&ed, MessageDigest::null(), Some(b"node\0evil"), None),
        Status(C::INVALID_ARGUMENT, "control characters"),
    );
    csr_row(
        "invalid UTF-8 in the CN",
        invalid_utf8_cn(&ed),
        Status(C::INVALID_ARGUMENT, "csr PEM does not decode"),
    );
    csr_row(
        "invalid UTF-8 in a DNS SAN",
        csr_raw(
            &ed,
            MessageDigest::null(),
            None,
            Some(general_name(0x82, b"n\xffde")),
        ),
        Status(C::INVALID_ARGUMENT, "is not a host name"),
    );
    csr_row(
        "NUL in a DNS SAN",
        csr_raw(
            &ed,
            MessageDigest::null(),
            None,
            Some(general_name(0x82, b"good.example\0.evil")),
        ),
        Status(C::INVALID_ARGUMENT, "is not a host name"),
    );
    csr_row(
        "IP SAN of 5 bytes",
        csr_raw(
            &ed,
            MessageDigest::null(),
            None,
            Some(general_name(0x87, &[10, 0, 0, 1, 9])),
        ),
        Status(C::INVALID_ARGUMENT, "IP SAN has 5 bytes"),
    );
    csr_row(
        "empty SAN list",
        csr_raw(&ed, MessageDigest::null(), None, Some(vec![])),
        Status(C::INVALID_ARGUMENT, "subjectAltName is empty"),
    );
    csr_row(
        "DSA key",
        with_key(
            PKey::from_dsa(openssl::dsa::Dsa::generate(2048).unwrap()).unwrap(),
            MessageDigest::sha256(),
        ),
        Status(C::INVALID_ARGUMENT, "CSR key is DSA"),
    );
    csr_row(
        "Ed448 key",
        with_key(PKey::generate_ed448().unwrap(), MessageDigest::null()),
        Status(C::INVALID_ARGUMENT, "CSR key is Ed448"),
    );
    csr_row(
        "brainpool key",
        with_key(
            PKey::from_ec_key(
                EcKey::generate(&EcGroup::from_curve_name(Nid::BRAINPOOL_P256R1).unwrap()).unwrap(),
            )
            .unwrap(),
            MessageDigest::sha256(),
        ),
        Status(C::INVALID_ARGUMENT, "CSR key is ECDSA brainpoolP256r1"),
    );
    csr_row(
        "RSA-1024 key",
        with_key(
            PKey::from_rsa(openssl::rsa::Rsa::generate(1024).unwrap()).unwrap(),
            MessageDigest::sha256(),
        ),
        Status(C::INVALID_ARGUMENT, "RSA-1024"),
    );
    // Keys: empty and short keys of every algorithm, unused-bits tricks,
    // compressed and explicit-curve EC keys. Checked before the signature.
    let ed_raw = ed.raw_public_key().unwrap();
    let p256 = KeyType::EcP256.generate().unwrap();
    let p256_point = {
        let ec = p256.ec_key().unwrap();
        let mut ctx = openssl::bn::BigNumContext::new().unwrap();
        let form = openssl::ec::PointConversionForm::UNCOMPRESSED;
        ec.public_key()
            .to_bytes(ec.group(), form, &mut ctx)
            .unwrap()
    };
    let compressed = {
        let ec = p256.ec_key().unwrap();
        let mut ctx = openssl::bn::BigNumContext::new().unwrap();
        let form = openssl::ec::PointConversionForm::COMPRESSED;
        ec.public_key()
            .to_bytes(ec.group(), form, &mut ctx)
            .unwrap()
    };
    for (name, spki, text) in [
        (
            "empty Ed25519 key",
            spki(ED25519, &[], 0, &[]),
            "Ed25519 key is 0 bytes",
        ),
        (
            "Ed25519 key of 31 bytes",
            spki(ED25519, &[], 0, &ed_raw[..31]),
            "Ed25519 key is 31 bytes",
        ),
        (
            "Ed25519 key with 3 unused bits",
            spki(ED25519, &[], 3, &ed_raw),
            "3 unused bits",
        ),
        (
            "empty P-256 key",
            spki(EC, P256, 0, &[]),
            "not an uncompressed point",
        ),
        (
            "P-256 key of 64 bytes",
            spki(EC, P256, 0, &p256_point[..64]),
            "not an uncompressed point",
        ),
        (
            "compressed P-256 key",
            spki(EC, P256, 0, &compressed),
            "not an uncompressed point",
        ),
        (
            "P-256 point at infinity",
            spki(EC, P256, 0, &[0]),
            "not an uncompressed point",
        ),
        (
            "EC key naming no curve",
            spki(EC, &[], 0, &p256_point),
            "names no curve",
        ),
        (
            "empty RSA key",
            spki(RSA, &[0x05, 0x00], 0, &[]),
            "not an RSAPublicKey",
        ),
        (
            "RSA key of one byte",
            spki(RSA, &[0x05, 0x00], 0, &[0x30]),
            "not an RSAPublicKey",
        ),
        (
            "RSA key without NULL parameters",
            spki(RSA, &[], 0, &[0x30, 0x00]),
            "not NULL",
        ),
        // A BIT STRING without even its unused-bits octet is not DER:
        // OpenSSL's decoder refuses the request itself.
        (
            "BIT STRING without its unused-bits octet",
            {
                let algorithm = tlv(0x30, &tlv(0x06, ED25519));
                tlv(0x30, &[algorithm, vec![0x03, 0x00]].concat())
            },
            "csr PEM does not decode",
        ),
    ] {
        csr_row(
            Box::leak(name.to_string().into_boxed_str()),
            csr_with_spki(spki),
            Status(C::INVALID_ARGUMENT, text),
        );
    }
    csr_row(
        "explicit EC curve parameters",
        explicit_curve_csr(),
        Status(C::INVALID_ARGUMENT, "ECDSA with explicit curve parameters"),
    );
    // Every GeneralName type that is not a DNS or IP SAN is refused, not
    // dropped; every wildcard is refused.
    let directory_name = tlv(
        0x30,
        &tlv(
            0x31,
            &tlv(0x30, &[tlv(0x06, &[0x55, 4, 3]), tlv(0x0c, b"xx")].concat()),
        ),
    );
    for (name, gn, text) in [
        (
            "otherName SAN",
            tlv(
                0xa0,
                &[tlv(0x06, &[0x2a, 3, 4]), tlv(0xa0, &tlv(0x0c, b"a"))].concat(),
            ),
            "otherName SAN",
        ),
        (
            "email SAN",
            tlv(0x81, b"a@b.example"),
            "email (rfc822Name) SAN \"a@b.example\"",
        ),
        ("x400Address SAN", tlv(0xa3, &[]), "x400Address SAN"),
        (
            "directoryName SAN",
            tlv(0xa4, &directory_name),
            "directoryName SAN",
        ),
        (
            "ediPartyName SAN",
            tlv(0xa5, &tlv(0xa1, &tlv(0x0c, b"xx"))),
            "ediPartyName SAN",
        ),
        (
            "URI SAN",
            tlv(0x86, b"spiffe://cluster/node"),
            "URI SAN \"spiffe://cluster/node\"",
        ),
        (
            "registeredID SAN",
            tlv(0x88, &[0x2a, 3, 4]),
            "registeredID SAN",
        ),
        ("wildcard DNS SAN *", tlv(0x82, b"*"), "is a wildcard"),
        (
            "wildcard DNS SAN *.nodes.example",
            tlv(0x82, b"*.nodes.example"),
            "is a wildcard",
        ),
        (
            "wildcard in an inner label",
            tlv(0x82, b"a.*.example"),
            "is a wildcard",
        ),
        (
            "DNS SAN spelled as an IP",
            tlv(0x82, b"10.0.0.1"),
            "looks like an IP address",
        ),
        (
            "DNS SAN with an empty label",
            tlv(0x82, b"a..example"),
            "empty label",
        ),
        ("unspecified IP SAN", tlv(0x87, &[0, 0, 0, 0]), "not a host"),
    ] {
        csr_row(
            Box::leak(name.to_string().into_boxed_str()),
            csr_raw(&ed, MessageDigest::null(), None, Some(gn)),
            Status(C::INVALID_ARGUMENT, text),
        );
    }
    csr_row(
        "wildcard CN",
        csr_raw(&ed, MessageDigest::null(), Some(b"*.nodes.example"), None),
        Status(C::INVALID_ARGUMENT, "CN \"*.nodes.example\" is a wildcard"),
    );
    csr_row(
        "message over the 64 KiB cap",
        vec![b'A'; 100 * 1024],
        Status(C::RESOURCE_EXHAUSTED, ""),
    );

    let meta_row = |rows: &mut Vec<Row>,
                    name: &'static str,
                    md: Vec<(&'static str, String)>,
                    expect: Expect| {
        let (a, t, g) = (addr.clone(), trust.clone(), good.clone());
        rows.push((
            name,
            Box::new(move || {
                let md: Vec<(&str, &str)> = md.iter().map(|(k, v)| (*k, v.as_str())).collect();
                outcome(call_raw(&a, &t, &md, &g))
            }),
            expect,
        ));
    };
    meta_row(
        &mut rows,
        "token missing",
        vec![],
        Status(C::UNAUTHENTICATED, "missing token"),
    );
    meta_row(
        &mut rows,
        "token duplicated",
        vec![("token", TOKEN.into()), ("token", TOKEN.into())],
        Status(C::UNAUTHENTICATED, "more than one token"),
    );
    meta_row(
        &mut rows,
        "token empty",
        vec![("token", String::new())],
        Status(C::UNAUTHENTICATED, "invalid token"),
    );
    meta_row(
        &mut rows,
        "token of 10 KB",
        vec![("token", "x".repeat(10 * 1024))],
        Status(C::RESOURCE_EXHAUSTED, "metadata size exceeds"),
    );
    meta_row(
        &mut rows,
        "token of 4 KB",
        vec![("token", "x".repeat(4 * 1024))],
        Status(C::UNAUTHENTICATED, "invalid token"),
    );
    meta_row(
        &mut rows,
        "token with a valid prefix",
        vec![("token", format!("{TOKEN}{}", "0".repeat(100)))],
        Status(C::UNAUTHENTICATED, "invalid token"),
    );

    {
        let (a, t, g) = (addr.clone(), trust.clone(), good.clone());
        rows.push((
            "unknown method",
            Box::new(move || {
                let req = CertificateRequest {
                    csr: g.clone(),
                    ..Default::default()
                };
                outcome(
                    generic_client(&a, &t)
                        .unary_call(
                            &method("/securityapi.SecurityService/Nope", MethodType::Unary),
                            &req,
                            token_opt(),
                        )
                        .map_err(status),
                )
            }),
            Status(C::UNIMPLEMENTED, ""),
        ));
    }
    {
        let (a, t, g) = (addr.clone(), trust.clone(), good.clone());
        rows.push((
            "streaming call on the unary method",
            Box::new(move || {
                use futures_util::SinkExt;
                let req = CertificateRequest {
                    csr: g.clone(),
                    ..Default::default()
                };
                let c = generic_client(&a, &t);
                let (mut tx, rx) = c
                    .client_streaming(
                        &method(
                            "/securityapi.SecurityService/Certificate",
                            MethodType::ClientStreaming,
                        ),
                        token_opt(),
                    )
                    .unwrap();
                let sent = futures_executor::block_on(async {
                    for _ in 0..2 {
                        tx.send((req.clone(), grpcio::WriteFlags::default()))
                            .await?;
                    }
                    tx.close().await
                });
                let _ = sent;
                outcome(futures_executor::block_on(rx).map_err(status))
            }),
            Issued,
        ));
    }
    // Outcomes as an independent HTTP/2 client sees them: the stream reset
    // (no answer at all), or the gRPC status.
    for (case, tok, expect) in [
        ("content-type", TOKEN.to_string(), "reset="),
        ("compressed", TOKEN.to_string(), "grpc-status=0"),
        ("non-ascii-token", String::new(), "grpc-status=16"),
    ] {
        let (srv, ca, g, dir) = (
            server.addr,
            ca_file.clone(),
            good.clone(),
            TempDir::new("h2"),
        );
        rows.push((
            Box::leak(format!("raw HTTP/2: {case}").into_boxed_str()),
            Box::new(move || {
                let got = h2_case(&srv, &ca, case, &tok, &g, &dir);
                if got.contains(expect) {
                    Ok(())
                } else {
                    Err(got)
                }
            }),
            Dropped,
        ));
    }
    {
        let (a, ca) = (addr.clone(), setup.ca.cert.clone());
        rows.push((
            "HTTP/1.1 over TLS (ALPN http/1.1)",
            Box::new(move || {
                let mut s = tls(&a, &ca, Some(b"\x08http/1.1"));
                let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
                refused(drain(&mut s))
            }),
            Dropped,
        ));
    }
    {
        let a = addr.clone();
        rows.push((
            "plaintext HTTP/1.1 to the TLS port",
            Box::new(move || {
                let mut s = TcpStream::connect(&a).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
                s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
                refused(drain(&mut s))
            }),
            Dropped,
        ));
    }
    {
        let (a, ca) = (addr.clone(), setup.ca.cert.clone());
        rows.push((
            "TLS without ALPN",
            Box::new(move || {
                let mut s = tls(&a, &ca, None);
                let _ = s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0");
                refused(drain(&mut s))
            }),
            Dropped,
        ));
    }
    {
        let a = addr.clone();
        rows.push((
            "slow client sends one byte and stops",
            Box::new(move || {
                let mut s = TcpStream::connect(&a).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
                s.write_all(&[0x16]).unwrap();
                refused(drain(&mut s))
            }),
            Dropped,
        ));
    }

    assert!(rows.len() >= 60, "{} rows", rows.len());
    let good_client = server.client(&trust);
    let mut failures = Vec::new();
    for (name, run, expect) in &rows {
        let result = run();
        let verdict = match (expect, &result) {
            (Status(code, text), Err(got)) => {
                let ok = got.starts_with(&format!("{code:?} ")) && got.contains(text);
                if ok {
                    Ok(())
                } else {
                    Err(format!("expected {code:?} {text:?}, got {got}"))
                }
            }
            (Status(..), Ok(())) => Err("got a certificate".to_string()),
            (Issued, Ok(())) => Ok(()),
            (Issued, Err(got)) => Err(format!("expected a certificate, got {got}")),
            (Dropped, r) => r.clone(),
        };
        println!(
            "row {name:<40} {}",
            match &verdict {
                Ok(()) => "as expected".to_string(),
                Err(e) => format!("WRONG: {e}"),
            }
        );
        if let Err(e) = verdict {
            failures.push(format!("{name}: {e}"));
        }
        // Whatever happened, the next caller is served.
        call(&good_client, &good)
            .unwrap_or_else(|s| panic!("good call after {name} failed: {s:?}"));
    }
    println!(
        "hostile matrix: {} rows, {} as expected",
        rows.len(),
        rows.len() - failures.len()
    );
    assert!(failures.is_empty(), "{failures:#?}");
    // Every refusal decided by the signer left an audit record with its code
    // and its reason (transport refusals never reach it).
    server.wait_log("code=OK");
    let records = audit_records(&server);
    let mut audited = 0;
    for (name, _, expect) in &rows {
        let Status(code, text) = expect else { continue };
        let decided = [
            C::INVALID_ARGUMENT,
            C::PERMISSION_DENIED,
            C::UNAUTHENTICATED,
        ];
        if !decided.contains(code) {
            continue;
        }
        // RpcStatusCode's Debug is "3-INVALID_ARGUMENT".
        let code_name = format!("{code:?}");
        let code_name = code_name
            .split_once('-')
            .map_or(code_name.as_str(), |(_, n)| n);
        let found = records.iter().any(|r| {
            r["outcome"] == "refused"
                && r["code"] == code_name
                && r["reason"].as_str().is_some_and(|t| t.contains(text))
        });
        assert!(found, "no audit record for {name} ({code_name} {text:?})");
        audited += 1;
    }
    println!("hostile matrix: {audited} refusals, each with its audit record");
    assert!(!server.log().contains(TOKEN), "token in the log");
}

fn status(e: grpcio::Error) -> grpcio::RpcStatus {
    match e {
        grpcio::Error::RpcFailure(s) => s,
        other => grpcio::RpcStatus::with_message(RpcStatusCode::UNKNOWN, other.to_string()),
    }
}

/// `Ok(())` for a certificate, `Err("CODE message")` for a status.
fn outcome<T>(r: Result<T, grpcio::RpcStatus>) -> Result<(), String> {
    match r {
        Ok(_) => Ok(()),
        Err(s) => Err(format!("{:?} {}", s.code(), s.message())),
    }
}

/// A connection-level refusal: nothing that looks like an answer came back.
fn refused(reply: Vec<u8>) -> Result<(), String> {
    let text = String::from_utf8_lossy(&reply);
    if text.contains("HTTP/1.1") || text.contains("BEGIN CERTIFICATE") {
        Err(format!("got an answer: {text:?}"))
    } else {
        Ok(())
    }
}
