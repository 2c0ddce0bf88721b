//! Build keys: generate, rotate and revoke the ed25519 keys that sign artifacts, and the trust
//! file that verifiers read.
//!
//! A key directory holds private keys (`<keyid>.key`, mode 0600, only on the builder) and
//! `trusted-keys.json` (public keys with their status, copied to every verifier). Exactly one key
//! is `active` and signs new artifacts. Rotation makes a new active key and `retires` the old one:
//! artifacts it signed still verify. Revocation is final: nothing signed by a revoked key
//! verifies, whenever it was signed. Reviewers' keys use the same key-file format.
//!
//! Every change to the trust list bumps its `version` and is signed by the directory's trust
//! root key (`trust-root.key`, made with the first build key) into `trusted-keys.json.dsse`.
//! A host that pins the trust root's public key reads the trust list only from that signed file
//! ([`TrustedKeys::read_signed`]), and refuses a version older than the one it last accepted:
//! whoever can write the file but does not hold the trust root can neither add a key nor undo a
//! revocation. Keep the trust root offline between key changes. The same root signs the team
//! keyring ([`crate::review::Keyring::read_signed`]): who may approve is as sensitive as who may
//! sign.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::{Digest, Error};

/// File name of the public trust list inside a key directory.
pub const TRUSTED_KEYS_FILE: &str = "trusted-keys.json";
/// The private key that signs every version of the trust list.
pub const TRUST_ROOT_KEY_FILE: &str = "trust-root.key";
/// The DSSE payload type of signed trust lists.
pub const TRUSTED_KEYS_PAYLOAD_TYPE: &str = "application/vnd.gantry.trusted-keys.v1+json";

/// A key's identifier: the sha256 of its 32 public-key bytes, in hex. Derived, so it can't lie.
pub fn keyid_of(public: &ed25519_dalek::VerifyingKey) -> String {
    Digest::of(public.as_bytes()).hex()
}

/// A private ed25519 key loaded from a key file.
pub struct KeyPair {
    pub keyid: String,
    pub signing: ed25519_dalek::SigningKey,
}

/// The on-disk form of a private key file.
#[derive(Serialize, Deserialize)]
struct KeyFile {
    keyid: String,
    algorithm: String,
    /// Base64 of the 32-byte seed.
    private_key: String,
    public_key: String,
}

impl KeyPair {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Result<KeyPair, Error> {
        let mut seed = [0u8; 32];
        fs::File::open("/dev/urandom")
            .and_then(|mut random| random.read_exact(&mut seed))
            .map_err(|source| Error::io("/dev/urandom", source))?;
        Ok(KeyPair::from_seed(seed))
    }

    pub fn from_seed(seed: [u8; 32]) -> KeyPair {
        let signing = ed25519_dalek::SigningKey::from_bytes(&seed);
        KeyPair { keyid: keyid_of(&signing.verifying_key()), signing }
    }

    pub fn public(&self) -> ed25519_dalek::VerifyingKey {
        self.signing.verifying_key()
    }

    /// Base64 of the public key, the form keyrings and trust files hold.
    pub fn public_base64(&self) -> String {
        STANDARD.encode(self.public().as_bytes())
    }

    /// Writes the key to a new file readable by its owner only; refuses to replace a file.
    pub fn write(&self, path: &Path) -> Result<(), Error> {
        let file = KeyFile {
            keyid: self.keyid.clone(),
            algorithm: "ed25519".into(),
            private_key: STANDARD.encode(self.signing.to_bytes()),
            public_key: self.public_base64(),
        };
        let text = serde_json::to_string_pretty(&file).expect("key file serializes");
        let mut out = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|source| Error::io(path, source))?;
        out.write_all(text.as_bytes()).map_err(|source| Error::io(path, source))
    }

    /// Reads a key file, refusing one that others may read (as ssh does).
    pub fn read(path: &Path) -> Result<KeyPair, Error> {
        use std::os::unix::fs::PermissionsExt;
        let mode =
            fs::metadata(path).map_err(|source| Error::io(path, source))?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(Error::invalid(
                path,
                format!(
                    "private key readable by others (mode {:o}); run `chmod 600 {}`",
                    mode & 0o777,
                    path.display()
                ),
            ));
        }
        let text = fs::read_to_string(path).map_err(|source| Error::io(path, source))?;
        let file: KeyFile = serde_json::from_str(&text)
            .map_err(|error| Error::invalid(path, format!("not a Gantry key file: {error}")))?;
        if file.algorithm != "ed25519" {
            return Err(Error::invalid(path, format!("unsupported algorithm {}", file.algorithm)));
        }
        let seed: [u8; 32] = crate::dsse::decode_base64(&file.private_key)
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| Error::invalid(path, "private_key is not 32 bytes of base64"))?;
        let pair = KeyPair::from_seed(seed);
        if pair.keyid != file.keyid {
            return Err(Error::invalid(path, "keyid does not match the private key"));
        }
        Ok(pair)
    }
}

