//! Verification on the box, before anything runs: the package's digest is the one commanded,
//! and the supply chain's checks pass — signature by a trusted build key, signer status, digest
//! against the signed provenance, policy (trusted builder, allowed repository, hermetic build,
//! reviews) and content blocks — all against a trust root configured when the agent was set up,
//! never learned from the controller.
//!
//! The checks themselves are `gantry_supply::verify`'s; this module only gathers the box's trust
//! configuration and refuses with the failing check named. Trust fails closed: the trust list is
//! read only from its copy signed by the configured root and pinned in the agent's own directory
//! (a version floor and a digest), and the block list is the root-signed published list, fresh
//! and pinned too, re-read before every artifact; a list edited, replayed, unsigned or stale
//! refuses the artifact before anything of it is unpacked.
//!
//! The two signed lists come from files named in `trust.json`, or — with
//! `lists_from_controller` — from the controller before every artifact, kept in the agent's
//! state directory. Either way only the trust root configured on the box (and the pins kept
//! beside it) decide whether they count: the controller serves the lists, never the trust.

use std::path::{Path, PathBuf};

use gantry_model::Digest;
use gantry_supply::blocks::BlockList;
use gantry_supply::keys::{TRUST_PIN_FILE, TrustedKeys};
use gantry_supply::published_blocks::{BLOCKS_PIN_FILE, PublishedBlocks};
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
    /// The build keys' trust list (`trusted-keys.json`, as `gantry artifact key` writes it);
    /// only its copy signed by the trust root (`trusted-keys.json.dsse`) is read. Absent with
    /// `lists_from_controller`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trusted_keys: Option<PathBuf>,
    /// The trust root's public key (base64 ed25519, `gantry artifact key root`), required: the
    /// box's trust is configured here, never learned from the controller or the list itself.
    pub trust_root_key: String,
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
    /// The published content block list (`gantry block publish`): only its copy signed by the
    /// trust root (`<path>.dsse`) is read, and a stale one refuses everything. Absent with
    /// `lists_from_controller`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_list: Option<PathBuf>,
    /// Fetch the trust list and the block list from the controller before every artifact
    /// instead of reading files; they are verified with `trust_root_key` all the same.
    #[serde(default)]
    pub lists_from_controller: bool,
    /// Configured trusted bases (commit ids, or `root`): an artifact's commit range must start
    /// at one of them (see `gantry_supply::verify::Policy::trusted_bases`).
    #[serde(default)]
    pub trusted_bases: Vec<String>,
}

fn yes() -> bool {
    true
}

fn missing(path: &Path, field: &str) -> Error {
    Error::Invalid(format!(
        "{}: {field} is required (or set lists_from_controller to fetch the signed lists from          the controller)",
        path.display()
    ))
}

/// Where the trusted keys and the blocks come from.
enum Lists {
    /// Given in code by a caller that vouches for them ([`TrustRoot::insecure_unpinned`]).
    Given { trusted: TrustedKeys, blocks: BlockList },
    /// Read from `trust.json`'s signed files before every artifact, pinned in `state_dir`.
    Pinned { keys_path: PathBuf, root_text: String, blocks_path: PathBuf, state_dir: PathBuf },
}

/// Where a box that takes its lists from the controller keeps the copies it fetched, under
/// its state directory.
pub const FETCHED_LISTS_DIR: &str = "controller-lists";

/// What the box trusts: the policy, loaded once at start, and the signed lists.
pub struct TrustRoot {
    lists: Lists,
    /// The lists are fetched from the controller into the `Pinned` paths.
    from_controller: bool,
    builder_ids: Vec<String>,
    repositories: Vec<String>,
    require_hermetic: bool,
    review_required: bool,
    trusted_bases: Vec<String>,
}

