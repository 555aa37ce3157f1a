//! `request`: behave exactly like a Talos worker asking for its apid
//! certificate, then check everything that came back. Operators run it to
//! prove a deployment works before any worker depends on it.

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use std::process::ExitCode;

use grpcio::{CallOption, ChannelBuilder, ChannelCredentialsBuilder, EnvBuilder, MetadataBuilder};
use openssl::asn1::Asn1Time;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::{X509ExtendedKeyUsage, X509KeyUsage, X509};

use super::{env_var, out};
use crate::cli::args::RequestArgs;
use crate::cli::token::{self, TokenFlags};
use crate::pki::keys::KeyType;
use crate::pki::pem::parse_certificates;
use crate::pki::{self, openssl_reason, San};
use crate::proto::security::CertificateRequest;
use crate::proto::security_grpc::SecurityServiceClient;
use crate::server::config::parse_duration;
use crate::server::config::DEFAULT_PORT;
use crate::signer::auth::{TokenSet, TokenSource};

/// `request`: one call like a worker's, every check printed; exit 1 when a
/// check fails.
pub fn run(args: RequestArgs) -> Result<ExitCode, String> {
    let plan = Plan::from_args(args, &env_var)?;
    let answer = call(&plan)?;
    let mut ok = true;
    for check in verify(&plan, &answer) {
        match &check.result {
            Ok(detail) => out(format_args!("ok    {:<12} {detail}\n", check.what))?,
            Err(problem) => {
                ok = false;
                out(format_args!("FAIL  {:<12} {problem}\n", check.what))?;
            }
        }
    }
    if let Some(dir) = &plan.out {
        save(dir, &answer)?;
        out(format_args!(
            "saved key.pem, crt.pem and ca.pem in {}\n",
            dir.display()
        ))?;
    }
    if ok {
        out(format_args!("certificate for CN={} checks out\n", plan.cn))?;
        Ok(ExitCode::SUCCESS)
    } else {
        out(format_args!(
            "the signer's answer failed the checks above\n"
        ))?;
        Ok(ExitCode::FAILURE)
    }
}

/// The request, resolved from flags and environment.
pub struct Plan {
    pub target: String,
    pub trust_pem: Vec<u8>,
    pub token: String,
    pub key_type: KeyType,
    pub cn: String,
    pub sans: Vec<San>,
    pub out: Option<PathBuf>,
    pub timeout: Duration,
}

impl Plan {
    /// Reads the trusted CAs; the key type defaults to the last one's, as a
    /// worker makes its key the type of its last accepted CA.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        endpoint: &str,
        ca: &Path,
        token: String,
        key_type: Option<KeyType>,
        cn: Option<String>,
        sans: Vec<San>,
        out: Option<PathBuf>,
        timeout: Duration,
    ) -> Result<Plan, String> {
        let trust_pem =
            fs::read(ca).map_err(|e| format!("cannot read --ca {}: {e}", ca.display()))?;
        let trusted =
            parse_certificates(&trust_pem).map_err(|e| format!("--ca {} {e}", ca.display()))?;
        let ca_type = trusted
            .last()
            .and_then(|c| c.public_key().ok())
            .and_then(|k| KeyType::of(&k))
            .unwrap_or(KeyType::Ed25519);
        Ok(Plan {
            target: target(endpoint)?,
            trust_pem,
            token: token.trim().to_string(),
            key_type: key_type.unwrap_or(ca_type),
            cn: cn.unwrap_or_else(hostname),
            sans,
            out,
            timeout,
        })
    }
}

impl Plan {
    /// The request as a worker would make it; the token by the one rule
    /// (`cli::token`), which for a file means its one token.
    pub fn from_args(
        args: RequestArgs,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Plan, String> {
        let flags = TokenFlags {
            value: args.token.map(|v| ("--token", v)),
            file: args.token_file,
        };
        let token = match token::resolve(flags, env)? {
            Some(TokenSource::Value(v, _)) => v,
            Some(TokenSource::File(f)) => {
                let text = std::fs::read_to_string(&f)
                    .map_err(|e| format!("cannot read token file {}: {e}", f.display()))?;
                TokenSet::single_from_file_text(&text)
                    .map_err(|e| format!("token file {} {e}", f.display()))?
            }
            None => {
                return Err(
                    "no token: give --token or --token-file, or set TALOS_TOKEN or \
                     TALOS_TOKEN_FILE"
                        .to_string(),
                )
            }
        };
        let timeout = match args.timeout {
            Some(t) => parse_duration(&t).map_err(|e| format!("--timeout: {e}"))?,
            None => Duration::from_secs(10),
        };
        let mut sans: Vec<San> = args.ip.into_iter().map(San::Ip).collect();
        sans.extend(args.dns.into_iter().map(San::Dns));
        Plan::new(
            &args.endpoint,
            &args.ca,
            token,
            args.key_type,
            args.cn,
            sans,
            args.out,
            timeout,
        )
    }
}

fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "talos-worker".to_string())
}

