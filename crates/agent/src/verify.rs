//! Verification on the box, before anything runs: the package's digest is the one commanded,
//! and the supply chain's checks pass — signature by a trusted build key, signer status, digest
//! against the signed provenance, policy (trusted builder, allowed repository, hermetic build,
//! reviews) and content blocks — all against a trust root configured when the agent was set up,
//! never learned from the controller.
//!
//! The checks themselves are `gantry_supply::verify`'s; this module only gathers the box's trust
//! configuration and refuses with the failing check named.

use std::path::{Path, PathBuf};

use gantry_model::Digest;
use gantry_supply::blocks::BlockList;
use gantry_supply::keys::TrustedKeys;
use gantry_supply::review::{Keyring, ReviewBook};
use gantry_supply::store::StoredArtifact;
use gantry_supply::verify::{self, Inputs, Policy};
use serde::{Deserialize, Serialize};

use crate::Error;

/// The most bytes of a trust configuration file; a few hundred is normal.
pub const MAX_TRUST_CONFIG_BYTES: u64 = 64 * 1024;

/// An artifact as downloaded: the package and the two documents that vouch for it.
#[derive(Clone, Debug)]
pub struct Artifact {
    /// The tar + zstd package.
    pub package: Vec<u8>,
    /// The DSSE envelope with the signed in-toto statement.
    pub attestation: Vec<u8>,
    /// The manifest the provenance names by digest (commits, reviewers, dependencies).
    pub manifest: Vec<u8>,
}

/// `trust.json` in the agent's configuration directory: what the box trusts. Paths are relative
/// to the file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustConfig {
    /// The build keys' trust list (`trusted-keys.json`, as `gantry artifact key` writes it).
    pub trusted_keys: PathBuf,
    /// The trust root's public key (base64 ed25519). When set, the trust list must carry the
    /// root's signature (`trusted-keys.json.signed`).
    #[serde(default)]
    pub trust_root_key: Option<String>,
    /// Builder identities allowed to produce what runs here.
    pub builder_ids: Vec<String>,
    /// Repositories artifacts may come from; any when empty.
    #[serde(default)]
    pub repositories: Vec<String>,
    /// Refuse artifacts built with network access.
    #[serde(default = "yes")]
    pub require_hermetic: bool,
    /// Every commit needs an approval by someone other than its authors.
    #[serde(default = "yes")]
    pub review_required: bool,
    /// The content block list (`blocks.json`); none when absent.
    #[serde(default)]
    pub block_list: Option<PathBuf>,
    /// Configured trusted bases (commit ids, or `root`): an artifact's commit range must start
    /// at one of them (see `gantry_supply::verify::Policy::trusted_bases`).
    #[serde(default)]
    pub trusted_bases: Vec<String>,
}

fn yes() -> bool {
    true
}

/// What the box trusts, loaded once at start.
pub struct TrustRoot {
    trusted: TrustedKeys,
    builder_ids: Vec<String>,
    repositories: Vec<String>,
    require_hermetic: bool,
    review_required: bool,
    blocks: BlockList,
    trusted_bases: Vec<String>,
}

impl TrustRoot {
    /// A trust root from its parts (tests, and agents configured in code).
    pub fn new(trusted: TrustedKeys, builder_ids: Vec<String>, blocks: BlockList) -> TrustRoot {
        TrustRoot {
            trusted,
            builder_ids,
            repositories: Vec::new(),
            require_hermetic: true,
            review_required: true,
            blocks,
            trusted_bases: Vec::new(),
        }
    }

    /// The trusted bases commit ranges may start at.
    pub fn with_trusted_bases(mut self, bases: Vec<String>) -> TrustRoot {
        self.trusted_bases = bases;
        self
    }

    /// Whether commits need reviews (on by default).
    pub fn with_review_required(mut self, required: bool) -> TrustRoot {
        self.review_required = required;
        self
    }

