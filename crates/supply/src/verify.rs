//! Verification of an artifact against its attestation, in four named checks:
//!
//! 1. **signature**: the DSSE envelope parses and a trusted key's signature verifies over its
//!    PAE; the statement is then read from the verified bytes only.
//! 2. **signer**: the key that verified is not revoked, is the key the envelope names, and if
//!    retired, retired after the build finished.
//! 3. **digest**: the package's sha256 is a subject of the statement, and the manifest's sha256
//!    is the one the provenance lists as a byproduct.
//! 4. **policy**: in-toto Statement v1 with SLSA Provenance v1, a trusted builder and build type,
//!    a hermetic build from an allowed repository, and no blocker: no unreviewed commit, no
//!    blocked commit or package.
//!
//! The first failing check is reported as a [`Failure`] naming it. Signature checks come first
//! so that nothing is read from an unauthenticated statement.

use std::fmt;

use serde::Serialize;

use crate::Digest;
use crate::artifact::{Authorship, Manifest};
use crate::attestation::{
    BUILD_TYPE, DEFAULT_BUILDER_ID, SLSA_PROVENANCE_V1, STATEMENT_TYPE, Statement,
};
use crate::blocks::{BlockList, Blocker, Context, blockers};
use crate::build::TRUSTED_BASE_ROOT;
use crate::dsse::{Envelope, Unverified};
use crate::keys::{KeyStatus, TrustedKey, TrustedKeys};
use crate::review::ReviewBook;
use crate::source::normalize_repository;
use crate::store::StoredArtifact;

/// The four checks, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    Signature,
    Signer,
    Digest,
    Policy,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Check::Signature => "signature",
            Check::Signer => "signer",
            Check::Digest => "digest",
            Check::Policy => "policy",
        })
    }
}

/// Which check failed, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Failure {
    pub check: Check,
    pub detail: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} check failed: {}", self.check, self.detail)
    }
}

fn fail<T>(check: Check, detail: impl Into<String>) -> Result<T, Failure> {
    Err(Failure { check, detail: detail.into() })
}

/// What an artifact must satisfy beyond its signature.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Builder ids trusted to produce artifacts.
    pub builder_ids: Vec<String>,
    /// Repositories artifacts may come from; any when empty.
    pub repositories: Vec<String>,
    /// The pipeline's mainline branch: artifacts built from any other branch are refused. Any
    /// branch when `None` (which production policy should not leave open).
    pub branch: Option<String>,
    /// Refuse artifacts built with network access.
    pub require_hermetic: bool,
    /// The pipeline the artifact is checked for: scopes content blocks, and must match the
    /// provenance's pipeline when set.
    pub pipeline: Option<String>,
    /// Every commit needs an approval by someone other than its authors.
    pub review_required: bool,
    /// Configured trusted bases (full commit ids, or [`TRUSTED_BASE_ROOT`]): a first
    /// artifact's range may start after one of these. Any other range must start at an artifact this verifier holds (and so
    /// verified itself), so its commit list can be checked from provenance alone.
    pub trusted_bases: Vec<String>,
    /// Refuse any commit whose author is not authenticated (no SSH signature by a keyring key,
    /// no verified forge pull request), however many approvals it has: production pipelines
    /// that say so.
    pub require_authenticated_authors: bool,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            builder_ids: vec![DEFAULT_BUILDER_ID.to_string()],
            repositories: Vec::new(),
            branch: None,
            require_hermetic: true,
            pipeline: None,
            review_required: true,
            trusted_bases: Vec::new(),
            require_authenticated_authors: false,
        }
    }
}

/// What verification looks at.
pub struct Inputs<'a> {
    /// The package's digest, as computed from its bytes by the caller.
    pub package_digest: Digest,
    /// The DSSE envelope's bytes, as received.
    pub envelope: &'a [u8],
    /// The manifest's bytes, when at hand; the policy's review and package checks need it.
    pub manifest: Option<&'a [u8]>,
    pub trusted: &'a TrustedKeys,
    pub blocks: Option<&'a BlockList>,
    /// Approvals recorded since the build, beyond the manifest's record.
    pub reviews: &'a ReviewBook,
    /// The stored artifacts, so a commit blocked in a predecessor blocks this one too; empty
    /// where only this artifact is at hand.
    pub history: &'a [StoredArtifact],
    /// Artifacts this verifier verified before, for a host that keeps no store: a commit range
    /// may start at one of them.
    pub bases: &'a [VerifiedBase],
}

