//! The machine token check. Only SHA-256 digests of the accepted token are kept,
//! and the comparison takes the same time whatever the presented token is.

use openssl::memcmp;
use openssl::sha::sha256;

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
}

impl TokenSet {
    /// Builds the set from the token text (an env value or a file's contents).
    pub fn parse(text: &str) -> Result<TokenSet, String> {
        let token = text.trim();
        if token.is_empty() {
            return Err(
                "is empty; it must hold machine.token (trustdinfo.token in a \
                        `talosctl gen secrets` bundle)"
                    .to_string(),
            );
        }
        if token.chars().any(char::is_whitespace) {
            return Err(
                "holds whitespace inside the token; it must hold exactly one \
                        machine.token"
                    .to_string(),
            );
        }
        Ok(TokenSet {
            digests: vec![sha256(token.as_bytes())],
        })
    }

    pub fn len(&self) -> usize {
        self.digests.len()
    }

    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// Compares digests, so the time taken does not depend on how much of the
    /// token matched, nor (by checking every entry) on which entry matched.
    pub fn check(&self, presented: &Presented) -> Result<(), AuthError> {
        let token = match presented {
            Presented::Missing => return Err(AuthError::Missing),
            Presented::Several => return Err(AuthError::Duplicate),
            Presented::One(token) => token,
        };
        let digest = sha256(token);
        let mut matched = false;
        for accepted in &self.digests {
            matched |= memcmp::eq(&digest, accepted);
        }
        if matched {
            Ok(())
        } else {
            Err(AuthError::Invalid)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(t: &str) -> Presented {
        Presented::One(t.as_bytes().to_vec())
    }

    #[test]
    fn accepts_only_the_exact_token() {
        let set = TokenSet::parse("d8cwfa.eyvpi0xwxyarbfid\n").unwrap();
        assert_eq!(set.check(&one("d8cwfa.eyvpi0xwxyarbfid")), Ok(()));
        assert_eq!(
            set.check(&one("d8cwfa.eyvpi0xwxyarbfi")),
            Err(AuthError::Invalid)
        );
        assert_eq!(
            set.check(&one("d8cwfa.eyvpi0xwxyarbfidx")),
            Err(AuthError::Invalid)
        );
        assert_eq!(set.check(&one("")), Err(AuthError::Invalid));
        assert_eq!(set.check(&Presented::Missing), Err(AuthError::Missing));
        assert_eq!(set.check(&Presented::Several), Err(AuthError::Duplicate));
    }

    #[test]
    fn refuses_empty_or_split_tokens() {
        assert!(TokenSet::parse(" \n").err().unwrap().contains("empty"));
        assert!(TokenSet::parse("abc def")
            .err()
            .unwrap()
            .contains("whitespace"));
    }
}
