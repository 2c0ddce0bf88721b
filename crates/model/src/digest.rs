//! Content addresses: the sha256 [`Digest`] of an artifact, written `sha256:<64 lowercase hex>`.
//!
//! Every artifact, manifest and attestation subject is named by its digest; plans and hosts refer
//! to artifacts only this way, never by a mutable name.

use std::fmt;
use std::io::Read;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

/// A sha256 digest.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest([u8; 32]);

/// Why a digest's text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid digest {text:?}: write `sha256:` followed by 64 lowercase hex digits")]
pub struct DigestError {
    pub text: String,
}

impl Digest {
    /// The digest of some bytes.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(Sha256::digest(bytes).into())
    }

    /// The digest of everything a reader yields.
    pub fn of_reader(mut reader: impl Read) -> std::io::Result<Digest> {
        let mut hasher = Sha256::new();
        let mut buffer = [0u8; 64 * 1024];
        loop {
            let read = reader.read(&mut buffer)?;
            if read == 0 {
                return Ok(Digest(hasher.finalize().into()));
            }
            hasher.update(&buffer[..read]);
        }
    }

    /// The 64 lowercase hex digits, as in-toto's DigestSet writes them.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses the bare 64-hex form used in in-toto `digest.sha256` fields.
    pub fn from_hex(text: &str) -> Result<Digest, DigestError> {
        let fail = || DigestError { text: text.to_string() };
        if text.len() != 64 || text.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(fail());
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes).map_err(|_| fail())?;
        Ok(Digest(bytes))
    }

    /// The first 12 hex digits, for tables.
    pub fn short(&self) -> String {
        self.hex()[..12].to_string()
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    /// Accepts `sha256:<hex>`, and bare hex for convenience on the command line.
    fn from_str(text: &str) -> Result<Digest, DigestError> {
        let hex = text.strip_prefix("sha256:").unwrap_or(text);
        Digest::from_hex(hex).map_err(|_| DigestError { text: text.to_string() })
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Digest, D::Error> {
        String::deserialize(deserializer)?.parse().map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for Digest {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Digest".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^sha256:[0-9a-f]{64}$",
            "description": "A sha256 content address: `sha256:` and 64 lowercase hex digits."
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected: Option<&str>) {
        let got = text.parse::<Digest>().ok().map(|d| d.to_string());
        assert_eq!(got.as_deref(), expected, "parsing {text:?}");
    }

    #[test]
    fn parses_and_refuses() {
        let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let prefixed = format!("sha256:{empty}");
        check(&prefixed, Some(&prefixed));
        check(empty, Some(&prefixed));
        check(&empty.to_uppercase(), None);
        check(&empty[..63], None);
        check("sha512:00", None);
        check(&format!("sha256:{}", "g".repeat(64)), None);
    }

    #[test]
    fn hashes_known_vectors() {
        assert_eq!(
            Digest::of(b"abc").hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(Digest::of_reader(&b"abc"[..]).unwrap(), Digest::of(b"abc"));
    }
}