/// Writes a document the trust root vouches for: `path` holds the bytes for people to read and
/// `<path>.dsse` the same bytes signed, which is what verifiers read.
pub fn write_signed(
    path: &Path,
    bytes: &[u8],
    payload_type: &str,
    root: &KeyPair,
) -> Result<(), Error> {
    let envelope = crate::dsse::Envelope::sign(payload_type, bytes, &root.keyid, &root.signing);
    let envelope = serde_json::to_vec_pretty(&envelope).expect("envelope serializes");
    crate::store::write_atomically(&signed_path(path), &envelope)?;
    crate::store::write_atomically(path, bytes)
}

/// The verified bytes of `<path>.dsse`, which the trust root must have signed with
/// `payload_type`. The readable copy at `path` is never consulted.
pub fn read_signed(
    path: &Path,
    payload_type: &str,
    root: &ed25519_dalek::VerifyingKey,
) -> Result<Vec<u8>, Error> {
    let signed = signed_path(path);
    let bytes = fs::read(&signed).map_err(|source| Error::io(&signed, source))?;
    let envelope: crate::dsse::Envelope = serde_json::from_slice(&bytes)
        .map_err(|error| Error::invalid(&signed, format!("not a signed document: {error}")))?;
    if envelope.payload_type != payload_type {
        return Err(Error::invalid(
            &signed,
            format!("payload type {} is not {payload_type}", envelope.payload_type),
        ));
    }
    let keyid = keyid_of(root);
    let (body, _) = envelope.verify([(keyid.as_str(), root)]).map_err(|_| {
        Error::invalid(&signed, format!("not signed by the pinned trust root {}", &keyid[..16]))
    })?;
    Ok(body)
}

/// Where the signed copy of a document lives.
pub fn signed_path(path: &Path) -> PathBuf {
    PathBuf::from(format!("{}.dsse", path.display()))
}

/// Parses a base64 ed25519 public key.
pub fn parse_public_key(text: &str) -> Option<ed25519_dalek::VerifyingKey> {
    let bytes: [u8; 32] = crate::dsse::decode_base64(text)?.try_into().ok()?;
    ed25519_dalek::VerifyingKey::from_bytes(&bytes).ok()
}

/// Where a key stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum KeyStatus {
    /// Signs new artifacts.
    Active,
    /// Rotated out: signs nothing new, but what it signed still verifies.
    Retired { retired_at: Timestamp },
    /// Nothing it signed verifies any more.
    Revoked { revoked_at: Timestamp, revoked_by: String, reason: String },
}

/// One public key a verifier trusts, or used to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustedKey {
    pub keyid: String,
    pub public_key: String,
    pub created_at: Timestamp,
    #[serde(flatten)]
    pub status: KeyStatus,
    /// The builder ids this key may sign provenance for (see [`crate::build::builder_id`]); a
    /// statement claiming another builder fails the signer check. None: it signs for nobody.
    #[serde(default)]
    pub builder_ids: Vec<String>,
}

impl TrustedKey {
    /// Whether this key may sign provenance naming `builder_id`.
    pub fn may_sign_for(&self, builder_id: &str) -> bool {
        self.builder_ids.iter().any(|id| id == builder_id)
    }
}

/// The builder ids the controller's build service signs as: the key it holds is bound to these.
pub fn service_builder_ids() -> Vec<String> {
    use crate::build::{SERVICE_BUBBLEWRAP_BUILDER_ID, SERVICE_UNSHARE_BUILDER_ID};
    vec![SERVICE_BUBBLEWRAP_BUILDER_ID.to_string(), SERVICE_UNSHARE_BUILDER_ID.to_string()]
}