/// `HOST[:PORT]` → gRPC target with the port filled in (50001, as workers do).
fn target(endpoint: &str) -> Result<String, String> {
    let e = endpoint.trim();
    if e.is_empty() {
        return Err("--endpoint is empty; give HOST[:PORT]".to_string());
    }
    if let Ok(ip) = e.parse::<IpAddr>() {
        return Ok(match ip {
            IpAddr::V6(v6) => format!("[{v6}]:{DEFAULT_PORT}"),
            IpAddr::V4(v4) => format!("{v4}:{DEFAULT_PORT}"),
        });
    }
    if e.starts_with('[')
        || e.rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        return Ok(e.to_string());
    }
    if e.contains(':') {
        return Err(format!("--endpoint {e:?} is not HOST[:PORT]"));
    }
    Ok(format!("{e}:{DEFAULT_PORT}"))
}

/// What the signer answered, already parsed.
pub struct Answer {
    pub key: PKey<Private>,
    pub crt_pem: Vec<u8>,
    pub ca_pem: Vec<u8>,
}

/// Makes the key and CSR, calls the signer once, returns its answer.
pub fn call(plan: &Plan) -> Result<Answer, String> {
    let key = plan.key_type.generate().map_err(|e| openssl_reason(&e))?;
    let csr = pki::csr::build(&key, plan.key_type, &plan.cn, &plan.sans)
        .map_err(|e| format!("cannot build the CSR: {e}"))?;

    let env = Arc::new(
        EnvBuilder::new()
            .cq_count(1)
            .name_prefix("client-cq")
            .build(),
    );
    let creds = ChannelCredentialsBuilder::new()
        .root_cert(plan.trust_pem.clone())
        .build();
    let channel = ChannelBuilder::new(env)
        .set_credentials(creds)
        .connect(&plan.target);
    let client = SecurityServiceClient::new(channel);
    let mut md = MetadataBuilder::new();
    md.add_str("token", &plan.token)
        .map_err(|_| "the token is not valid metadata (printable ASCII only)".to_string())?;
    let opt = CallOption::default()
        .headers(md.build())
        .timeout(plan.timeout);
    let req = CertificateRequest {
        csr,
        ..Default::default()
    };
    let resp = client.certificate_opt(&req, opt).map_err(|e| match e {
        grpcio::Error::RpcFailure(s) => format!(
            "the signer at {} answered {:?}: {}",
            plan.target,
            s.code(),
            s.message()
        ),
        other => format!("the call to {} failed: {other}", plan.target),
    })?;
    Ok(Answer {
        key,
        crt_pem: resp.crt,
        ca_pem: resp.ca,
    })
}

/// One line of the verification report.
pub struct Check {
    pub what: &'static str,
    pub result: Result<String, String>,
}

/// Checks the answer the way a worker's apid and talosctl will rely on it.
pub fn verify(plan: &Plan, answer: &Answer) -> Vec<Check> {
    let mut checks = Vec::new();
    let mut add = |what, result| checks.push(Check { what, result });
    let leaf = match parse_certificates(&answer.crt_pem) {
        Ok(mut certs) if certs.len() == 1 => certs.remove(0),
        Ok(certs) => {
            add(
                "certificate",
                Err(format!(
                    "crt holds {} certificates, expected 1",
                    certs.len()
                )),
            );
            return checks;
        }
        Err(e) => {
            add("certificate", Err(format!("crt {e}")));
            return checks;
        }
    };
    add("certificate", Ok(format!("serial {}", serial(&leaf))));
    add("key", check_key(&leaf, &answer.key, plan.key_type));
    add("chain", check_chain(&leaf, &answer.ca_pem));
    add("subject", check_subject(&leaf, &plan.cn));
    add("SANs", check_sans(&leaf, &plan.sans));
    add("usage", check_usage(&leaf));
    add("validity", check_validity(&leaf));
    checks
}

fn serial(cert: &X509) -> String {
    cert.serial_number()
        .to_bn()
        .and_then(|b| b.to_hex_str().map(|s| s.to_string()))
        .unwrap_or_else(|_| "?".to_string())
}