/// What a host keeps of an artifact it verified, so the next artifact's commit range may start
/// there: enough to match the provenance's base.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct VerifiedBase {
    pub digest: Digest,
    pub pipeline: String,
    pub repository: String,
    pub branch: String,
    pub commit: String,
}

impl VerifiedBase {
    /// The record of a verified artifact, from its (verified) manifest.
    pub fn of(manifest: &Manifest) -> VerifiedBase {
        VerifiedBase {
            digest: manifest.package.digest,
            pipeline: manifest.pipeline.clone(),
            repository: manifest.source.repository.clone(),
            branch: manifest.source.branch.clone(),
            commit: manifest.source.commit.clone(),
        }
    }
}

/// A verified artifact.
#[derive(Clone, Debug)]
pub struct Verified {
    pub statement: Statement,
    pub signer: TrustedKey,
    pub manifest: Option<Manifest>,
}

/// Runs the four checks.
pub fn verify(inputs: &Inputs, policy: &Policy) -> Result<Verified, Failure> {
    let (statement, signer) = verify_envelope(inputs.envelope, inputs.trusted)?;

    let subjects: Vec<&str> = statement
        .subject
        .iter()
        .filter_map(|s| s.digest.get("sha256").map(String::as_str))
        .collect();
    if !subjects.contains(&inputs.package_digest.hex().as_str()) {
        return fail(
            Check::Digest,
            format!(
                "the package hashes to {} but the signed statement names {}; the package was altered or is not the one attested",
                inputs.package_digest,
                subjects.iter().map(|s| format!("sha256:{s}")).collect::<Vec<_>>().join(", ")
            ),
        );
    }
    let manifest = match inputs.manifest {
        None => None,
        Some(bytes) => {
            let actual = Digest::of(bytes);
            let signed = statement
                .predicate
                .run_details
                .byproducts
                .iter()
                .find(|b| b.name.as_deref() == Some(crate::store::MANIFEST_FILE))
                .and_then(|b| b.digest.get("sha256"));
            if signed != Some(&actual.hex()) {
                return fail(
                    Check::Digest,
                    format!(
                        "manifest.json hashes to {actual}, which the signed provenance does not list; the manifest was altered"
                    ),
                );
            }
            let manifest: Manifest = serde_json::from_slice(bytes).or_else(|error| {
                fail(Check::Policy, format!("manifest.json is not a Gantry manifest: {error}"))
            })?;
            if manifest.package.digest != inputs.package_digest {
                return fail(
                    Check::Digest,
                    format!(
                        "the manifest describes package {}, not this one",
                        manifest.package.digest
                    ),
                );
            }
            Some(manifest)
        }
    };

    check_policy(&statement, manifest.as_ref(), inputs, policy)?;
    let builder = &statement.predicate.run_details.builder.id;
    if !signer.may_sign_for(builder) {
        return fail(
            Check::Signer,
            format!(
                "key {} may not sign for builder {builder}: the trust list binds it to {}",
                &signer.keyid[..signer.keyid.len().min(16)],
                if signer.builder_ids.is_empty() {
                    "no builder".to_string()
                } else {
                    signer.builder_ids.join(", ")
                }
            ),
        );
    }
    Ok(Verified { statement, signer, manifest })
}

