//! Provenance: an in-toto Statement v1 whose predicate is SLSA Provenance v1, signed in a DSSE
//! envelope.
//!
//! Field names and nesting follow `in-toto/attestation` `spec/v1/statement.md` and
//! `resource_descriptor.md`, and SLSA `spec/v1.0/provenance.md`, so standard verifiers read it.
//! Gantry fills them as follows:
//!
//! - `subject`: the package, named `<service>-<commit>.tar.zst`, with its `sha256`.
//! - `buildDefinition.externalParameters`: what the pipeline chose: service, pipeline, source
//!   (repository, ref, commit) and the build command, outputs, network flag and timeout.
//! - `buildDefinition.internalParameters`: what the builder chose: sandbox and host, and the
//!   commits since the previous artifact with their authors and reviewers.
//! - `buildDefinition.resolvedDependencies`: the source commit (`gitCommit` digest) and every
//!   pinned package as a package URL, with its registry checksum when it is a sha256/sha512.
//! - `runDetails.byproducts`: the manifest, by digest, so the manifest is signed too.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::Digest;
use crate::artifact::{MANIFEST_MEDIA_TYPE, Manifest};
use crate::dsse::{Envelope, IN_TOTO_PAYLOAD_TYPE};
use crate::keys::KeyPair;
use crate::source::is_remote;

pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
pub const SLSA_PROVENANCE_V1: &str = "https://slsa.dev/provenance/v1";
/// The build type: a shell command run in a network-less sandbox over a clean checkout.
pub const BUILD_TYPE: &str = "https://gantry.dev/build-types/hermetic-command/v1";
/// The builder identity verification trusts by default: the build service in the bubblewrap
/// allow-list sandbox (see [`crate::build::builder_id`]).
pub const DEFAULT_BUILDER_ID: &str = crate::build::SERVICE_BUBBLEWRAP_BUILDER_ID;

/// An in-toto Statement v1.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    #[serde(rename = "_type")]
    pub statement_type: String,
    pub subject: Vec<ResourceDescriptor>,
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    pub predicate: Provenance,
}