/// The builder id a key for hand-run builds signs as.
pub fn local_builder_ids() -> Vec<String> {
    vec![crate::build::LOCAL_BUILDER_ID.to_string()]
}

/// The public trust list: every build key there has been, with its status.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustedKeys {
    /// Incremented by every change; hosts refuse to go back to an older version.
    #[serde(default)]
    pub version: u64,
    /// The trust root's public key (base64) that signs this list: a verifier with no root
    /// configured pins it on first use, and from then on accepts only lists it signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_root: Option<String>,
    pub keys: Vec<TrustedKey>,
}

impl TrustedKeys {
    /// Reads a trust list as is, trusting whoever wrote the file.
    pub fn read(path: &Path) -> Result<TrustedKeys, Error> {
        let bytes = fs::read(path).map_err(|source| Error::io(path, source))?;
        TrustedKeys::from_bytes(&bytes, path)
    }

    /// Reads the trust list at `path` from its copy signed by the trust root (`<path>.dsse`),
    /// parsing only the verified payload, and refuses a version below `at_least` (a rollback to
    /// before a revocation).
    pub fn read_signed(
        path: &Path,
        trust_root: &ed25519_dalek::VerifyingKey,
        at_least: u64,
    ) -> Result<TrustedKeys, Error> {
        let body = read_signed(path, TRUSTED_KEYS_PAYLOAD_TYPE, trust_root)?;
        let trusted = TrustedKeys::from_bytes(&body, &signed_path(path))?;
        if trusted.version < at_least {
            return Err(Error::invalid(
                signed_path(path),
                format!(
                    "trust list version {} is older than version {at_least}, already accepted",
                    trusted.version
                ),
            ));
        }
        Ok(trusted)
    }

    fn from_bytes(bytes: &[u8], path: &Path) -> Result<TrustedKeys, Error> {
        let trusted: TrustedKeys = serde_json::from_slice(bytes)
            .map_err(|error| Error::invalid(path, format!("not a trusted-keys file: {error}")))?;
        for key in &trusted.keys {
            let public = parse_public_key(&key.public_key).ok_or_else(|| {
                Error::invalid(path, format!("key {}: public_key is not an ed25519 key", key.keyid))
            })?;
            if keyid_of(&public) != key.keyid {
                return Err(Error::invalid(
                    path,
                    format!("key {}: keyid does not match", key.keyid),
                ));
            }
        }
        Ok(trusted)
    }

    pub fn active(&self) -> Option<&TrustedKey> {
        self.keys.iter().find(|key| key.status == KeyStatus::Active)
    }

    pub fn find(&self, keyid: &str) -> Option<&TrustedKey> {
        self.keys
            .iter()
            .find(|key| key.keyid == keyid || (keyid.len() >= 8 && key.keyid.starts_with(keyid)))
    }

    /// Every key with its parsed public key, for DSSE verification: revoked ones last (so an
    /// envelope also signed by a good key verifies), but included, so a verifier can say
    /// "signed by a revoked key" rather than "unknown signer".
    pub fn candidates(&self) -> Vec<(&TrustedKey, ed25519_dalek::VerifyingKey)> {
        let mut candidates: Vec<_> = self
            .keys
            .iter()
            .filter_map(|key| parse_public_key(&key.public_key).map(|public| (key, public)))
            .collect();
        candidates.sort_by_key(|(key, _)| matches!(key.status, KeyStatus::Revoked { .. }));
        candidates
    }
}

/// The file in a verifier's home that pins its trust root and the newest trust-list version it
/// accepted.
pub const TRUST_PIN_FILE: &str = "trust-pin.json";

/// What a verifier pinned: the trust root (configured, or recorded on first use) and the
/// highest trust-list version it has accepted, below which it never goes again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustPin {
    pub trust_root: String,
    pub version: u64,
    /// The digest of the list accepted at `version`: the root signs each version once, so a
    /// second list under the same version (signed elsewhere, or never published) is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
}