fn check_key(leaf: &X509, key: &PKey<Private>, kt: KeyType) -> Result<String, String> {
    match leaf.public_key() {
        Ok(pk) if pk.public_eq(key) => Ok(format!("{kt}, the key we generated")),
        _ => Err("the certificate does not carry the public key of our CSR".to_string()),
    }
}

fn check_chain(leaf: &X509, bundle_pem: &[u8]) -> Result<String, String> {
    let bundle = parse_certificates(bundle_pem).map_err(|e| format!("ca bundle {e}"))?;
    pki::verify_chain(leaf, &[], &bundle)
        .map_err(|e| format!("does not verify against the returned ca bundle: {e}"))?;
    Ok(format!(
        "verifies against the returned bundle ({} CA(s), issuer {})",
        bundle.len(),
        pki::name_to_string(leaf.issuer_name())
    ))
}

fn check_subject(leaf: &X509, cn: &str) -> Result<String, String> {
    let name = leaf.subject_name();
    if name.entries_by_nid(Nid::ORGANIZATIONNAME).next().is_some() {
        return Err(format!(
            "subject carries an Organization: {}",
            pki::name_to_string(name)
        ));
    }
    let got = name
        .entries_by_nid(Nid::COMMONNAME)
        .next()
        .map(|e| e.data().as_slice().to_vec());
    if got.as_deref() != Some(cn.as_bytes()) {
        return Err(format!(
            "subject is {}, expected CN={cn}",
            pki::name_to_string(name)
        ));
    }
    Ok(pki::name_to_string(name))
}

fn check_sans(leaf: &X509, asked: &[San]) -> Result<String, String> {
    let got = pki::cert_sans(leaf);
    let mut a: Vec<String> = asked.iter().map(ToString::to_string).collect();
    let mut g: Vec<String> = got.iter().map(ToString::to_string).collect();
    a.sort();
    g.sort();
    if a == g {
        Ok(if g.is_empty() {
            "none (none asked)".to_string()
        } else {
            g.join(", ")
        })
    } else {
        Err(format!("got [{}], asked [{}]", g.join(", "), a.join(", ")))
    }
}

fn check_usage(leaf: &X509) -> Result<String, String> {
    if pki::is_ca(leaf) {
        return Err("the certificate is a CA".to_string());
    }
    if leaf.extended_key_usage() != Some(X509ExtendedKeyUsage::SSL_SERVER) {
        return Err("extendedKeyUsage is not exactly serverAuth".to_string());
    }
    match leaf.key_usage() {
        Some(ku)
            if ku.contains(X509KeyUsage::DIGITAL_SIGNATURE)
                && !ku.intersects(X509KeyUsage::KEY_CERT_SIGN | X509KeyUsage::CRL_SIGN) =>
        {
            Ok("serverAuth only, digitalSignature, not a CA".to_string())
        }
        _ => Err("keyUsage is not digitalSignature without certSign".to_string()),
    }
}

fn check_validity(leaf: &X509) -> Result<String, String> {
    let now = Asn1Time::days_from_now(0).map_err(|e| openssl_reason(&e))?;
    if leaf.not_before() > now {
        return Err(format!("not valid before {}", leaf.not_before()));
    }
    if leaf.not_after() < now {
        return Err(format!("expired at {}", leaf.not_after()));
    }
    Ok(format!("{} → {}", leaf.not_before(), leaf.not_after()))
}

/// Saves key.pem (mode 0600), crt.pem and ca.pem in `dir`.
pub fn save(dir: &Path, answer: &Answer) -> Result<(), String> {
    fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let key_pem = answer
        .key
        .private_key_to_pem_pkcs8()
        .map_err(|e| openssl_reason(&e))?;
    for (name, data, mode) in [
        ("key.pem", key_pem.as_slice(), 0o600),
        ("crt.pem", answer.crt_pem.as_slice(), 0o644),
        ("ca.pem", answer.ca_pem.as_slice(), 0o644),
    ] {
        crate::write_new_file(&dir.join(name), data, mode)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::target;

    #[test]
    fn endpoints_get_port_50001() {
        assert_eq!(target("10.0.0.1").unwrap(), "10.0.0.1:50001");
        assert_eq!(target("10.0.0.1:6000").unwrap(), "10.0.0.1:6000");
        assert_eq!(target("cp.example").unwrap(), "cp.example:50001");
        assert_eq!(target("::1").unwrap(), "[::1]:50001");
        assert_eq!(target("[::1]:7").unwrap(), "[::1]:7");
        assert!(target("").is_err());
    }
}