/// The signature and signer checks: returns the statement parsed from the verified payload.
pub fn verify_envelope(
    bytes: &[u8],
    trusted: &TrustedKeys,
) -> Result<(Statement, TrustedKey), Failure> {
    let envelope: Envelope = serde_json::from_slice(bytes).or_else(|error| {
        fail(Check::Signature, format!("the attestation is not a valid DSSE envelope: {error}"))
    })?;
    let candidates = trusted.candidates();
    if candidates.is_empty() {
        return fail(
            Check::Signer,
            "no trusted keys are configured; copy the builder's trusted-keys.json here",
        );
    }
    let verified =
        envelope.verify(candidates.iter().map(|(key, public)| (key.keyid.as_str(), public)));
    let (body, index) = match verified {
        Ok(found) => found,
        Err(Unverified::Malformed(field)) => {
            return fail(Check::Signature, format!("the envelope's {field} is not base64"));
        }
        Err(Unverified::Unsigned) => {
            return fail(Check::Signature, "the envelope carries no signature");
        }
        Err(Unverified::BadSignature(keys)) => {
            return fail(
                Check::Signature,
                format!(
                    "the signature does not verify under key {}: the statement or its signature was altered",
                    keys.join(", ")
                ),
            );
        }
        Err(Unverified::UnknownSigner(keys)) => {
            return fail(
                Check::Signer,
                format!("signed by key {}, which is not a trusted build key", keys.join(", ")),
            );
        }
    };
    let signer = candidates[index].0.clone();
    if let KeyStatus::Revoked { revoked_at, revoked_by, reason } = &signer.status {
        return fail(
            Check::Signer,
            format!(
                "signed by key {}, revoked at {revoked_at} by {revoked_by}: {reason}; rebuild with the active key",
                &signer.keyid[..16]
            ),
        );
    }
    let names_signer =
        envelope.signatures.iter().any(|s| s.keyid.is_empty() || s.keyid == signer.keyid);
    if !names_signer {
        return fail(
            Check::Signer,
            format!(
                "the envelope names key {} but key {} signed it; the envelope was altered",
                envelope.signatures[0].keyid, signer.keyid
            ),
        );
    }
    if envelope.payload_type != crate::dsse::IN_TOTO_PAYLOAD_TYPE {
        return fail(
            Check::Policy,
            format!(
                "payload type {} is not {}",
                envelope.payload_type,
                crate::dsse::IN_TOTO_PAYLOAD_TYPE
            ),
        );
    }
    let statement: Statement = serde_json::from_slice(&body).or_else(|error| {
        fail(
            Check::Policy,
            format!("the signed payload is not an in-toto statement with SLSA provenance: {error}"),
        )
    })?;
    if let KeyStatus::Retired { retired_at } = &signer.status {
        let finished =
            statement.predicate.run_details.metadata.as_ref().and_then(|m| m.finished_on);
        if finished.is_none_or(|finished| finished > *retired_at) {
            return fail(
                Check::Signer,
                format!(
                    "signed by key {}, which retired at {retired_at}, for a build that finished after it (or at an unknown time)",
                    &signer.keyid[..16]
                ),
            );
        }
    }
    Ok((statement, signer))
}