    /// Reads `trust.json` and what it names.
    pub fn load(path: &Path) -> Result<TrustRoot, Error> {
        let size = std::fs::metadata(path).map_err(|e| Error::io(path, e))?.len();
        if size > MAX_TRUST_CONFIG_BYTES {
            return Err(Error::Invalid(format!(
                "{}: {size} bytes, more than the limit of {MAX_TRUST_CONFIG_BYTES}",
                path.display()
            )));
        }
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let config: TrustConfig = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let keys_path = base.join(&config.trusted_keys);
        let supply = |error: gantry_supply::Error| Error::Invalid(error.to_string());
        let trusted = match &config.trust_root_key {
            Some(root) => {
                let root = gantry_supply::keys::parse_public_key(root).ok_or_else(|| {
                    Error::Invalid(format!(
                        "{}: trust_root_key is not a base64 ed25519 public key",
                        path.display()
                    ))
                })?;
                TrustedKeys::read_signed(&keys_path, &root, 0).map_err(supply)?
            }
            None => TrustedKeys::read(&keys_path).map_err(supply)?,
        };
        if config.builder_ids.is_empty() {
            return Err(Error::Invalid(format!(
                "{}: builder_ids is empty, so no artifact could run here; name the trusted builders",
                path.display()
            )));
        }
        let blocks = match &config.block_list {
            Some(list) => BlockList::open(&base.join(list)).map_err(supply)?,
            None => BlockList::default(),
        };
        Ok(TrustRoot {
            trusted,
            builder_ids: config.builder_ids,
            repositories: config.repositories,
            require_hermetic: config.require_hermetic,
            review_required: config.review_required,
            blocks,
            trusted_bases: config.trusted_bases,
        })
    }

    /// Verifies `artifact` as the commanded `digest` for `pipeline`. Returns the manifest's
    /// service name (CodeDeploy's `APPLICATION_NAME`) when it passes.
    pub fn verify(
        &self,
        digest: &Digest,
        pipeline: &str,
        artifact: &Artifact,
    ) -> Result<String, Error> {
        self.verify_with_history(digest, pipeline, artifact, &[])
    }

    /// [`TrustRoot::verify`], with the artifacts this box already verified and keeps: an
    /// artifact's commit range may start at one of them (the one it follows).
    pub fn verify_with_history(
        &self,
        digest: &Digest,
        pipeline: &str,
        artifact: &Artifact,
        history: &[StoredArtifact],
    ) -> Result<String, Error> {
        let actual = Digest::of(&artifact.package);
        if actual != *digest {
            return Err(Error::Refused(format!(
                "digest check failed: the package downloaded for {digest} hashes to {actual}; it was altered in transit or at rest"
            )));
        }
        #[allow(
            clippy::needless_update,
            reason = "policy fields the supply chain adds take their defaults here"
        )]
        let policy = Policy {
            builder_ids: self.builder_ids.clone(),
            repositories: self.repositories.clone(),
            require_hermetic: self.require_hermetic,
            pipeline: Some(pipeline.to_string()),
            review_required: self.review_required,
            trusted_bases: self.trusted_bases.clone(),
            ..Policy::default()
        };
        // Approvals travel inside the signed manifest; the box keeps no review book of its own.
        let reviews = ReviewBook::in_memory(Keyring::default());
        let inputs = Inputs {
            package_digest: actual,
            envelope: &artifact.attestation,
            manifest: Some(&artifact.manifest),
            trusted: &self.trusted,
            blocks: Some(&self.blocks),
            reviews: &reviews,
            history,
            bases: &[],
        };
        let verified = verify::verify(&inputs, &policy)
            .map_err(|failure| Error::Refused(format!("{digest}: {failure}")))?;
        let service = verified
            .manifest
            .map(|m| m.service)
            .ok_or_else(|| Error::Refused(format!("{digest}: the manifest is missing")))?;
        Ok(service)
    }
}
