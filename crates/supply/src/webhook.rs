//! Forge webhooks: GitHub- and GitLab-style push and approval payloads, authenticated and turned
//! into the same records polling produces.
//!
//! A delivery is authenticated before its body is parsed: GitHub's `X-Hub-Signature-256` is an
//! HMAC-SHA256 of the body with the shared secret (compared in constant time); GitLab's
//! `X-Gitlab-Token` is the secret itself. A push to the mainline becomes a [`PushEvent`] with
//! its commits (newest first, like `git log`); an approval becomes a [`ForgeApproval`] for one
//! exact commit. Anything else is [`WebhookEvent::Ignored`] with the reason.

use std::collections::BTreeMap;
use std::fmt;

use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Error;
use crate::source::{Commit, Person, Trigger, is_commit_id, normalize_repository};

/// The largest body accepted; GitHub caps webhook payloads at 25 MB.
pub const MAX_WEBHOOK_BYTES: usize = 25 * 1024 * 1024;
/// The most commits read from one push; GitHub lists at most 2048, and a longer push is read
/// from the repository instead.
pub const MAX_PUSH_COMMITS: usize = 2048;

/// A code forge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Forge {
    GitHub,
    GitLab,
}

impl fmt::Display for Forge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Forge::GitHub => "github",
            Forge::GitLab => "gitlab",
        })
    }
}

/// One received HTTP delivery: its headers (any case) and raw body.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl Delivery {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// A push to a branch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PushEvent {
    pub forge: Forge,
    pub repository: String,
    pub branch: String,
    pub before: String,
    pub after: String,
    /// Newest first.
    pub commits: Vec<Commit>,
}

impl PushEvent {
    /// The pipeline start this push means for `source`, if it moved that source's mainline:
    /// same repository (compared normalised, so `git@host:a/b` matches `https://host/a/b.git`)
    /// and same branch.
    pub fn trigger_for(&self, source: &gantry_model::Source) -> Option<Trigger> {
        let same_repository =
            normalize_repository(&self.repository) == normalize_repository(&source.repository);
        (same_repository && self.branch == source.branch).then(|| Trigger {
            repository: source.repository.clone(),
            branch: self.branch.clone(),
            commit: self.after.clone(),
            commits: self.commits.clone(),
        })
    }
}

/// An approval given on a forge, for one exact commit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ForgeApproval {
    pub forge: Forge,
    pub repository: String,
    pub commit: String,
    pub reviewer_login: String,
    /// The change's author on the forge, when the payload names them.
    pub author_login: Option<String>,
    /// The delivery id, for the audit trail.
    pub delivery: String,
}

/// What a delivery meant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum WebhookEvent {
    Push(PushEvent),
    Approval(ForgeApproval),
    Ignored { reason: String },
}

/// Authenticates a delivery with the shared `secret` and parses it.
pub fn receive(forge: Forge, delivery: &Delivery, secret: &str) -> Result<WebhookEvent, Error> {
    if delivery.body.len() > MAX_WEBHOOK_BYTES {
        return Err(Error::Webhook(format!(
            "payload larger than {MAX_WEBHOOK_BYTES} bytes refused"
        )));
    }
    if secret.is_empty() {
        return Err(Error::Webhook(
            "no webhook secret is configured; unauthenticated webhooks are refused".into(),
        ));
    }
    match forge {
        Forge::GitHub => {
            let header = delivery.header("X-Hub-Signature-256").ok_or_else(|| {
                Error::Webhook(
                    "missing X-Hub-Signature-256 header; set the webhook's secret on GitHub".into(),
                )
            })?;
            verify_github_signature(secret, &delivery.body, header)?;
        }
        Forge::GitLab => {
            let token = delivery.header("X-Gitlab-Token").unwrap_or("");
            if !constant_time_eq(token.as_bytes(), secret.as_bytes()) {
                return Err(Error::Webhook(
                    "X-Gitlab-Token does not match the configured secret".into(),
                ));
            }
        }
    }
    let body: Value = serde_json::from_slice(&delivery.body)
        .map_err(|error| Error::Webhook(format!("payload is not JSON: {error}")))?;
    let event_header = match forge {
        Forge::GitHub => "X-GitHub-Event",
        Forge::GitLab => "X-Gitlab-Event",
    };
    let event = delivery.header(event_header).unwrap_or("");
    let id = delivery
        .header("X-GitHub-Delivery")
        .or(delivery.header("X-Gitlab-Event-UUID"))
        .unwrap_or("")
        .to_string();
    match (forge, event) {
        (Forge::GitHub, "push") | (Forge::GitLab, "Push Hook") => parse_push(forge, &body),
        (Forge::GitHub, "pull_request_review") => parse_github_review(&body, id),
        (Forge::GitLab, "Merge Request Hook") => parse_gitlab_approval(&body, id),
        _ => Ok(WebhookEvent::Ignored {
            reason: format!("{forge} event {event:?} is not a push or an approval"),
        }),
    }
}