fn check_policy(
    statement: &Statement,
    manifest: Option<&Manifest>,
    inputs: &Inputs,
    policy: &Policy,
) -> Result<(), Failure> {
    if statement.statement_type != STATEMENT_TYPE {
        return fail(
            Check::Policy,
            format!("statement type {} is not {STATEMENT_TYPE}", statement.statement_type),
        );
    }
    if statement.predicate_type != SLSA_PROVENANCE_V1 {
        return fail(
            Check::Policy,
            format!("predicate type {} is not {SLSA_PROVENANCE_V1}", statement.predicate_type),
        );
    }
    let definition = &statement.predicate.build_definition;
    if definition.build_type != BUILD_TYPE {
        return fail(
            Check::Policy,
            format!("build type {} is not {BUILD_TYPE}", definition.build_type),
        );
    }
    let builder = &statement.predicate.run_details.builder.id;
    if !policy.builder_ids.contains(builder) {
        return fail(
            Check::Policy,
            format!(
                "builder {builder} is not trusted (trusted: {})",
                policy.builder_ids.join(", ")
            ),
        );
    }
    let parameters = &definition.external_parameters;
    if policy.require_hermetic && parameters["build"]["network"] != serde_json::Value::Bool(false) {
        return fail(
            Check::Policy,
            "the build ran with network access; policy requires hermetic builds",
        );
    }
    let repository = parameters["source"]["repository"].as_str().unwrap_or("");
    if !policy.repositories.is_empty()
        && !policy
            .repositories
            .iter()
            .any(|allowed| normalize_repository(allowed) == normalize_repository(repository))
    {
        return fail(Check::Policy, format!("source repository {repository} is not allowed"));
    }
    let reference = parameters["source"]["ref"].as_str().unwrap_or("");
    if let Some(branch) = &policy.branch
        && reference != format!("refs/heads/{branch}")
    {
        return fail(
            Check::Policy,
            format!(
                "the artifact was built from {reference}, not the mainline refs/heads/{branch}"
            ),
        );
    }
    let pipeline = parameters["pipeline"].as_str().unwrap_or("");
    if let Some(wanted) = &policy.pipeline
        && wanted != pipeline
    {
        return fail(
            Check::Policy,
            format!("the artifact was built for pipeline {pipeline}, not {wanted}"),
        );
    }
    let Some(manifest) = manifest else {
        if policy.review_required || inputs.blocks.is_some() {
            return fail(
                Check::Policy,
                "the manifest is needed to check reviews and content blocks; pass it with --manifest",
            );
        }
        return Ok(());
    };
    if policy.require_authenticated_authors
        && let Some(record) =
            manifest.commits.iter().find(|r| r.authorship == Authorship::Unauthenticated)
    {
        return fail(
            Check::Policy,
            format!(
                "the author of commit {} (\"{}\") is not authenticated: it carries no SSH \
                 signature by a keyring key and no verified forge pull request names its author, \
                 and this pipeline refuses such commits",
                record.commit.short_id(),
                record.commit.subject
            ),
        );
    }
    let empty = BlockList::default();
    let context = Context {
        pipeline: policy.pipeline.as_deref().unwrap_or(pipeline),
        list: inputs.blocks.unwrap_or(&empty),
        reviews: policy.review_required.then_some(inputs.reviews),
        history: inputs.history,
    };
    let found: Vec<Blocker> = blockers(manifest, &context);
    if !found.is_empty() {
        let listed: Vec<String> = found.iter().map(Blocker::to_string).collect();
        return fail(Check::Policy, format!("the artifact is blocked: {}", listed.join(" | ")));
    }
    check_base(manifest, inputs, policy)
}

