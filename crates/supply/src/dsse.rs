//! DSSE, the Dead Simple Signing Envelope (secure-systems-lab/dsse v1.0): the signed wrapper
//! around every attestation and review approval Gantry writes.
//!
//! The signature covers `PAE(payloadType, payload)`, never the JSON envelope itself, so the
//! payload type is authenticated too. `keyid` is an unauthenticated hint: verification tries
//! every trusted key and reports which one verified. Verification hands back the verified payload
//! bytes; callers parse those bytes and never the envelope's payload a second time.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use ed25519_dalek::Signer as _;
use serde::{Deserialize, Serialize};

/// The payload type of in-toto statements.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// The JSON envelope: `{"payload", "payloadType", "signatures": [{"keyid", "sig"}]}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Base64 of the serialized body.
    pub payload: String,
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    pub signatures: Vec<Signature>,
}

/// One signature over the envelope's PAE.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    /// Unauthenticated hint naming the key; an unset keyid is the same as an empty one.
    #[serde(default)]
    pub keyid: String,
    /// Base64 of the signature.
    pub sig: String,
}

/// The pre-authentication encoding: `"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`, with
/// lengths in decimal ASCII without leading zeros.
pub fn pae(payload_type: &str, body: &[u8]) -> Vec<u8> {
    let mut encoded =
        format!("DSSEv1 {} {} {} ", payload_type.len(), payload_type, body.len()).into_bytes();
    encoded.extend_from_slice(body);
    encoded
}

/// Decodes base64 in either alphabet, padded or not, as DSSE verifiers must.
pub fn decode_base64(text: &str) -> Option<Vec<u8>> {
    [STANDARD, URL_SAFE, STANDARD_NO_PAD, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(text).ok())
}

impl Envelope {
    /// Signs `body` with `key`, naming the key by `keyid`.
    pub fn sign(
        payload_type: &str,
        body: &[u8],
        keyid: &str,
        key: &ed25519_dalek::SigningKey,
    ) -> Envelope {
        let signature = key.sign(&pae(payload_type, body));
        Envelope {
            payload: STANDARD.encode(body),
            payload_type: payload_type.to_string(),
            signatures: vec![Signature {
                keyid: keyid.to_string(),
                sig: STANDARD.encode(signature.to_bytes()),
            }],
        }
    }

    /// Verifies the envelope against candidate keys `(keyid, key)`. Returns the verified body and
    /// the index of the first candidate that verified any signature, or why none did.
    pub fn verify<'k>(
        &self,
        candidates: impl IntoIterator<Item = (&'k str, &'k ed25519_dalek::VerifyingKey)>,
    ) -> Result<(Vec<u8>, usize), Unverified> {
        let body = decode_base64(&self.payload).ok_or(Unverified::Malformed("payload"))?;
        if self.signatures.is_empty() {
            return Err(Unverified::Unsigned);
        }
        let message = pae(&self.payload_type, &body);
        let signatures: Vec<ed25519_dalek::Signature> = self
            .signatures
            .iter()
            .filter_map(|signature| {
                let bytes: [u8; 64] = decode_base64(&signature.sig)?.try_into().ok()?;
                Some(ed25519_dalek::Signature::from_bytes(&bytes))
            })
            .collect();
        let mut named_candidates = Vec::new();
        for (index, (keyid, key)) in candidates.into_iter().enumerate() {
            if signatures.iter().any(|signature| key.verify_strict(&message, signature).is_ok()) {
                return Ok((body, index));
            }
            if self.signatures.iter().any(|signature| signature.keyid == keyid) {
                named_candidates.push(keyid.to_string());
            }
        }
        if named_candidates.is_empty() {
            let named = self.signatures.iter().map(|s| s.keyid.clone()).collect();
            Err(Unverified::UnknownSigner(named))
        } else {
            Err(Unverified::BadSignature(named_candidates))
        }
    }
}