/// Checks GitHub's `sha256=<hex>` HMAC of the body.
pub fn verify_github_signature(secret: &str, body: &[u8], header: &str) -> Result<(), Error> {
    let bad = || {
        Error::Webhook(
            "X-Hub-Signature-256 does not match the body and the configured secret".into(),
        )
    };
    let hex = header.strip_prefix("sha256=").ok_or_else(bad)?;
    let expected = hex::decode(hex).map_err(|_| bad())?;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes any key length");
    mac.update(body);
    mac.verify_slice(&expected).map_err(|_| bad())
}

/// GitHub's signature header for a body, for tests and for replaying deliveries.
pub fn github_signature(secret: &str, body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn text<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(value, |value, key| value.get(key))?.as_str()
}

fn required<'a>(value: &'a Value, path: &[&str]) -> Result<&'a str, Error> {
    text(value, path).ok_or_else(|| {
        Error::Webhook(format!("payload field {} is missing or not a string", path.join(".")))
    })
}

fn parse_push(forge: Forge, body: &Value) -> Result<WebhookEvent, Error> {
    let reference = required(body, &["ref"])?;
    let Some(branch) = reference.strip_prefix("refs/heads/") else {
        return Ok(WebhookEvent::Ignored { reason: format!("push to {reference}, not a branch") });
    };
    let after = required(body, &["after"])?;
    if after.bytes().all(|b| b == b'0') {
        return Ok(WebhookEvent::Ignored { reason: format!("branch {branch} was deleted") });
    }
    if !is_commit_id(after) {
        return Err(Error::Webhook(format!("payload field after {after:?} is not a commit id")));
    }
    let repository = match forge {
        Forge::GitHub => required(body, &["repository", "clone_url"])?,
        Forge::GitLab => text(body, &["project", "git_http_url"])
            .map_or_else(|| required(body, &["repository", "git_http_url"]), Ok)?,
    };
    let listed = body.get("commits").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
    if listed.len() > MAX_PUSH_COMMITS {
        return Err(Error::Webhook(format!(
            "push lists more than {MAX_PUSH_COMMITS} commits; poll the repository instead"
        )));
    }
    let mut commits = listed
        .iter()
        .enumerate()
        .map(|(index, commit)| {
            let field = |name: &str| {
                required(commit, &[name])
                    .map_err(|_| Error::Webhook(format!("commits[{index}].{name} is missing")))
            };
            let id = field("id")?;
            if !is_commit_id(id) {
                return Err(Error::Webhook(format!(
                    "commits[{index}].id {id:?} is not a commit id"
                )));
            }
            let message = field("message")?;
            let authored_at = field("timestamp")?
                .parse()
                .map_err(|error| Error::Webhook(format!("commits[{index}].timestamp: {error}")))?;
            let co_authors = message
                .lines()
                .filter_map(|line| line.strip_prefix("Co-authored-by:"))
                .filter_map(crate::source::parse_person)
                .collect();
            Ok(Commit {
                id: id.to_string(),
                author: Person {
                    name: required(commit, &["author", "name"])?.to_string(),
                    email: required(commit, &["author", "email"])?.to_string(),
                },
                co_authors,
                committer: match (
                    text(commit, &["committer", "name"]),
                    text(commit, &["committer", "email"]),
                ) {
                    (Some(name), Some(email))
                        if !email.eq_ignore_ascii_case(
                            text(commit, &["author", "email"]).unwrap_or(""),
                        ) =>
                    {
                        Some(Person { name: name.to_string(), email: email.to_string() })
                    }
                    _ => None,
                },
                authored_at,
                subject: message.lines().next().unwrap_or("").to_string(),
                tree: String::new(),
                parent_tree: String::new(),
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    // Both forges list a push's commits oldest first.
    commits.reverse();
    Ok(WebhookEvent::Push(PushEvent {
        forge,
        repository: repository.to_string(),
        branch: branch.to_string(),
        before: required(body, &["before"])?.to_string(),
        after: after.to_string(),
        commits,
    }))
}

fn parse_github_review(body: &Value, delivery: String) -> Result<WebhookEvent, Error> {
    let state = text(body, &["review", "state"]).unwrap_or("");
    if text(body, &["action"]) != Some("submitted") || !state.eq_ignore_ascii_case("approved") {
        return Ok(WebhookEvent::Ignored {
            reason: format!("review state {state:?} is not an approval"),
        });
    }
    let commit = required(body, &["review", "commit_id"])?;
    if !is_commit_id(commit) {
        return Err(Error::Webhook(format!("review.commit_id {commit:?} is not a commit id")));
    }
    Ok(WebhookEvent::Approval(ForgeApproval {
        forge: Forge::GitHub,
        repository: required(body, &["repository", "clone_url"])?.to_string(),
        commit: commit.to_string(),
        reviewer_login: required(body, &["review", "user", "login"])?.to_string(),
        author_login: text(body, &["pull_request", "user", "login"]).map(str::to_string),
        delivery,
    }))
}

fn parse_gitlab_approval(body: &Value, delivery: String) -> Result<WebhookEvent, Error> {
    let action = text(body, &["object_attributes", "action"]).unwrap_or("");
    if action != "approved" {
        return Ok(WebhookEvent::Ignored {
            reason: format!("merge request action {action:?} is not an approval"),
        });
    }
    let commit = required(body, &["object_attributes", "last_commit", "id"])?;
    if !is_commit_id(commit) {
        return Err(Error::Webhook(format!(
            "object_attributes.last_commit.id {commit:?} is not a commit id"
        )));
    }
    Ok(WebhookEvent::Approval(ForgeApproval {
        forge: Forge::GitLab,
        repository: required(body, &["project", "git_http_url"])?.to_string(),
        commit: commit.to_string(),
        reviewer_login: required(body, &["user", "username"])?.to_string(),
        author_login: None,
        delivery,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const SECRET: &str = "s3cret";

    fn github(event: &str, body: &Value) -> Delivery {
        let body = serde_json::to_vec(body).unwrap();
        Delivery {
            headers: BTreeMap::from([
                ("x-github-event".to_string(), event.to_string()),
                ("X-Hub-Signature-256".to_string(), github_signature(SECRET, &body)),
                ("X-GitHub-Delivery".to_string(), "d-42".to_string()),
            ]),
            body,
        }
    }

    fn gitlab(event: &str, body: &Value, token: &str) -> Delivery {
        Delivery {
            headers: BTreeMap::from([
                ("X-Gitlab-Event".to_string(), event.to_string()),
                ("X-Gitlab-Token".to_string(), token.to_string()),
            ]),
            body: serde_json::to_vec(body).unwrap(),
        }
    }

    fn commit_json(id: &str, who: &str, message: &str) -> Value {
        serde_json::json!({"id": id, "message": message, "timestamp": "2026-11-02T10:00:00+01:00",
            "author": {"name": who, "email": format!("{who}@example.com"), "username": who}})
    }

    fn summary(event: Result<WebhookEvent, Error>) -> String {
        match event {
            Ok(WebhookEvent::Push(push)) => {
                let commits: Vec<String> = push
                    .commits
                    .iter()
                    .map(|c| format!("{}:{}:{}", &c.id[..1], c.author.name, c.authors().count()))
                    .collect();
                format!(
                    "push {} {} {} [{}]",
                    push.forge,
                    push.repository,
                    push.branch,
                    commits.join(" ")
                )
            }
            Ok(WebhookEvent::Approval(a)) => {
                format!(
                    "approval {} {} by {} of {:?}",
                    a.forge,
                    &a.commit[..1],
                    a.reviewer_login,
                    a.author_login
                )
            }
            Ok(WebhookEvent::Ignored { reason }) => format!("ignored: {reason}"),
            Err(error) => format!("error: {error}"),
        }
    }

    #[test]
    fn deliveries() {
        let github_push = serde_json::json!({
            "ref": "refs/heads/main", "before": A, "after": B,
            "repository": {"clone_url": "https://github.com/acme/shop.git"},
            "commits": [commit_json(A, "alice", "first"), commit_json(B, "bob", "second\n\nCo-authored-by: Carol <carol@example.com>")]
        });
        let gitlab_push = serde_json::json!({
            "object_kind": "push", "ref": "refs/heads/main", "before": A, "after": B,
            "project": {"git_http_url": "https://gitlab.example.com/acme/shop.git"},
            "commits": [commit_json(B, "bob", "only")]
        });
        let review = serde_json::json!({
            "action": "submitted",
            "review": {"state": "approved", "commit_id": B, "user": {"login": "alice-gh"}},
            "pull_request": {"user": {"login": "bob-gh"}},
            "repository": {"clone_url": "https://github.com/acme/shop.git"}
        });
        let gitlab_approval = serde_json::json!({
            "object_kind": "merge_request", "user": {"username": "alice"},
            "object_attributes": {"action": "approved", "last_commit": {"id": B}},
            "project": {"git_http_url": "https://gitlab.example.com/acme/shop.git"}
        });
        let mut tampered = github("push", &github_push);
        tampered.body[10] ^= 1;
        let mut tag_push = github_push.clone();
        tag_push["ref"] = "refs/tags/v1".into();
        let mut commented = review.clone();
        commented["review"]["state"] = "commented".into();
        let mut injected = github_push.clone();
        injected["after"] = "--upload-pack=evil".into();

        let cases = [
            (
                Forge::GitHub,
                github("push", &github_push),
                "push github https://github.com/acme/shop.git main [b:bob:2 a:alice:1]",
            ),
            (
                Forge::GitLab,
                gitlab("Push Hook", &gitlab_push, SECRET),
                "push gitlab https://gitlab.example.com/acme/shop.git main [b:bob:1]",
            ),
            (
                Forge::GitHub,
                github("pull_request_review", &review),
                "approval github b by alice-gh of Some(\"bob-gh\")",
            ),
            (
                Forge::GitLab,
                gitlab("Merge Request Hook", &gitlab_approval, SECRET),
                "approval gitlab b by alice of None",
            ),
            (Forge::GitHub, tampered, "error: X-Hub-Signature-256 does not match"),
            (
                Forge::GitLab,
                gitlab("Push Hook", &gitlab_push, "wrong"),
                "error: X-Gitlab-Token does not match",
            ),
            (
                Forge::GitHub,
                github("push", &tag_push),
                "ignored: push to refs/tags/v1, not a branch",
            ),
            (
                Forge::GitHub,
                github("pull_request_review", &commented),
                "ignored: review state \"commented\" is not an approval",
            ),
            (
                Forge::GitHub,
                github("issues", &review),
                "ignored: github event \"issues\" is not a push or an approval",
            ),
            (
                Forge::GitHub,
                github("push", &injected),
                "error: payload field after \"--upload-pack=evil\" is not a commit id",
            ),
        ];
        for (forge, delivery, expected) in cases {
            let got = summary(receive(forge, &delivery, SECRET));
            assert!(got.starts_with(expected), "got {got:?}\nexpected {expected:?}");
        }
    }

    #[test]
    fn pushes_trigger_only_their_source() {
        let push = PushEvent {
            forge: Forge::GitHub,
            repository: "https://github.com/Acme/Shop.git".into(),
            branch: "main".into(),
            before: A.into(),
            after: B.into(),
            commits: vec![],
        };
        let source = |repository: &str, branch: &str| gantry_model::Source {
            repository: repository.into(),
            branch: branch.into(),
        };
        for (repository, branch, expected) in [
            ("git@github.com:acme/shop.git", "main", true),
            ("https://github.com/acme/shop", "main", true),
            ("https://github.com/acme/shop", "release", false),
            ("https://github.com/acme/shop-infra", "main", false),
        ] {
            let trigger = push.trigger_for(&source(repository, branch));
            assert_eq!(trigger.is_some(), expected, "{repository}#{branch}");
            if let Some(trigger) = trigger {
                assert_eq!((trigger.commit.as_str(), trigger.repository.as_str()), (B, repository));
            }
        }
    }

    #[test]
    fn github_signature_matches_the_documented_example() {
        // GitHub docs, "Validating webhook deliveries": secret "It's a Secret to Everybody",
        // payload "Hello, World!".
        assert_eq!(
            github_signature("It's a Secret to Everybody", b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }
}