/// Reads a trust list as a verifier does: only its copy signed by the pinned trust root, never
/// the readable file, and never a version older than one accepted before (or `at_least`).
///
/// The root is `configured` when given; else the one pinned at `pin_path`; else, on first use,
/// the one the signed list names, which is then pinned. A configured root that differs from the
/// pinned one is refused: a changed root is a decision for a person, who deletes the pin. The
/// pin is updated to every newer version accepted.
pub fn read_pinned(
    path: &Path,
    pin_path: &Path,
    configured: Option<&str>,
    at_least: u64,
) -> Result<TrustedKeys, Error> {
    let pin: Option<TrustPin> =
        match fs::read(pin_path) {
            Ok(bytes) => Some(serde_json::from_slice(&bytes).map_err(|error| {
                Error::invalid(pin_path, format!("not a trust pin file: {error}"))
            })?),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
            Err(error) => return Err(Error::io(pin_path, error)),
        };
    let root_text = match (configured, &pin) {
        (Some(configured), Some(pin)) if configured != pin.trust_root => {
            return Err(Error::Key(format!(
                "the trust root {configured} is not the one pinned in {} ({}); if the root \
                 really changed, delete that file after checking the new root out of band",
                pin_path.display(),
                pin.trust_root
            )));
        }
        (Some(configured), _) => configured.to_string(),
        (None, Some(pin)) => pin.trust_root.clone(),
        (None, None) => first_use_root(path)?,
    };
    let root = parse_public_key(&root_text).ok_or_else(|| {
        Error::Key(format!(
            "the trust root {root_text:?} is not a base64 ed25519 public key; print it with \
             `gantry artifact key root`"
        ))
    })?;
    let floor = at_least.max(pin.as_ref().map_or(0, |pin| pin.version));
    // One read of the signed copy: the digest pinned is that of the list parsed.
    let body = read_signed(path, TRUSTED_KEYS_PAYLOAD_TYPE, &root)?;
    let trusted = TrustedKeys::from_bytes(&body, &signed_path(path))?;
    if trusted.version < floor {
        return Err(Error::invalid(
            signed_path(path),
            format!(
                "trust list version {} is older than version {floor}, already accepted",
                trusted.version
            ),
        ));
    }
    let digest = Digest::of(&body);
    if let Some(pin) = &pin
        && pin.version == trusted.version
        && pin.digest.is_some_and(|pinned| pinned != digest)
    {
        return Err(Error::invalid(
            signed_path(path),
            format!(
                "trust list version {} differs from the version {} accepted before (it hashes \
                 to {digest}, not {}); the trust root signs each version once, so one of the \
                 two was not published by the builder: ask its operator which is current",
                trusted.version,
                pin.version,
                pin.digest.map(|d| d.to_string()).unwrap_or_default()
            ),
        ));
    }
    if pin.as_ref().is_none_or(|pin| pin.version < trusted.version || pin.digest.is_none()) {
        let pinned =
            TrustPin { trust_root: root_text, version: trusted.version, digest: Some(digest) };
        if let Some(parent) = pin_path.parent() {
            fs::create_dir_all(parent).map_err(|source| Error::io(parent, source))?;
        }
        crate::store::write_atomically(
            pin_path,
            &serde_json::to_vec_pretty(&pinned).expect("pin serializes"),
        )?;
    }
    Ok(trusted)
}

/// The root a signed trust list names, read before it is trusted (first use only): the list
/// must then verify under it.
fn first_use_root(path: &Path) -> Result<String, Error> {
    let signed = signed_path(path);
    let bytes = fs::read(&signed).map_err(|source| {
        Error::invalid(
            &signed,
            format!(
                "{source}; verifiers read only the trust list the trust root signed: copy \
                 {} from the builder, or configure the trust root",
                signed.display()
            ),
        )
    })?;
    let envelope: crate::dsse::Envelope = serde_json::from_slice(&bytes)
        .map_err(|error| Error::invalid(&signed, format!("not a signed document: {error}")))?;
    let payload = crate::dsse::decode_base64(&envelope.payload)
        .ok_or_else(|| Error::invalid(&signed, "the payload is not base64"))?;
    let unverified: TrustedKeys = serde_json::from_slice(&payload)
        .map_err(|error| Error::invalid(&signed, format!("not a trusted-keys file: {error}")))?;
    unverified.trust_root.ok_or_else(|| {
        Error::invalid(&signed, "names no trust root; configure the trust root to verify it")
    })
}

