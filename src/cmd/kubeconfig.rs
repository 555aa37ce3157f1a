//! Reads the cluster a kubeconfig points at: its API server URL and its CA,
//! the two things a Talos worker config needs from the cluster it joins.

use std::path::{Path, PathBuf};

use openssl::base64;
use yaml_rust2::{Yaml, YamlLoader};

use crate::pki::pem;

pub struct Cluster {
    /// The kubeconfig's name for the cluster entry.
    pub name: String,
    /// `server`, e.g. `https://10.10.10.101:6443`.
    pub server: String,
    /// The cluster CA certificate(s), PEM.
    pub ca_pem: Vec<u8>,
}

/// The cluster of `context` (default: the current context; a kubeconfig
/// with a single cluster needs neither).
pub fn read(path: &Path, context: Option<&str>) -> Result<Cluster, String> {
    let name = path.display();
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("cannot read kubeconfig {name}: {e}"))?;
    let docs = YamlLoader::load_from_str(&text)
        .map_err(|e| format!("kubeconfig {name} is not YAML: {e}"))?;
    let doc = docs
        .first()
        .filter(|d| d["kind"].as_str() == Some("Config") || !d["clusters"].is_badvalue())
        .ok_or_else(|| format!("{name} is not a kubeconfig (no clusters)"))?;
    let cluster_name = cluster_of(doc, context).map_err(|e| format!("kubeconfig {name}: {e}"))?;
    let entry = named(&doc["clusters"], &cluster_name)
        .map(|e| &e["cluster"])
        .ok_or_else(|| format!("kubeconfig {name}: no cluster named {cluster_name:?}"))?;
    let server = entry["server"]
        .as_str()
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| format!("kubeconfig {name}: cluster {cluster_name:?} has no server"))?
        .trim()
        .to_string();
    let dir = path.parent().unwrap_or(Path::new("."));
    let ca_pem = cluster_ca(entry, dir)
        .map_err(|e| format!("kubeconfig {name}: cluster {cluster_name:?}: {e}"))?;
    Ok(Cluster {
        name: cluster_name,
        server,
        ca_pem,
    })
}

/// The entry of a kubeconfig list (`clusters`, `contexts`) called `name`.
fn named<'a>(list: &'a Yaml, name: &str) -> Option<&'a Yaml> {
    list.as_vec()?
        .iter()
        .find(|e| e["name"].as_str() == Some(name))
}

/// Which cluster the context names.
fn cluster_of(doc: &Yaml, context: Option<&str>) -> Result<String, String> {
    let current = doc["current-context"].as_str().filter(|c| !c.is_empty());
    let Some(context) = context.or(current) else {
        // No context to follow: only an unambiguous kubeconfig will do.
        return match doc["clusters"].as_vec().map(Vec::as_slice) {
            Some([only]) => only["name"]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| "its cluster has no name".to_string()),
            _ => Err(
                "no current-context and more than one cluster; choose one with \
                      --kubeconfig-context"
                    .to_string(),
            ),
        };
    };
    named(&doc["contexts"], context)
        .and_then(|c| c["context"]["cluster"].as_str())
        .map(str::to_string)
        .ok_or_else(|| format!("no context named {context:?} with a cluster"))
}

/// `certificate-authority-data` (base64 PEM) or `certificate-authority` (a
/// file, relative to the kubeconfig's directory), checked to be certificates.
fn cluster_ca(entry: &Yaml, dir: &Path) -> Result<Vec<u8>, String> {
    let pem = if let Some(data) = entry["certificate-authority-data"].as_str() {
        let compact: String = data.split_whitespace().collect();
        base64::decode_block(&compact)
            .map_err(|_| "certificate-authority-data is not base64".to_string())?
    } else if let Some(file) = entry["certificate-authority"].as_str() {
        let file = dir.join(PathBuf::from(file));
        std::fs::read(&file).map_err(|e| {
            format!(
                "cannot read its certificate-authority {}: {e}",
                file.display()
            )
        })?
    } else {
        return Err(
            "no certificate-authority-data or certificate-authority: the worker \
                    needs the cluster's CA (insecure-skip-tls-verify kubeconfigs cannot be used)"
                .to_string(),
        );
    };
    pem::parse_certificates(&pem).map_err(|e| format!("the cluster CA {e}"))?;
    Ok(pem)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn contexts_and_errors() {
        let dir = std::env::temp_dir().join(format!("kubeconfig-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let two = write(
            &dir,
            "two",
            "apiVersion: v1\nkind: Config\nclusters:\n- name: a\n  cluster:\n    server: https://a:6443\n    certificate-authority: missing.crt\n- name: b\n  cluster:\n    server: https://b:6443\n    insecure-skip-tls-verify: true\ncontexts:\n- name: ca\n  context: {cluster: a, user: u}\n- name: cb\n  context: {cluster: b, user: u}\n",
        );
        let e = read(&two, None).err().unwrap();
        assert!(e.contains("--kubeconfig-context"), "{e}");
        let e = read(&two, Some("cb")).err().unwrap();
        assert!(e.contains("no certificate-authority-data"), "{e}");
        let e = read(&two, Some("ca")).err().unwrap();
        assert!(e.contains("missing.crt"), "{e}");
        let e = read(&two, Some("nope")).err().unwrap();
        assert!(e.contains("no context named \"nope\""), "{e}");
        let junk = write(&dir, "junk", "just: text\n");
        assert!(read(&junk, None)
            .err()
            .unwrap()
            .contains("not a kubeconfig"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