impl TrustRoot {
    /// INSECURE: a trust root from lists the caller vouches for, with no signature, pin or
    /// freshness checked — for tests of the policy checks only. A box loads its trust with
    /// [`TrustRoot::load`], which is what `gantry agent` does; nothing in production calls this.
    pub fn insecure_unpinned(
        trusted: TrustedKeys,
        builder_ids: Vec<String>,
        blocks: BlockList,
    ) -> TrustRoot {
        TrustRoot {
            lists: Lists::Given { trusted, blocks },
            from_controller: false,
            builder_ids,
            repositories: Vec::new(),
            require_hermetic: true,
            review_required: true,
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

    /// Reads `trust.json` and checks the trust list it names verifies under its root; the
    /// pins (`trust-pin.json`, `blocks-pin.json`) are kept in the agent's own `state_dir`.
    pub fn load(path: &Path, state_dir: &Path) -> Result<TrustRoot, Error> {
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
        let fetched = state_dir.join(FETCHED_LISTS_DIR);
        let (keys_path, blocks_path) = match (
            config.lists_from_controller,
            &config.trusted_keys,
            &config.block_list,
        ) {
            (false, Some(keys), Some(blocks)) => (base.join(keys), base.join(blocks)),
            (true, None, None) => (fetched.join("trusted-keys.json"), fetched.join("blocks.json")),
            (false, None, _) => return Err(missing(path, "trusted_keys")),
            (false, _, None) => return Err(missing(path, "block_list")),
            (true, _, _) => {
                return Err(Error::Invalid(format!(
                    "{}: lists_from_controller fetches the trust list and the block list;                          remove trusted_keys and block_list",
                    path.display()
                )));
            }
        };
        gantry_supply::keys::parse_public_key(&config.trust_root_key).ok_or_else(|| {
            Error::Invalid(format!(
                "{}: trust_root_key is not a base64 ed25519 public key (print it with `gantry \
                 artifact key root` where the trust root is kept)",
                path.display()
            ))
        })?;
        if config.builder_ids.is_empty() {
            return Err(Error::Invalid(format!(
                "{}: builder_ids is empty, so no artifact could run here; name the trusted builders",
                path.display()
            )));
        }
        let root = TrustRoot {
            lists: Lists::Pinned {
                keys_path,
                root_text: config.trust_root_key,
                blocks_path,
                state_dir: state_dir.to_path_buf(),
            },
            from_controller: config.lists_from_controller,
            builder_ids: config.builder_ids,
            repositories: config.repositories,
            require_hermetic: config.require_hermetic,
            review_required: config.review_required,
            trusted_bases: config.trusted_bases,
        };
        // A box whose trust list does not verify is misconfigured: say so at start (a list
        // fetched from the controller is checked when it arrives).
        if let (Lists::Pinned { keys_path, root_text, state_dir, .. }, false) =
            (&root.lists, root.from_controller)
        {
            gantry_supply::keys::read_pinned(
                keys_path,
                &state_dir.join(TRUST_PIN_FILE),
                Some(root_text),
                0,
            )
            .map_err(|error| Error::Invalid(format!("{}: {error}", path.display())))?;
        }
        Ok(root)
    }

    /// Whether the box fetches its signed lists from the controller ([`TrustRoot::store_fetched`]).
    pub fn lists_from_controller(&self) -> bool {
        self.from_controller
    }

    /// Keeps the signed lists just fetched from the controller (DSSE envelopes) where the next
    /// verification reads them. Nothing is trusted here: each is checked against the box's own
    /// root and pins when an artifact is verified, so a forged, replayed or stale copy refuses
    /// the artifact.
    pub fn store_fetched(&self, trust_list: &[u8], block_list: &[u8]) -> Result<(), Error> {
        let Lists::Pinned { keys_path, blocks_path, .. } = &self.lists else {
            return Ok(());
        };
        if !self.from_controller {
            return Ok(());
        }
        for (path, bytes) in [(keys_path, trust_list), (blocks_path, block_list)] {
            let signed = gantry_supply::keys::signed_path(path);
            if let Some(parent) = signed.parent() {
                std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
            }
            gantry_supply::store::write_atomically(&signed, bytes)
                .map_err(|error| Error::Invalid(error.to_string()))?;
        }
        Ok(())
    }

    /// The trusted keys and the blocks in force now: for a loaded root, the signed lists read
    /// and pinned afresh, so a list edited, replayed, unsigned or stale refuses the artifact.
    fn lists(&self, digest: &Digest) -> Result<(TrustedKeys, BlockList), Error> {
        match &self.lists {
            Lists::Given { trusted, blocks } => Ok((trusted.clone(), blocks.clone())),
            Lists::Pinned { keys_path, root_text, blocks_path, state_dir } => {
                let refused = |check: &str, error: String| {
                    Error::Refused(format!("{digest}: {check} check failed: {error}"))
                };
                let root = gantry_supply::keys::parse_public_key(root_text)
                    .ok_or_else(|| refused("trust root", format!("{root_text:?} is not a key")))?;
                let trusted = gantry_supply::keys::read_pinned(
                    keys_path,
                    &state_dir.join(TRUST_PIN_FILE),
                    Some(root_text),
                    0,
                )
                .map_err(|error| refused("trust list", error.to_string()))?;
                let signed = gantry_supply::keys::signed_path(blocks_path);
                if !signed.exists() {
                    return Err(refused(
                        "block list",
                        format!(
                            "{} is missing: the box reads only the block list its trust root \
                             signed (`gantry block publish`), never the readable copy",
                            signed.display()
                        ),
                    ));
                }
                let blocks = PublishedBlocks::read_pinned(
                    blocks_path,
                    &root,
                    jiff::Timestamp::now(),
                    &state_dir.join(BLOCKS_PIN_FILE),
                )
                .map_err(|error| refused("block list", error.to_string()))?;
                Ok((trusted, blocks.into_list()))
            }
        }
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
        let (trusted, blocks) = self.lists(digest)?;
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
            trusted: &trusted,
            blocks: Some(&blocks),
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