/// A directory of build keys: private key files and the trust list.
pub struct KeyDirectory {
    root: PathBuf,
}

impl KeyDirectory {
    pub fn new(root: impl Into<PathBuf>) -> KeyDirectory {
        KeyDirectory { root: root.into() }
    }

    pub fn trusted_keys_path(&self) -> PathBuf {
        self.root.join(TRUSTED_KEYS_FILE)
    }

    pub fn trusted(&self) -> Result<TrustedKeys, Error> {
        let path = self.trusted_keys_path();
        if path.exists() { TrustedKeys::read(&path) } else { Ok(TrustedKeys::default()) }
    }

    pub fn signed_trusted_keys_path(&self) -> PathBuf {
        signed_path(&self.trusted_keys_path())
    }

    /// The trust root's private key; made when the first build key is.
    fn trust_root(&self, create: bool) -> Result<KeyPair, Error> {
        let path = self.root.join(TRUST_ROOT_KEY_FILE);
        if path.exists() {
            return KeyPair::read(&path);
        }
        if !create {
            return Err(Error::Key(format!(
                "the trust root key {} is not here; bring it back (it signs every change to the \
                 trust list) and try again",
                path.display()
            )));
        }
        fs::create_dir_all(&self.root).map_err(|source| Error::io(&self.root, source))?;
        let pair = KeyPair::generate()?;
        pair.write(&path)?;
        Ok(pair)
    }

    /// The trust root's public key (base64), for hosts to pin.
    pub fn trust_root_public(&self) -> Result<String, Error> {
        Ok(self.trust_root(false)?.public_base64())
    }

    /// Writes the next version of the trust list, and its copy signed by the trust root.
    fn save(&self, mut trusted: TrustedKeys, create_root: bool) -> Result<(), Error> {
        let root = self.trust_root(create_root)?;
        trusted.version += 1;
        trusted.trust_root = Some(root.public_base64());
        let mut text = serde_json::to_vec_pretty(&trusted).expect("trust list serializes");
        text.push(b'\n');
        write_signed(&self.trusted_keys_path(), &text, TRUSTED_KEYS_PAYLOAD_TYPE, &root)
    }

    /// Signs another document with the trust root (the team keyring: who may approve).
    pub fn sign_document(
        &self,
        path: &Path,
        bytes: &[u8],
        payload_type: &str,
    ) -> Result<(), Error> {
        write_signed(path, bytes, payload_type, &self.trust_root(false)?)
    }

    /// The trust root's public key, when this directory has one.
    pub fn trust_root_key(&self) -> Result<Option<ed25519_dalek::VerifyingKey>, Error> {
        let path = self.root.join(TRUST_ROOT_KEY_FILE);
        if path.exists() { Ok(Some(KeyPair::read(&path)?.public())) } else { Ok(None) }
    }

    /// Makes the first build key, for the build service ([`service_builder_ids`]). Refuses when
    /// a key is already active: rotate instead.
    pub fn generate(&self, now: Timestamp) -> Result<TrustedKey, Error> {
        self.generate_for(now, &service_builder_ids())
    }

    /// Makes the first build key, bound to `builder_ids` in the signed trust list.
    pub fn generate_for(
        &self,
        now: Timestamp,
        builder_ids: &[String],
    ) -> Result<TrustedKey, Error> {
        if builder_ids.is_empty() {
            return Err(Error::Key("a build key must be bound to at least one builder id".into()));
        }
        crate::store::with_lock(&self.trusted_keys_path(), || {
            self.generate_locked(now, builder_ids)
        })
    }

    fn generate_locked(&self, now: Timestamp, builder_ids: &[String]) -> Result<TrustedKey, Error> {
        let trusted = self.trusted()?;
        if let Some(active) = trusted.active() {
            return Err(Error::Key(format!(
                "build key {} is already active in {}; run `gantry artifact key rotate` to replace it",
                active.keyid,
                self.root.display()
            )));
        }
        self.add_active(trusted, now, builder_ids.to_vec())
    }

