//! `import`: the machine CA, its key and the machine token out of a
//! `talosctl gen secrets` bundle or a control-plane machine config, written as
//! the files `serve` reads or as a Kubernetes Secret. Everything is checked
//! (CA-ness, key pair, expiry) before anything is written.

use std::path::Path;
use std::process::ExitCode;

use openssl::base64;
use yaml_rust2::{Yaml, YamlLoader};

use super::out;
use crate::cli::args::ImportArgs;
use crate::pki::ca::MachineCa;
use crate::pki::{openssl_reason, pem};
use crate::signer::auth::TokenSet;

/// `import --out DIR` or `import --secret`.
pub fn run(args: ImportArgs) -> Result<ExitCode, String> {
    let material = read(&args.from)?;
    match (&args.out, args.secret) {
        (Some(dir), false) => {
            write(&material, dir)?;
            eprintln!(
                "wrote ca.crt, ca.key (0600) and token (0600) in {}: {}",
                dir.display(),
                material.summary
            );
        }
        (None, true) => {
            let manifest = secret_manifest(&material, &args.name, &args.namespace);
            out(format_args!("{manifest}"))?;
            eprintln!(
                "printed Secret {}/{}: {}",
                args.namespace, args.name, material.summary
            );
        }
        _ => return Err("import needs exactly one of --out DIR or --secret".to_string()),
    }
    Ok(ExitCode::SUCCESS)
}

pub struct Material {
    pub ca_crt: Vec<u8>,
    /// PKCS#8 `PRIVATE KEY` PEM, whatever label the source used.
    pub ca_key: Vec<u8>,
    pub token: String,
    /// `cluster.id` / `cluster.secret` (both layouts carry them; a worker
    /// config needs them for discovery and KubeSpan).
    pub cluster_id: Option<String>,
    pub cluster_secret: Option<String>,
    pub summary: String,
}

/// Reads a secrets bundle or machine config (several YAML documents allowed).
pub fn read(path: &Path) -> Result<Material, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    from_text(&text, &path.display().to_string())
}

/// The same from text; `name` says where it came from in messages.
pub fn from_text(text: &str, name: &str) -> Result<Material, String> {
    let docs = YamlLoader::load_from_str(text).map_err(|e| format!("{name} is not YAML: {e}"))?;
    let (doc, (layout, crt, key, token)) = docs
        .iter()
        .find_map(|d| Some((d, locate(d)?)))
        .ok_or_else(|| {
            format!(
                "{name} is neither a `talosctl gen secrets` bundle (certs.os.*) nor a machine \
                 config (machine.ca.*); pass secrets.yaml or controlplane.yaml"
            )
        })?;
    let key = key.filter(|k| !k.trim().is_empty()).ok_or_else(|| {
        format!(
            "{name} is a worker machine config: it carries the machine CA certificate but not \
             its key; import the control-plane config (controlplane.yaml) or the secrets bundle \
             (secrets.yaml) instead"
        )
    })?;
    let field = |what: &str, b64: &str| {
        let compact: String = b64.split_whitespace().collect();
        base64::decode_block(&compact).map_err(|_| format!("{name}: {what} is not base64"))
    };
    let ca_crt = field("the CA certificate", crt)?;
    let key = pem::parse_private_key(&field("the CA key", key)?)
        .map_err(|e| format!("{name}: the CA key {e}"))?;
    let ca_key = key
        .private_key_to_pem_pkcs8()
        .map_err(|e| openssl_reason(&e))?;
    let ca = MachineCa::new(&ca_crt, &ca_key, &[], crate::unix_now())
        .map_err(|e| format!("{name}: {e}"))?;
    let token = token.unwrap_or("").trim().to_string();
    TokenSet::from_env_text(&token).map_err(|e| format!("{name}: the machine token {e}"))?;
    let cluster = |key: &str| doc["cluster"][key].as_str().map(str::to_string);
    Ok(Material {
        cluster_id: cluster("id"),
        cluster_secret: cluster("secret"),
        summary: format!(
            "machine CA \"{}\" ({}, notAfter {}) and the machine token from {name} ({layout})",
            ca.subject(),
            ca.key_type(),
            ca.cert().not_after(),
        ),
        ca_crt,
        ca_key,
        token,
    })
}

/// (layout, cert, key, token) from one YAML document, if it has either layout.
fn locate(doc: &Yaml) -> Option<(&'static str, &str, Option<&str>, Option<&str>)> {
    let os = &doc["certs"]["os"];
    if let Some(crt) = os["crt"].as_str() {
        return Some((
            "secrets bundle",
            crt,
            os["key"].as_str(),
            doc["trustdinfo"]["token"].as_str(),
        ));
    }
    let machine = &doc["machine"];
    let crt = machine["ca"]["crt"].as_str()?;
    Some((
        "machine config",
        crt,
        machine["ca"]["key"].as_str(),
        machine["token"].as_str(),
    ))
}

/// Writes ca.crt (0644), ca.key and token (0600) into `dir`.
pub fn write(m: &Material, dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    crate::write_new_file(&dir.join("ca.crt"), &m.ca_crt, 0o644)?;
    crate::write_new_file(&dir.join("ca.key"), &m.ca_key, 0o600)?;
    crate::write_new_file(
        &dir.join("token"),
        format!("{}\n", m.token).as_bytes(),
        0o600,
    )
}

/// A Kubernetes Secret holding ca.crt, ca.key and token, as YAML. The CA is
/// also under tls.crt/tls.key, the keys cert-manager's CA Issuer reads, so
/// the same Secret can sign the signer's serving certificate
/// (deploy/cert-manager) and works where the Go signer's current manifests
/// mount it.
pub fn secret_manifest(m: &Material, name: &str, namespace: &str) -> String {
    let b64 = |data: &[u8]| base64::encode_block(data).replace(['\n', '\r'], "");
    let (crt, key) = (b64(&m.ca_crt), b64(&m.ca_key));
    format!(
        "# Generated by `talos-csr-signer import`; it holds the machine CA key: keep it out of git.\n\
         apiVersion: v1\n\
         kind: Secret\n\
         metadata:\n  name: {name}\n  namespace: {namespace}\n  labels:\n    app.kubernetes.io/name: talos-csr-signer\n\
         type: Opaque\n\
         data:\n  ca.crt: {crt}\n  ca.key: {key}\n  token: {}\n\
         \x20 # The same CA, under the keys cert-manager's CA Issuer reads.\n\
         \x20 tls.crt: {crt}\n  tls.key: {key}\n",
        b64(m.token.as_bytes()),
    )
}
