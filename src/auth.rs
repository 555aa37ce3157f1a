//! The machine tokens we accept. Only SHA-256 digests are kept, and checking a
//! token takes the same time whatever it is and whichever entry it matches.

use openssl::hash::{hash, MessageDigest};
use openssl::memcmp;

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