    /// Makes a new active key and retires the old one, which keeps verifying what it signed
    /// before it retired. The retired private key is deleted: it never signs again.
    pub fn rotate(&self, now: Timestamp) -> Result<TrustedKey, Error> {
        crate::store::with_lock(&self.trusted_keys_path(), || self.rotate_locked(now))
    }

    fn rotate_locked(&self, now: Timestamp) -> Result<TrustedKey, Error> {
        let mut trusted = self.trusted()?;
        let mut retired = Vec::new();
        // The new key signs for the builders the one it replaces signed for.
        let mut builder_ids = Vec::new();
        for key in &mut trusted.keys {
            if key.status == KeyStatus::Active {
                key.status = KeyStatus::Retired { retired_at: now };
                retired.push(self.root.join(format!("{}.key", key.keyid)));
                builder_ids.extend(key.builder_ids.iter().cloned());
            }
        }
        if builder_ids.is_empty() {
            builder_ids = service_builder_ids();
        }
        builder_ids.sort();
        builder_ids.dedup();
        let active = self.add_active(trusted, now, builder_ids)?;
        for path in retired {
            if path.exists() {
                fs::remove_file(&path).map_err(|source| Error::io(&path, source))?;
            }
        }
        Ok(active)
    }

    fn add_active(
        &self,
        mut trusted: TrustedKeys,
        now: Timestamp,
        builder_ids: Vec<String>,
    ) -> Result<TrustedKey, Error> {
        // The first key of a directory comes with its trust root; later changes need it back.
        let first = trusted.keys.is_empty() && !self.trusted_keys_path().exists();
        self.trust_root(first)?;
        let pair = KeyPair::generate()?;
        pair.write(&self.root.join(format!("{}.key", pair.keyid)))?;
        let key = TrustedKey {
            keyid: pair.keyid.clone(),
            public_key: pair.public_base64(),
            created_at: now,
            status: KeyStatus::Active,
            builder_ids,
        };
        trusted.keys.push(key.clone());
        self.save(trusted, first)?;
        Ok(key)
    }

    /// Revokes a key: nothing it signed verifies from now on. Revoking the active key leaves no
    /// key to build with until one is generated. The private key file is deleted.
    pub fn revoke(
        &self,
        keyid: &str,
        by: &str,
        reason: &str,
        now: Timestamp,
    ) -> Result<TrustedKey, Error> {
        if reason.trim().is_empty() || by.trim().is_empty() {
            return Err(Error::Key("revoking a key needs who revokes it and a reason".into()));
        }
        crate::store::with_lock(&self.trusted_keys_path(), || {
            self.revoke_locked(keyid, by, reason, now)
        })
    }

    fn revoke_locked(
        &self,
        keyid: &str,
        by: &str,
        reason: &str,
        now: Timestamp,
    ) -> Result<TrustedKey, Error> {
        let mut trusted = self.trusted()?;
        let found = trusted.find(keyid).map(|key| key.keyid.clone()).ok_or_else(|| {
            Error::Key(format!("no key {keyid} in {}", self.trusted_keys_path().display()))
        })?;
        let key = trusted.keys.iter_mut().find(|key| key.keyid == found).expect("found above");
        if matches!(key.status, KeyStatus::Revoked { .. }) {
            return Err(Error::Key(format!("key {found} is already revoked")));
        }
        key.status =
            KeyStatus::Revoked { revoked_at: now, revoked_by: by.into(), reason: reason.into() };
        let revoked = key.clone();
        self.save(trusted, false)?;
        let private = self.root.join(format!("{found}.key"));
        if private.exists() {
            fs::remove_file(&private).map_err(|source| Error::io(&private, source))?;
        }
        Ok(revoked)
    }

