//! The machine tokens we accept. Only SHA-256 digests are kept, and checking a
//! token takes the same time whatever it is and whichever entry it matches.

use std::path::PathBuf;

use openssl::hash::{hash, MessageDigest};
use openssl::memcmp;

/// Where the accepted machine token comes from.
#[derive(Debug, PartialEq, Eq)]
pub enum TokenSource {
    /// The token itself and the setting that gave it (TALOS_TOKEN,
    /// `--talos-token`, `--token`).
    Value(String, &'static str),
    File(PathBuf),
}

/// What the caller sent under the `token` metadata key.
pub enum Presented {
    Missing,
    One(Vec<u8>),
    /// More than one `token` entry: ambiguous, so refused.
    Several,
}

#[derive(Debug, PartialEq, Eq)]
pub enum AuthError {
    Missing,
    Duplicate,
    Invalid,
}

impl AuthError {
    /// The message the caller sees; it never echoes what was sent.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing token",
            AuthError::Duplicate => "more than one token in metadata",
            AuthError::Invalid => "invalid token",
        }
    }
}

pub struct TokenSet {
    digests: Vec<[u8; 32]>,
    /// Positions (1-based) of tokens not shaped like Talos's, for `check`.
    unusual: Vec<usize>,
}

const EMPTY: &str = "holds no token; it must hold machine.token (trustdinfo.token in a \
                     `talosctl gen secrets` bundle)";

impl TokenSet {
    /// A token file: one token per line; blank lines and `#` comments ignored.
    /// Several lines let an operator rotate tokens without downtime.
    pub fn from_file_text(text: &str) -> Result<TokenSet, String> {
        let tokens = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'));
        TokenSet::build(tokens, "line")
    }

    /// The one token a token file holds, for a client that sends it (several
    /// lines are for a server accepting old and new during a rotation).
    pub fn single_from_file_text(text: &str) -> Result<String, String> {
        let mut tokens = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'));
        match (tokens.next(), tokens.next()) {
            (Some(t), None) => Ok(t.to_string()),
            (None, _) => Err(EMPTY.to_string()),
            (Some(_), Some(_)) => Err(
                "holds more than one token; a worker sends one: keep one line or pass --token"
                    .to_string(),
            ),
        }
    }

    /// TALOS_TOKEN: one token, or several separated by commas.
    pub fn from_env_text(text: &str) -> Result<TokenSet, String> {
        TokenSet::build(
            text.split(',').map(str::trim).filter(|t| !t.is_empty()),
            "entry",
        )
    }

    fn build<'a>(tokens: impl Iterator<Item = &'a str>, unit: &str) -> Result<TokenSet, String> {
        let mut digests = Vec::new();
        let mut unusual = Vec::new();
        for (i, token) in tokens.enumerate() {
            if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(format!(
                    "has whitespace inside token {unit} {}; put one token per {unit}",
                    i + 1
                ));
            }
            if !talos_shaped(token) {
                unusual.push(i + 1);
            }
            digests.push(sha256(token.as_bytes()));
        }
        if digests.is_empty() {
            return Err(EMPTY.to_string());
        }
        Ok(TokenSet { digests, unusual })
    }

    /// Positions of tokens that do not look like `talosctl gen` makes them.
    pub fn unusual(&self) -> &[usize] {
        &self.unusual
    }

    pub fn len(&self) -> usize {
        self.digests.len()
    }

    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// On success, the 1-based position of the matching token (logs and audit
    /// name tokens only so). Every entry is compared, and the position is picked
    /// without branching on the comparison, so timing reveals neither whether an
    /// earlier entry nearly matched nor which one matched.
    pub fn check(&self, presented: &Presented) -> Result<usize, AuthError> {
        let token = match presented {
            Presented::Missing => return Err(AuthError::Missing),
            Presented::Several => return Err(AuthError::Duplicate),
            Presented::One(token) => token,
        };
        let digest = sha256(token);
        let mut position = 0usize;
        for (i, accepted) in self.digests.iter().enumerate() {
            let hit = usize::from(memcmp::eq(&digest, accepted));
            position |= (i + 1) * hit * usize::from(position == 0);
        }
        if position == 0 {
            Err(AuthError::Invalid)
        } else {
            Ok(position)
        }
    }
}

/// SHA-256 through EVP, so FIPS mode's provider computes it.
fn sha256(data: &[u8]) -> [u8; 32] {
    let digest = hash(MessageDigest::sha256(), data).expect("SHA-256 is always available");
    let mut out = [0u8; 32];
    out.copy_from_slice(&digest);
    out
}