/// An in-toto ResourceDescriptor. At least one of `uri`, `digest` and `content` is set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceDescriptor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// Algorithm to lowercase hex, e.g. `sha256`, `gitCommit`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub digest: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download_location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// Base64 in JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The SLSA Provenance v1 predicate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Provenance {
    pub build_definition: BuildDefinition,
    pub run_details: RunDetails,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildDefinition {
    pub build_type: String,
    pub external_parameters: serde_json::Value,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub internal_parameters: serde_json::Value,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resolved_dependencies: Vec<ResourceDescriptor>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunDetails {
    pub builder: Builder,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BuildMetadata>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub byproducts: Vec<ResourceDescriptor>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Builder {
    pub id: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub builder_dependencies: Vec<ResourceDescriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub version: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invocation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_on: Option<jiff::Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_on: Option<jiff::Timestamp>,
}

/// The package's name in the statement's subject.
pub fn subject_name(manifest: &Manifest) -> String {
    let commit = &manifest.source.commit;
    format!("{}-{}.tar.zst", manifest.service, &commit[..commit.len().min(12)])
}

/// The SLSA-style URI of a git source: `git+<url>@refs/heads/<branch>`.
pub fn source_uri(repository: &str, branch: &str) -> String {
    let url =
        if is_remote(repository) { repository.to_string() } else { format!("file://{repository}") };
    format!("git+{url}@refs/heads/{branch}")
}

/// A lock-file checksum as a DigestSet entry, when it is one in-toto names.
fn checksum_digest(checksum: &str) -> Option<(String, String)> {
    if let Some(hex) = checksum.strip_prefix("sha256:") {
        return Some(("sha256".into(), hex.to_lowercase()));
    }
    let (algorithm, encoded) = checksum.split_once('-')?;
    if algorithm != "sha512" && algorithm != "sha256" {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD.decode(encoded).ok()?;
    Some((algorithm.into(), hex::encode(bytes)))
}

/// A host path and its content digest as a resource descriptor, annotated with its role.
fn path_descriptor(path: &crate::artifact::PathDigest, role: &str) -> ResourceDescriptor {
    let mut annotations = serde_json::Map::new();
    annotations.insert("role".into(), role.into());
    ResourceDescriptor {
        uri: Some(format!("file://{}", path.path)),
        digest: BTreeMap::from([("sha256".to_string(), path.digest.hex())]),
        annotations: Some(annotations),
        ..ResourceDescriptor::default()
    }
}

/// The provenance statement for a built artifact.
pub fn statement(manifest: &Manifest, manifest_digest: Digest, invocation_id: &str) -> Statement {
    let source = &manifest.source;
    let external_parameters = json!({
        "service": manifest.service,
        "pipeline": manifest.pipeline,
        "source": {
            "repository": source.repository,
            "ref": format!("refs/heads/{}", source.branch),
            "commit": source.commit,
        },
        "build": {
            "command": manifest.build.command,
            "outputs": manifest.build.outputs,
            "network": manifest.build.network,
            "timeout": manifest.build.timeout.to_string(),
            "environment": manifest.build.environment,
            "readOnlyPaths": manifest.build.read_only_paths.iter().map(|p| &p.path).collect::<Vec<_>>(),
            "since": manifest.build.since,
            "trustedBase": manifest.build.trusted_base,
        },
    });
    let commits: Vec<serde_json::Value> = manifest
        .commits
        .iter()
        .map(|record| {
            json!({
                "id": record.commit.id,
                "authors": record.commit.authors().map(|p| p.to_string()).collect::<Vec<_>>(),
                "reviewers": record.reviewers,
                "authorship": record.authorship,
            })
        })
        .collect();
    let internal_parameters = json!({
        "sandbox": manifest.builder.sandbox,
        "host": manifest.builder.host,
        "baseline": source.baseline,
        "baseArtifact": source.base_artifact,
        "commits": commits,
    });
    let mut resolved_dependencies = vec![ResourceDescriptor {
        uri: Some(source_uri(&source.repository, &source.branch)),
        digest: BTreeMap::from([("gitCommit".to_string(), source.commit.clone())]),
        ..ResourceDescriptor::default()
    }];
    for path in &manifest.build.read_only_paths {
        resolved_dependencies.push(path_descriptor(path, "readOnlyPath"));
    }
    for dependency in &manifest.dependencies {
        let mut annotations = serde_json::Map::new();
        annotations.insert("lockFile".into(), dependency.lock_file.clone().into());
        resolved_dependencies.push(ResourceDescriptor {
            uri: Some(dependency.purl()),
            digest: dependency.checksum.as_deref().and_then(checksum_digest).into_iter().collect(),
            annotations: Some(annotations),
            ..ResourceDescriptor::default()
        });
    }
    Statement {
        statement_type: STATEMENT_TYPE.into(),
        subject: vec![ResourceDescriptor {
            name: Some(subject_name(manifest)),
            digest: BTreeMap::from([("sha256".to_string(), manifest.package.digest.hex())]),
            ..ResourceDescriptor::default()
        }],
        predicate_type: SLSA_PROVENANCE_V1.into(),
        predicate: Provenance {
            build_definition: BuildDefinition {
                build_type: BUILD_TYPE.into(),
                external_parameters,
                internal_parameters,
                resolved_dependencies,
            },
            run_details: RunDetails {
                builder: Builder {
                    id: manifest.builder.id.clone(),
                    builder_dependencies: manifest
                        .builder
                        .toolchain
                        .iter()
                        .map(|path| path_descriptor(path, "toolchain"))
                        .collect(),
                    version: BTreeMap::from([(
                        "gantry".to_string(),
                        manifest.builder.version.clone(),
                    )]),
                },
                metadata: Some(BuildMetadata {
                    invocation_id: Some(invocation_id.to_string()),
                    started_on: Some(manifest.started_at),
                    finished_on: Some(manifest.finished_at),
                }),
                byproducts: vec![ResourceDescriptor {
                    name: Some(crate::store::MANIFEST_FILE.into()),
                    digest: BTreeMap::from([("sha256".to_string(), manifest_digest.hex())]),
                    media_type: Some(MANIFEST_MEDIA_TYPE.into()),
                    ..ResourceDescriptor::default()
                }],
            },
        },
    }
}

/// Signs a statement with a build key.
pub fn sign(statement: &Statement, key: &KeyPair) -> Envelope {
    let body = serde_json::to_vec(statement).expect("statement serializes");
    Envelope::sign(IN_TOTO_PAYLOAD_TYPE, &body, &key.keyid, &key.signing)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::artifact::{
        BuildRecord, BuilderRecord, CommitRecord, FileRecord, PackageRecord, SourceRecord,
    };
    use crate::lockfiles::{Dependency, Ecosystem};
    use crate::source::{Commit, Person};

    /// A fixed manifest for shape tests.
    pub fn sample_manifest() -> Manifest {
        Manifest {
            schema: crate::artifact::MANIFEST_SCHEMA.into(),
            service: "checkout".into(),
            pipeline: "checkout-code".into(),
            source: SourceRecord {
                repository: "https://git.example.com/shop/checkout.git".into(),
                branch: "main".into(),
                commit: "1111111111111111111111111111111111111111".into(),
                baseline: Some("0000000000000000000000000000000000000001".into()),
                base_artifact: None,
            },
            commits: vec![CommitRecord {
                commit: Commit {
                    id: "1111111111111111111111111111111111111111".into(),
                    author: Person { name: "Bob".into(), email: "bob@example.com".into() },
                    co_authors: vec![],
                    committer: None,
                    authored_at: "2026-11-02T10:00:00Z".parse().unwrap(),
                    subject: "Add discounts".into(),
                    tree: String::new(),
                    parent_tree: String::new(),
                },
                reviewers: vec!["alice".into()],
                authorship: crate::artifact::Authorship::SshSignature {
                    member: "bob".into(),
                    key: "SHA256:6Vq0bGcTgqjXxPvV3JzvvOfhwjlWoCK6yPN4HKL3vnI".into(),
                },
            }],
            build: BuildRecord {
                command: "make test package".into(),
                outputs: vec!["out".into()],
                network: false,
                timeout: gantry_model::Duration::from_minutes(30),
                environment: BTreeMap::from([
                    ("PATH".to_string(), crate::sandbox::SANDBOX_PATH.to_string()),
                    (
                        "GANTRY_COMMIT".to_string(),
                        "1111111111111111111111111111111111111111".into(),
                    ),
                ]),
                read_only_paths: Vec::new(),
                since: None,
                trusted_base: Some("0000000000000000000000000000000000000001".into()),
            },
            builder: BuilderRecord {
                id: DEFAULT_BUILDER_ID.into(),
                host: "builder-1".into(),
                version: "0.1.0".into(),
                sandbox: "unshare --net --pid --mount".into(),
                toolchain: vec![crate::artifact::PathDigest {
                    path: "/usr/bin/bwrap".into(),
                    digest: Digest::of(b"bwrap"),
                }],
            },
            dependencies: vec![Dependency {
                ecosystem: Ecosystem::Cargo,
                name: "serde".into(),
                version: Some("1.0.210".into()),
                checksum: Some(
                    "sha256:c8e3592472072e6e22e0a54d5904d9febf8508f65fb8552499a1abc7d1078c3a"
                        .into(),
                ),
                lock_file: "Cargo.lock".into(),
            }],
            package: PackageRecord {
                digest: Digest::of(b"package"),
                size: 7,
                media_type: crate::artifact::PACKAGE_MEDIA_TYPE.into(),
                files: vec![FileRecord {
                    path: "out/service".into(),
                    size: 3,
                    digest: Digest::of(b"abc"),
                    mode: 0o755,
                }],
            },
            started_at: "2026-11-02T10:05:00Z".parse().unwrap(),
            finished_at: "2026-11-02T10:07:30Z".parse().unwrap(),
        }
    }

    fn keys_of(value: &serde_json::Value) -> Vec<&str> {
        value.as_object().expect("an object").keys().map(String::as_str).collect()
    }

    fn assert_subset(value: &serde_json::Value, allowed: &[&str], required: &[&str], place: &str) {
        let keys = keys_of(value);
        for key in &keys {
            assert!(allowed.contains(key), "{place}: field {key} is not in the spec");
        }
        for key in required {
            assert!(keys.contains(key), "{place}: required field {key} missing");
        }
    }

    const RESOURCE_DESCRIPTOR_FIELDS: [&str; 7] =
        ["uri", "digest", "name", "downloadLocation", "mediaType", "content", "annotations"];

    fn assert_resource_descriptor(value: &serde_json::Value, place: &str) {
        assert_subset(value, &RESOURCE_DESCRIPTOR_FIELDS, &[], place);
        let has_one = ["uri", "digest", "content"].iter().any(|field| value.get(field).is_some());
        assert!(has_one, "{place}: a ResourceDescriptor needs uri, digest or content");
        if let Some(digest) = value.get("digest") {
            for (algorithm, hex) in digest.as_object().unwrap() {
                let hex = hex.as_str().unwrap();
                assert!(
                    !hex.is_empty()
                        && hex.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
                    "{place}: {algorithm} must be lowercase hex"
                );
            }
        }
    }

    /// The shape documented by in-toto Statement v1 and SLSA Provenance v1, field by field.
    #[test]
    fn statement_follows_in_toto_v1_and_slsa_provenance_v1() {
        let manifest = sample_manifest();
        let value =
            serde_json::to_value(statement(&manifest, Digest::of(b"manifest"), "inv-1")).unwrap();

        assert_subset(
            &value,
            &["_type", "subject", "predicateType", "predicate"],
            &["_type", "subject", "predicateType", "predicate"],
            "statement",
        );
        assert_eq!(value["_type"], "https://in-toto.io/Statement/v1");
        assert_eq!(value["predicateType"], "https://slsa.dev/provenance/v1");
        let subjects = value["subject"].as_array().unwrap();
        assert_eq!(subjects.len(), 1);
        assert_subset(&subjects[0], &["name", "digest"], &["name", "digest"], "subject");
        assert_eq!(subjects[0]["digest"]["sha256"], manifest.package.digest.hex());

        let predicate = &value["predicate"];
        assert_subset(
            predicate,
            &["buildDefinition", "runDetails"],
            &["buildDefinition", "runDetails"],
            "predicate",
        );
        let definition = &predicate["buildDefinition"];
        assert_subset(
            definition,
            &["buildType", "externalParameters", "internalParameters", "resolvedDependencies"],
            &["buildType", "externalParameters"],
            "buildDefinition",
        );
        assert!(definition["externalParameters"].is_object());
        for (index, dependency) in
            definition["resolvedDependencies"].as_array().unwrap().iter().enumerate()
        {
            assert_resource_descriptor(dependency, &format!("resolvedDependencies[{index}]"));
        }
        assert_eq!(
            definition["resolvedDependencies"][0]["digest"]["gitCommit"],
            manifest.source.commit
        );
        assert_eq!(definition["resolvedDependencies"][1]["uri"], "pkg:cargo/serde@1.0.210");

        let run = &predicate["runDetails"];
        assert_subset(run, &["builder", "metadata", "byproducts"], &["builder"], "runDetails");
        assert_subset(
            &run["builder"],
            &["id", "builderDependencies", "version"],
            &["id"],
            "builder",
        );
        assert_subset(
            &run["metadata"],
            &["invocationId", "startedOn", "finishedOn"],
            &[],
            "metadata",
        );
        for field in ["startedOn", "finishedOn"] {
            let text = run["metadata"][field].as_str().unwrap();
            assert!(
                text.parse::<jiff::Timestamp>().is_ok() && text.ends_with('Z'),
                "{field} is RFC 3339 UTC: {text}"
            );
        }
        for byproduct in run["byproducts"].as_array().unwrap() {
            assert_resource_descriptor(byproduct, "byproducts");
        }
    }

    /// Pins the whole signed attestation for a fixed manifest and key; regenerate the file with
    /// `GANTRY_UPDATE_SNAPSHOTS=1` after an intended change, and review the diff.
    #[test]
    fn attestation_snapshot() {
        let manifest = sample_manifest();
        let statement = statement(&manifest, Digest::of(&manifest.to_bytes()), "checkout-code-1");
        let envelope = sign(&statement, &KeyPair::from_seed([42; 32]));
        let payload = crate::dsse::decode_base64(&envelope.payload).unwrap();
        let pretty = format!(
            "{}\n--- envelope ---\n{}\n",
            serde_json::to_string_pretty(
                &serde_json::from_slice::<serde_json::Value>(&payload).unwrap()
            )
            .unwrap(),
            serde_json::to_string_pretty(&envelope).unwrap()
        );
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/attestation.snapshot");
        if std::env::var_os("GANTRY_UPDATE_SNAPSHOTS").is_some() {
            std::fs::write(&path, &pretty).unwrap();
        }
        let expected = std::fs::read_to_string(&path)
            .expect("snapshot exists; run with GANTRY_UPDATE_SNAPSHOTS=1");
        assert_eq!(pretty, expected);
        let parsed: Statement = serde_json::from_slice(&payload).unwrap();
        assert_eq!(parsed, statement);
    }
}