    /// The active private key, to sign with.
    pub fn active_key(&self) -> Result<KeyPair, Error> {
        let trusted = self.trusted()?;
        let active = trusted.active().ok_or_else(|| {
            Error::Key(format!(
                "no active build key in {}; run `gantry artifact key generate`",
                self.root.display()
            ))
        })?;
        KeyPair::read(&self.root.join(format!("{}.key", active.keyid)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_rotate_revoke() {
        let dir = tempfile::tempdir().unwrap();
        let keys = KeyDirectory::new(dir.path());
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let first = keys.generate(t0).unwrap();
        assert!(
            matches!(keys.generate(t0), Err(Error::Key(message)) if message.contains("rotate"))
        );
        assert_eq!(keys.active_key().unwrap().keyid, first.keyid);

        let second = keys.rotate(t0).unwrap();
        assert!(
            !dir.path().join(format!("{}.key", first.keyid)).exists(),
            "retired keys sign nothing"
        );
        let trusted = keys.trusted().unwrap();
        let statuses: Vec<_> =
            trusted.keys.iter().map(|k| (k.keyid.clone(), k.status.clone())).collect();
        assert_eq!(
            statuses,
            vec![
                (first.keyid.clone(), KeyStatus::Retired { retired_at: t0 }),
                (second.keyid.clone(), KeyStatus::Active)
            ]
        );

        keys.revoke(&first.keyid[..12], "sec", "leaked", t0).unwrap();
        assert!(!dir.path().join(format!("{}.key", first.keyid)).exists());
        assert!(keys.revoke(&first.keyid, "sec", "again", t0).is_err());
        assert!(keys.revoke(&second.keyid, "sec", " ", t0).is_err());
        assert_eq!(keys.active_key().unwrap().keyid, second.keyid);
    }

    #[test]
    fn hosts_pinning_the_trust_root_read_only_signed_trust_lists() {
        let dir = tempfile::tempdir().unwrap();
        let keys = KeyDirectory::new(dir.path());
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        keys.generate(t0).unwrap();
        keys.rotate(t0).unwrap();
        let root = parse_public_key(&keys.trust_root_public().unwrap()).unwrap();
        let signed = keys.signed_trusted_keys_path();
        let read = |at_least| {
            TrustedKeys::read_signed(&keys.trusted_keys_path(), &root, at_least)
                .map(|t| (t.version, t.keys.len()))
        };
        assert_eq!(read(0).unwrap(), (2, 2));

        // Someone who can write the files but has no trust root adds a key of their own.
        let plain = std::fs::read(keys.trusted_keys_path()).unwrap();
        let mut forged = keys.trusted().unwrap();
        forged.keys.push(TrustedKey { keyid: "x".into(), ..forged.keys[0].clone() });
        std::fs::write(keys.trusted_keys_path(), serde_json::to_vec(&forged).unwrap()).unwrap();
        assert_eq!(read(0).unwrap(), (2, 2), "the plain copy is not what pinned hosts read");
        let stranger = KeyPair::from_seed([9; 32]);
        let resigned = crate::dsse::Envelope::sign(
            TRUSTED_KEYS_PAYLOAD_TYPE,
            &serde_json::to_vec(&forged).unwrap(),
            "k",
            &stranger.signing,
        );
        let honest = std::fs::read(&signed).unwrap();
        std::fs::write(&signed, serde_json::to_vec(&resigned).unwrap()).unwrap();
        assert!(read(0).unwrap_err().to_string().contains("not signed by the pinned trust root"));
        std::fs::write(&signed, honest).unwrap();
        std::fs::write(keys.trusted_keys_path(), plain).unwrap();

        // A host that accepted version 3 refuses version 2: a revocation cannot be rolled back.
        assert!(read(3).unwrap_err().to_string().contains("older than version 3"));

        // Without the trust root at hand, the trust list cannot change.
        std::fs::rename(dir.path().join(TRUST_ROOT_KEY_FILE), dir.path().join("offline.key"))
            .unwrap();
        assert!(keys.rotate(t0).unwrap_err().to_string().contains("bring it back"));
        assert_eq!(
            std::fs::read_dir(dir.path())
                .unwrap()
                .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "key"))
                .count(),
            2,
            "no stray key left behind"
        );
    }

    #[test]
    fn key_files_round_trip_and_refuse_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        let pair = KeyPair::from_seed([7; 32]);
        pair.write(&path).unwrap();
        assert_eq!(KeyPair::read(&path).unwrap().keyid, pair.keyid);
        assert!(pair.write(&path).is_err());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let error = KeyPair::read(&path).err().unwrap().to_string();
        assert!(error.contains("chmod 600"), "{error}");
    }
}