/// A fresh token `[a-z0-9]{6}.[a-z0-9]{16}` from OpenSSL's DRBG, as
/// (id, secret): the shape of Talos's machine.token and of kubeadm's
/// bootstrap tokens alike.
pub fn generate() -> Result<(String, String), String> {
    Ok((random_chars(6)?, random_chars(16)?))
}

/// `n` characters of `[a-z0-9]`, uniformly: bytes of 252 (= 7 × 36) and
/// above are drawn again so that `% 36` has no bias.
fn random_chars(n: usize) -> Result<String, String> {
    const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(n);
    let mut buf = [0u8; 32];
    while out.len() < n {
        openssl::rand::rand_bytes(&mut buf).map_err(|e| {
            format!(
                "OpenSSL's random generator failed: {}",
                crate::pki::openssl_reason(&e)
            )
        })?;
        for b in buf.iter().filter(|b| **b < 252).take(n - out.len()) {
            out.push(char::from(ALPHABET[usize::from(*b % 36)]));
        }
    }
    Ok(out)
}

/// `[a-z0-9]{6}.[a-z0-9]{16}`, the machine.token format.
fn talos_shaped(token: &str) -> bool {
    let ok = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    matches!(token.split_once('.'), Some((a, b)) if ok(a, 6) && ok(b, 16))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(t: &str) -> Presented {
        Presented::One(t.as_bytes().to_vec())
    }

    #[test]
    fn accepts_only_exact_tokens_and_names_their_position() {
        let set = TokenSet::from_file_text(
            "# rotated 2026-11\nold000.aaaaaaaaaaaaaaaa\n\n  new000.bbbbbbbbbbbbbbbb  \n",
        )
        .unwrap();
        assert_eq!(set.len(), 2);
        assert_eq!(set.check(&one("old000.aaaaaaaaaaaaaaaa")), Ok(1));
        assert_eq!(set.check(&one("new000.bbbbbbbbbbbbbbbb")), Ok(2));
        assert_eq!(
            set.check(&one("new000.bbbbbbbbbbbbbbb")),
            Err(AuthError::Invalid)
        );
        assert_eq!(
            set.check(&one("new000.bbbbbbbbbbbbbbbbx")),
            Err(AuthError::Invalid)
        );
        assert_eq!(
            set.check(&one("# rotated 2026-11")),
            Err(AuthError::Invalid)
        );
        assert_eq!(set.check(&one("")), Err(AuthError::Invalid));
        assert_eq!(set.check(&Presented::Missing), Err(AuthError::Missing));
        assert_eq!(set.check(&Presented::Several), Err(AuthError::Duplicate));

        assert!(set.unusual().is_empty());
        let env = TokenSet::from_env_text("a1.x, b2.y,,c3.z").unwrap();
        assert_eq!(env.unusual(), &[1, 2, 3]);
        assert_eq!(env.len(), 3);
        assert_eq!(env.check(&one("c3.z")), Ok(3));
        // The same token twice: the first position wins.
        let dup = TokenSet::from_env_text("a1.x,a1.x").unwrap();
        assert_eq!(dup.check(&one("a1.x")), Ok(1));
    }

    #[test]
    fn generated_tokens_have_talos_shape_and_differ() {
        for _ in 0..50 {
            let (id, secret) = generate().unwrap();
            assert!(talos_shaped(&format!("{id}.{secret}")), "{id}.{secret}");
        }
        assert_ne!(generate().unwrap(), generate().unwrap());
    }

    #[test]
    fn a_client_sends_the_one_token_of_its_file() {
        assert_eq!(
            TokenSet::single_from_file_text("# x\n abc.def \n\n").unwrap(),
            "abc.def"
        );
        assert!(TokenSet::single_from_file_text("a.b\nc.d\n")
            .unwrap_err()
            .contains("more than one"));
        assert!(TokenSet::single_from_file_text("# only\n")
            .unwrap_err()
            .contains("holds no token"));
    }

    #[test]
    fn refuses_empty_or_split_tokens() {
        assert!(TokenSet::from_file_text(" \n# only a comment\n")
            .err()
            .unwrap()
            .contains("holds no token"));
        assert!(TokenSet::from_env_text(" , ")
            .err()
            .unwrap()
            .contains("holds no token"));
        assert!(TokenSet::from_file_text("abc def")
            .err()
            .unwrap()
            .contains("line 1"));
        assert!(TokenSet::from_env_text("ok.1, abc def")
            .err()
            .unwrap()
            .contains("entry 2"));
    }
}