/// Why an envelope did not verify.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unverified {
    /// A field is not valid base64.
    Malformed(&'static str),
    /// The envelope has no signatures.
    Unsigned,
    /// A key the envelope names is a candidate, but its signature does not verify: the payload,
    /// its type or the signature was altered.
    BadSignature(Vec<String>),
    /// No candidate key verifies and none is named: signed by a key nobody trusts.
    UnknownSigner(Vec<String>),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> ed25519_dalek::SigningKey {
        ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
    }

    #[test]
    fn pae_matches_the_spec_test_vector() {
        // secure-systems-lab/dsse protocol.md, "Test Vectors".
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
        );
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ");
    }

    #[test]
    fn verification_outcomes() {
        let signer = key(1);
        let other = key(2);
        let envelope = Envelope::sign("application/x.test", b"body", "k1", &signer);
        let public = signer.verifying_key();
        let other_public = other.verifying_key();

        let mut tampered_payload = envelope.clone();
        tampered_payload.payload = STANDARD.encode(b"bodz");
        let mut tampered_type = envelope.clone();
        tampered_type.payload_type = "application/x.other".into();
        let mut url_safe = envelope.clone();
        url_safe.payload = URL_SAFE_NO_PAD.encode(b"body");
        url_safe.signatures[0].sig =
            URL_SAFE_NO_PAD.encode(decode_base64(&envelope.signatures[0].sig).unwrap());
        let mut unsigned = envelope.clone();
        unsigned.signatures.clear();
        let mut garbled = envelope.clone();
        garbled.payload = "!!".into();

        type Case<'a> = (
            &'a str,
            &'a Envelope,
            Vec<(&'a str, &'a ed25519_dalek::VerifyingKey)>,
            Result<usize, Unverified>,
        );
        let cases: Vec<Case> = vec![
            ("good", &envelope, vec![("k2", &other_public), ("k1", &public)], Ok(1)),
            ("url-safe base64 accepted", &url_safe, vec![("k1", &public)], Ok(0)),
            (
                "payload altered",
                &tampered_payload,
                vec![("k1", &public)],
                Err(Unverified::BadSignature(vec!["k1".into()])),
            ),
            (
                "payload type is authenticated",
                &tampered_type,
                vec![("k1", &public)],
                Err(Unverified::BadSignature(vec!["k1".into()])),
            ),
            (
                "untrusted signer",
                &envelope,
                vec![("k2", &other_public)],
                Err(Unverified::UnknownSigner(vec!["k1".into()])),
            ),
            ("no signatures", &unsigned, vec![("k1", &public)], Err(Unverified::Unsigned)),
            ("bad base64", &garbled, vec![("k1", &public)], Err(Unverified::Malformed("payload"))),
        ];
        for (name, envelope, candidates, expected) in cases {
            let got = envelope.verify(candidates.iter().map(|(id, key)| (*id, *key)));
            assert_eq!(got.map(|(_, index)| index), expected, "{name}");
        }
    }

    #[test]
    fn envelope_json_shape() {
        let envelope = Envelope::sign("t", b"{}", "k", &key(1));
        let json = serde_json::to_value(&envelope).unwrap();
        let keys: Vec<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["payload", "payloadType", "signatures"]);
        assert_eq!(json["payload"], "e30=");
        let signature: Vec<&str> =
            json["signatures"][0].as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(signature, ["keyid", "sig"]);
    }

    proptest::proptest! {
        // Each case verifies an ed25519 signature, slow in unoptimised test builds.
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// DSSE's classic bug class: whatever one byte of a stored envelope is changed to, the
        /// verifier either refuses it or hands back exactly the payload that was signed.
        #[test]
        fn no_single_byte_change_verifies_a_different_payload(position in 0usize..4096, byte in proptest::prelude::any::<u8>()) {
            let signer = key(9);
            let body = br#"{"_type":"https://in-toto.io/Statement/v1","subject":[]}"#;
            let envelope = Envelope::sign(IN_TOTO_PAYLOAD_TYPE, body, "k9", &signer);
            let mut bytes = serde_json::to_vec(&envelope).unwrap();
            let position = position % bytes.len();
            bytes[position] = byte;
            let public = signer.verifying_key();
            if let Ok(parsed) = serde_json::from_slice::<Envelope>(&bytes)
                && let Ok((verified, _)) = parsed.verify([("k9", &public)])
            {
                proptest::prop_assert_eq!(&verified[..], &body[..]);
                proptest::prop_assert_eq!(parsed.payload_type, IN_TOTO_PAYLOAD_TYPE);
            }
        }
    }
}
