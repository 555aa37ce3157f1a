//! Where the files are when nothing names them: the layouts the Go
//! talos-csr-signer's manifests mount (a machine CA Secret, cert-manager's
//! serving certificate Secret), systemd credentials, and `--dev` material.
//! Each choice says why, for the startup log.

use std::path::{Path, PathBuf};

use super::args::ServeArgs;
use super::lookup::Lookup;

/// The machine CA files and why they were chosen.
pub(super) struct CaFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// `--dev` makes them if they are missing.
    pub make: bool,
    pub origin: String,
}

/// Where systemd's `LoadCredential=` put a file, if it did.
pub(super) fn credential(env: &Lookup<'_>, name: &str) -> Option<PathBuf> {
    let dir = env.var("CREDENTIALS_DIRECTORY")?;
    let path = PathBuf::from(dir).join(name);
    (env.exists)(&path).then_some(path)
}

/// Where the Go talos-csr-signer's images find their files, and so do we when
/// nothing names them: the machine CA Secret and cert-manager's serving
/// certificate Secret, mounted as its manifests mount them.
const CA_DIR: &str = "/etc/talos-ca";
const SERVING_DIR: &str = "/etc/talos-server-crt";

/// The CA files when nothing names them. The Go signer's first version
/// mounted `ca.crt`/`ca.key`; its current one mounts the Secret that
/// cert-manager's CA Issuer reads, whose keys are `tls.crt`/`tls.key`. Take
/// the first pair that is there, whole.
fn default_ca_files(env: &Lookup<'_>) -> (PathBuf, PathBuf, String) {
    let dir = Path::new(CA_DIR);
    let both = |c: &str, k: &str| {
        let (c, k) = (dir.join(c), dir.join(k));
        ((env.exists)(&c) && (env.exists)(&k)).then_some((c, k))
    };
    if let Some((c, k)) = both("ca.crt", "ca.key") {
        return (c, k, "the default paths".to_string());
    }
    if let Some((c, k)) = both("tls.crt", "tls.key") {
        let why = format!(
            "the default paths of a cert-manager CA Secret ({CA_DIR}/ca.crt and ca.key are not \
             both there)"
        );
        return (c, k, why);
    }
    let why = format!(
        "the default paths (neither ca.crt + ca.key nor tls.crt + tls.key are in {CA_DIR}; \
         mount the machine CA Secret there or set --ca-cert and --ca-key)"
    );
    (dir.join("ca.crt"), dir.join("ca.key"), why)
}

/// Flag, variable, systemd credential, `--dev` material, default: in that order.
pub(super) fn ca_files(
    args: &ServeArgs,
    env: &Lookup<'_>,
    dev_dir: &Path,
) -> Result<CaFiles, String> {
    let cert = env
        .named_path(args.ca_cert.clone(), "--ca-cert", "CA_CERT_PATH")
        .or_else(|| credential(env, "ca.crt").map(|p| (p, "a systemd credential".into())));
    let key = env
        .named_path(args.ca_key.clone(), "--ca-key", "CA_KEY_PATH")
        .or_else(|| credential(env, "ca.key").map(|p| (p, "a systemd credential".into())));
    match (cert, key) {
        (None, None) if args.dev => Ok(CaFiles {
            cert: dev_dir.join("ca.crt"),
            key: dev_dir.join("ca.key"),
            make: true,
            origin: "--dev (a throwaway CA, made if missing)".to_string(),
        }),
        (Some(_), None) | (None, Some(_)) if args.dev => Err(
            "--dev with a real CA needs both the CA certificate and key (--ca-cert and \
             --ca-key); give both or neither"
                .to_string(),
        ),
        (None, None) => {
            let (cert, key, origin) = default_ca_files(env);
            Ok(CaFiles {
                cert,
                key,
                make: false,
                origin,
            })
        }
        (cert, key) => {
            let (default_cert, default_key, _) = default_ca_files(env);
            let (cert, cert_from) = cert.unwrap_or((default_cert, "the default".into()));
            let (key, key_from) = key.unwrap_or((default_key, "the default".into()));
            Ok(CaFiles {
                cert,
                key,
                make: false,
                origin: format!("certificate from {cert_from}, key from {key_from}"),
            })
        }
    }
}

/// `--tls-cert`/`--tls-key`, else cert-manager's Secret where the Go
/// signer's manifests mount it, else none (we generate our own). Also
/// says why, for the startup log.
pub(super) fn serving_files(
    args: &ServeArgs,
    env: &Lookup<'_>,
) -> Result<(Option<(PathBuf, PathBuf)>, String), String> {
    let given = (
        env.path(args.tls_cert.clone(), "TLS_CERT_PATH"),
        env.path(args.tls_key.clone(), "TLS_KEY_PATH"),
    );
    let generated = "generated, signed by the machine CA, renewed at half its life";
    match given {
        (Some(c), Some(k)) => Ok((Some((c, k)), "--tls-cert/--tls-key".to_string())),
        (None, None) if args.dev => Ok((None, format!("{generated} (--dev)"))),
        (None, None) => {
            let (c, k) = (
                Path::new(SERVING_DIR).join("tls.crt"),
                Path::new(SERVING_DIR).join("tls.key"),
            );
            if (env.exists)(&c) && (env.exists)(&k) {
                let why =
                    format!("the default paths ({SERVING_DIR}/tls.crt and tls.key are there)");
                Ok((Some((c, k)), why))
            } else {
                let why = format!(
                    "{generated} (no --tls-cert, and {SERVING_DIR}/tls.crt and tls.key are not \
                     both there)"
                );
                Ok((None, why))
            }
        }
        _ => Err(
            "--tls-cert and --tls-key (TLS_CERT_PATH / TLS_KEY_PATH) go together; \
                  give both or neither"
                .to_string(),
        ),
    }
}