/// The range check: the commits the provenance lists are those after its base, so the base must
/// be one this verifier trusts — an artifact of the same pipeline and source it holds, or a
/// configured trusted base.
fn check_base(manifest: &Manifest, inputs: &Inputs, policy: &Policy) -> Result<(), Failure> {
    let source = &manifest.source;
    let Some(baseline) = &source.baseline else {
        if policy.trusted_bases.iter().any(|trusted| trusted == TRUSTED_BASE_ROOT) {
            return Ok(());
        }
        return fail(
            Check::Policy,
            format!(
                "the commit range starts at the start of history, which is not a configured \
                 trusted base (--trusted-base {TRUSTED_BASE_ROOT})"
            ),
        );
    };
    match source.base_artifact {
        Some(digest) => {
            // A stored artifact is a base only if a builder this policy trusts built it: the
            // store also keeps artifacts that never passed verification (hand-run builds,
            // whose range started wherever their caller said).
            let stored = inputs.history.iter().find(|a| a.digest == digest);
            if let Some(stored) = stored
                && !policy.builder_ids.contains(&stored.manifest.builder.id)
            {
                return fail(
                    Check::Policy,
                    format!(
                        "the commit range starts at artifact {digest}, built by {}, which this \
                         policy does not trust; its commit list proves nothing",
                        stored.manifest.builder.id
                    ),
                );
            }
            let held = stored
                .map(|a| VerifiedBase::of(&a.manifest))
                .or_else(|| inputs.bases.iter().find(|b| b.digest == digest).cloned());
            match held {
                Some(base)
                    if base.pipeline == manifest.pipeline
                        && normalize_repository(&base.repository)
                            == normalize_repository(&source.repository)
                        && base.branch == source.branch
                        && base.commit == *baseline =>
                {
                    Ok(())
                }
                Some(_) => fail(
                    Check::Policy,
                    format!(
                        "the base artifact {digest} was built for another pipeline, source or \
                         commit than the provenance says"
                    ),
                ),
                None => fail(
                    Check::Policy,
                    format!(
                        "the commit range starts at artifact {digest}, which this verifier has \
                         not verified; verify (and keep) that artifact first, or configure its \
                         commit {} as a trusted base",
                        &baseline[..baseline.len().min(12)]
                    ),
                ),
            }
        }
        None if policy.trusted_bases.iter().any(|trusted| trusted == baseline) => Ok(()),
        None => fail(
            Check::Policy,
            format!(
                "the commit range starts at {baseline}, which is not a configured trusted base \
                 (--trusted-base)"
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attestation::tests::sample_manifest;
    use crate::attestation::{sign, statement};
    use crate::keys::{KeyPair, KeyStatus, TrustedKey};

    fn trusted(key: &KeyPair, status: KeyStatus) -> TrustedKeys {
        TrustedKeys {
            version: 1,
            keys: vec![TrustedKey {
                keyid: key.keyid.clone(),
                public_key: key.public_base64(),
                created_at: "2026-01-01T00:00:00Z".parse().unwrap(),
                status,
                builder_ids: crate::keys::service_builder_ids(),
            }],
            trust_root: None,
        }
    }

    /// Signs the sample manifest's statement after `edit`, and verifies it under `policy`.
    fn check(
        edit: impl Fn(&mut Statement),
        policy: Policy,
        status: KeyStatus,
    ) -> Result<(), (Check, String)> {
        let key = KeyPair::from_seed([5; 32]);
        let manifest = sample_manifest();
        let manifest_bytes = manifest.to_bytes();
        let mut signed = statement(&manifest, Digest::of(&manifest_bytes), "inv");
        edit(&mut signed);
        let envelope = serde_json::to_vec(&sign(&signed, &key)).unwrap();
        let trusted = trusted(&key, status);
        let reviews = ReviewBook::default();
        let inputs = Inputs {
            package_digest: manifest.package.digest,
            envelope: &envelope,
            manifest: Some(&manifest_bytes),
            trusted: &trusted,
            blocks: None,
            reviews: &reviews,
            history: &[],
            bases: &[],
        };
        // The sample's range starts at its trusted base, unless a case names other bases.
        let mut policy = policy;
        if policy.trusted_bases.is_empty() {
            policy.trusted_bases = manifest.source.baseline.clone().into_iter().collect();
        }
        verify(&inputs, &policy).map(|_| ()).map_err(|failure| (failure.check, failure.detail))
    }

    #[test]
    fn policy_failures_name_what_is_wrong() {
        let strict = || Policy {
            repositories: vec!["git@git.example.com:shop/checkout".into()],
            ..Policy::default()
        };
        type Edit = Box<dyn Fn(&mut Statement)>;
        type Expected = Result<(), (Check, &'static str)>;
        let cases: Vec<(&str, Edit, Policy, Expected)> = vec![
            ("as built", Box::new(|_| {}), strict(), Ok(())),
            (
                "a builder the key is not bound to",
                Box::new(|s| {
                    s.predicate.run_details.builder.id = crate::build::LOCAL_BUILDER_ID.into()
                }),
                Policy { builder_ids: vec![crate::build::LOCAL_BUILDER_ID.into()], ..strict() },
                Err((
                    Check::Signer,
                    "may not sign for builder https://gantry.dev/builders/local/v1",
                )),
            ),
            (
                "untrusted builder",
                Box::new(|s| {
                    s.predicate.run_details.builder.id = "https://evil.example/builder".into()
                }),
                strict(),
                Err((Check::Policy, "builder https://evil.example/builder is not trusted")),
            ),
            (
                "other build type",
                Box::new(|s| {
                    s.predicate.build_definition.build_type = "https://example.com/other".into()
                }),
                strict(),
                Err((Check::Policy, "build type https://example.com/other is not")),
            ),
            (
                "network build",
                Box::new(|s| {
                    s.predicate.build_definition.external_parameters["build"]["network"] =
                        true.into()
                }),
                strict(),
                Err((Check::Policy, "the build ran with network access")),
            ),
            (
                "network build allowed",
                Box::new(|s| {
                    s.predicate.build_definition.external_parameters["build"]["network"] =
                        true.into()
                }),
                Policy { require_hermetic: false, ..strict() },
                Ok(()),
            ),
            (
                "other repository",
                Box::new(|_| {}),
                Policy {
                    repositories: vec!["https://git.example.com/shop/payments".into()],
                    ..Policy::default()
                },
                Err((
                    Check::Policy,
                    "source repository https://git.example.com/shop/checkout.git is not allowed",
                )),
            ),
            (
                "a range on an untrusted base",
                Box::new(|_| {}),
                Policy { trusted_bases: vec![TRUSTED_BASE_ROOT.into()], ..strict() },
                Err((Check::Policy, "is not a configured trusted base")),
            ),
            (
                "another branch named the mainline",
                Box::new(|_| {}),
                Policy { branch: Some("release".into()), ..strict() },
                Err((
                    Check::Policy,
                    "built from refs/heads/main, not the mainline refs/heads/release",
                )),
            ),
            (
                "the pipeline's branch",
                Box::new(|_| {}),
                Policy { branch: Some("main".into()), ..strict() },
                Ok(()),
            ),
            (
                "other pipeline",
                Box::new(|_| {}),
                Policy { pipeline: Some("payments-code".into()), ..strict() },
                Err((Check::Policy, "built for pipeline checkout-code, not payments-code")),
            ),
            (
                "statement v0.1",
                Box::new(|s| s.statement_type = "https://in-toto.io/Statement/v0.1".into()),
                strict(),
                Err((Check::Policy, "statement type https://in-toto.io/Statement/v0.1 is not")),
            ),
            (
                "provenance v0.2",
                Box::new(|s| s.predicate_type = "https://slsa.dev/provenance/v0.2".into()),
                strict(),
                Err((Check::Policy, "predicate type https://slsa.dev/provenance/v0.2 is not")),
            ),
            (
                "another package",
                Box::new(|s| {
                    s.subject[0].digest.insert("sha256".into(), Digest::of(b"other").hex());
                }),
                strict(),
                Err((Check::Digest, "the package hashes to")),
            ),
            (
                "another manifest",
                Box::new(|s| {
                    s.predicate.run_details.byproducts[0]
                        .digest
                        .insert("sha256".into(), Digest::of(b"x").hex());
                }),
                strict(),
                Err((Check::Digest, "manifest.json hashes to")),
            ),
        ];
        for (name, edit, policy, expected) in cases {
            let got = check(edit, policy, KeyStatus::Active);
            match (&got, &expected) {
                (Ok(()), Ok(())) => {}
                (Err((check, detail)), Err((expected_check, expected_detail))) => {
                    assert_eq!(check, expected_check, "{name}: {detail}");
                    assert!(detail.contains(expected_detail), "{name}: {detail}");
                }
                _ => panic!("{name}: got {got:?}, expected {expected:?}"),
            }
        }
    }

    #[test]
    fn key_status_decides_the_signer_check() {
        let at = |text: &str| -> jiff::Timestamp { text.parse().unwrap() };
        let revoked = KeyStatus::Revoked {
            revoked_at: at("2026-11-05T00:00:00Z"),
            revoked_by: "sec".into(),
            reason: "leak".into(),
        };
        for (status, expected) in [
            (KeyStatus::Active, None),
            // The sample build finished at 2026-11-02T10:07:30Z.
            (KeyStatus::Retired { retired_at: at("2026-11-03T00:00:00Z") }, None),
            (KeyStatus::Retired { retired_at: at("2026-11-01T00:00:00Z") }, Some(Check::Signer)),
            (revoked, Some(Check::Signer)),
        ] {
            let got =
                check(|_| {}, Policy::default(), status.clone()).err().map(|(check, _)| check);
            assert_eq!(got, expected, "{status:?}");
        }
    }
}
