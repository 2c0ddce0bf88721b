//! Code review: who may approve, and the approvals they recorded.
//!
//! The team [`Keyring`] lists each member with their git identities (emails), their logins on
//! forges and their ed25519 public key. An approval is authenticated one of two ways:
//!
//! - **Signed**: the reviewer signs `{repository, commit, reviewer, approvedAt}` with their own
//!   key (a DSSE envelope); it counts only while that key belongs to that reviewer.
//! - **Forge**: a GitHub or GitLab approval webhook whose signature or token was verified on
//!   receipt (see [`crate::webhook`]), from a login the keyring maps to a member.
//!
//! An approval covers one exact commit, and any commit with the same tree (a squash-merge of the
//! approved pull request: the same content). Nobody may approve a commit they wrote, co-wrote or
//! committed: such approvals are refused when recorded, and ignored if found in the book anyway.
//! The [`ReviewBook`] is an append-only JSON-lines file; signed entries are re-verified on load.

use std::io::Write;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::dsse::Envelope;
use crate::keys::{KeyPair, parse_public_key};
use crate::source::{Commit, Person, Repository};
use crate::webhook::{Forge, ForgeApproval};

/// The payload type of team keyrings signed by the trust root.
pub const KEYRING_PAYLOAD_TYPE: &str = "application/vnd.gantry.team-keyring.v1+json";
/// The payload type of signed approvals.
pub const APPROVAL_PAYLOAD_TYPE: &str = "application/vnd.gantry.review-approval.v1+json";
/// The most approvals a review book holds before it must be archived: loading verifies every
/// signature (about 50 µs each in a release build), so this keeps it near a second.
pub const MAX_APPROVALS: usize = 20_000;

/// One team member.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The name approvals and manifests use.
    pub name: String,
    /// Emails this person commits with.
    pub emails: Vec<String>,
    /// Forge logins, written `github:login` or `gitlab:login`.
    #[serde(default)]
    pub forge_logins: Vec<String>,
    /// Base64 ed25519 public key that signs this member's approvals.
    pub public_key: String,
    /// OpenSSH public keys (`ssh-ed25519 AAAA...`) this member signs commits with
    /// (`git config gpg.format ssh`): a commit carrying a good signature by one is authored by
    /// this member, whatever its author field says.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ssh_keys: Vec<String>,
}

impl Member {
    /// Whether this member wrote, co-wrote or committed the commit.
    pub fn wrote(&self, commit: &Commit) -> bool {
        commit.writers().any(|writer| self.is(writer))
    }

    fn is(&self, person: &Person) -> bool {
        self.emails.iter().any(|email| email.eq_ignore_ascii_case(&person.email))
    }
}

/// The team allowed to approve a pipeline's commits.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Keyring {
    pub team: String,
    pub members: Vec<Member>,
}

impl Keyring {
    pub fn read(path: &Path) -> Result<Keyring, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::io(path, source))?;
        let keyring: Keyring = serde_json::from_str(&text)
            .map_err(|error| Error::invalid(path, format!("not a team keyring: {error}")))?;
        keyring.check().map_err(|reason| Error::invalid(path, reason))?;
        Ok(keyring)
    }

    pub fn write(&self, path: &Path) -> Result<(), Error> {
        self.check().map_err(|reason| Error::invalid(path, reason))?;
        crate::store::write_atomically(path, &self.to_bytes())
    }

    /// The keyring as written to disk and signed.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("keyring serializes");
        bytes.push(b'\n');
        bytes
    }

    /// Reads the keyring the trust root signed (`<path>.dsse`); the readable copy at `path` is
    /// not consulted, so whoever can write it but does not hold the trust root cannot make
    /// themselves a reviewer.
    pub fn read_signed(
        path: &Path,
        trust_root: &ed25519_dalek::VerifyingKey,
    ) -> Result<Keyring, Error> {
        let body = crate::keys::read_signed(path, KEYRING_PAYLOAD_TYPE, trust_root)?;
        let keyring: Keyring = serde_json::from_slice(&body)
            .map_err(|error| Error::invalid(path, format!("not a team keyring: {error}")))?;
        keyring.check().map_err(|reason| Error::invalid(path, reason))?;
        Ok(keyring)
    }

    fn check(&self) -> Result<(), String> {
        for (index, member) in self.members.iter().enumerate() {
            if parse_public_key(&member.public_key).is_none() {
                return Err(format!(
                    "members[{index}] ({}): public_key is not a base64 ed25519 key",
                    member.name
                ));
            }
            if self.members[..index]
                .iter()
                .any(|other| other.name == member.name || other.public_key == member.public_key)
            {
                return Err(format!("members[{index}] ({}): name or key used twice", member.name));
            }
            let shared = self.members[..index].iter().find(|other| {
                other
                    .emails
                    .iter()
                    .any(|email| member.emails.iter().any(|mine| mine.eq_ignore_ascii_case(email)))
            });
            if let Some(other) = shared {
                return Err(format!(
                    "members[{index}] ({}) shares an email with {}: one identity per person, or \
                     self-approval checks cannot tell them apart",
                    member.name, other.name
                ));
            }
        }
        Ok(())
    }

    pub fn by_name(&self, name: &str) -> Option<&Member> {
        self.members.iter().find(|member| member.name == name)
    }

    pub fn by_key(&self, public: &ed25519_dalek::VerifyingKey) -> Option<&Member> {
        self.members
            .iter()
            .find(|member| parse_public_key(&member.public_key).as_ref() == Some(public))
    }

    pub fn by_forge_login(&self, forge: Forge, login: &str) -> Option<&Member> {
        let wanted = format!("{forge}:{login}").to_lowercase();
        self.members
            .iter()
            .find(|member| member.forge_logins.iter().any(|l| l.to_lowercase() == wanted))
    }

    /// Adds a member, or replaces the one with the same name.
    /// The keyring's commit-signing keys as an OpenSSH allowed-signers file (`ssh-keygen -Y`,
    /// git's `gpg.ssh.allowedSignersFile`), each key under its member's name for the `git`
    /// namespace. Members whose name could not be a principal (whitespace, commas, quotes) or
    /// keys that are not one `type base64` pair are left out: their signatures do not verify.
    pub fn allowed_signers(&self) -> String {
        let mut text = String::new();
        for member in &self.members {
            let name_ok = !member.name.is_empty()
                && !member.name.chars().any(|c| {
                    c.is_whitespace() || c == ',' || c == '"' || c == '*' || c == '?' || c == '!'
                });
            if !name_ok {
                continue;
            }
            for key in &member.ssh_keys {
                let parts: Vec<&str> = key.split_whitespace().collect();
                if let [kind, data, ..] = parts[..]
                    && kind.starts_with("ssh-")
                {
                    text.push_str(&format!("{} namespaces=\"git\" {kind} {data}\n", member.name));
                }
            }
        }
        text
    }

    pub fn upsert(&mut self, member: Member) {
        self.members.retain(|existing| existing.name != member.name);
        self.members.push(member);
    }
}

/// What a reviewer signs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalStatement {
    pub repository: String,
    pub commit: String,
    /// The approved commit's tree, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tree: Option<String>,
    /// The tree of the approved commit's first parent, when known: with `tree`, the approval
    /// then also covers a commit making the same change to the same content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_tree: Option<String>,
    pub reviewer: String,
    pub approved_at: Timestamp,
}

/// One recorded approval, as the book stores it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "via")]
pub enum Record {
    /// Signed with the reviewer's key.
    Signed { envelope: Envelope },
    /// Imported from a verified forge webhook.
    Forge {
        forge: Forge,
        repository: String,
        commit: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tree: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        parent_tree: Option<String>,
        reviewer: String,
        login: String,
        /// The pull (merge) request's author as the forge names them: authenticates who wrote
        /// the commit when the login is a member's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        author_login: Option<String>,
        approved_at: Timestamp,
        delivery: String,
    },
}

/// An approval that counts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Approval {
    pub repository: String,
    pub commit: String,
    pub tree: Option<String>,
    pub parent_tree: Option<String>,
    /// The member a verified forge delivery named as the change's author, if any.
    pub forge_author: Option<ForgeAuthor>,
    pub reviewer: String,
    pub approved_at: Timestamp,
    /// `signed` or `github` / `gitlab`.
    pub via: String,
}

/// The approvals recorded for a team, verified against its keyring.
#[derive(Clone, Debug, Default)]
pub struct ReviewBook {
    path: Option<PathBuf>,
    keyring: Keyring,
    approvals: Vec<Approval>,
    /// Records that failed verification on load, with the reason: shown, never counted.
    pub rejected: Vec<String>,
}

impl ReviewBook {
    /// An empty book that records nothing to disk, for tests and dry runs.
    pub fn in_memory(keyring: Keyring) -> ReviewBook {
        ReviewBook { keyring, ..ReviewBook::default() }
    }

    /// Loads the book at `path` (absent means empty), re-verifying every signed approval.
    pub fn open(path: &Path, keyring: Keyring) -> Result<ReviewBook, Error> {
        let mut book =
            ReviewBook { path: Some(path.to_path_buf()), keyring, ..ReviewBook::default() };
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(book),
            Err(source) => return Err(Error::io(path, source)),
        };
        for (index, line) in text.lines().enumerate().filter(|(_, line)| !line.trim().is_empty()) {
            if book.approvals.len() >= MAX_APPROVALS {
                return Err(Error::invalid(
                    path,
                    format!("more than {MAX_APPROVALS} approvals; archive old ones"),
                ));
            }
            let record: Record = serde_json::from_str(line).map_err(|error| {
                Error::invalid(path, format!("line {}: not an approval record: {error}", index + 1))
            })?;
            match book.accept(&record) {
                Ok(approval) => book.approvals.push(approval),
                Err(reason) => {
                    book.rejected.push(format!("{}:{}: {reason}", path.display(), index + 1))
                }
            }
        }
        Ok(book)
    }

    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    pub fn approvals(&self) -> &[Approval] {
        &self.approvals
    }

    /// Checks a record against the keyring: the signature must be by the named reviewer's key.
    fn accept(&self, record: &Record) -> Result<Approval, String> {
        match record {
            Record::Signed { envelope } => {
                if envelope.payload_type != APPROVAL_PAYLOAD_TYPE {
                    return Err(format!(
                        "payload type {} is not an approval",
                        envelope.payload_type
                    ));
                }
                let candidates: Vec<_> = self
                    .keyring
                    .members
                    .iter()
                    .filter_map(|m| parse_public_key(&m.public_key).map(|k| (m, k)))
                    .collect();
                let (body, index) = envelope
                    .verify(candidates.iter().map(|(m, k)| (m.name.as_str(), k)))
                    .map_err(|error| {
                        format!("signature does not verify under any team member's key: {error:?}")
                    })?;
                let statement: ApprovalStatement = serde_json::from_slice(&body)
                    .map_err(|error| format!("signed payload is not an approval: {error}"))?;
                let signer = candidates[index].0;
                if signer.name != statement.reviewer {
                    return Err(format!(
                        "signed by {} but names {} as reviewer",
                        signer.name, statement.reviewer
                    ));
                }
                Ok(Approval {
                    repository: statement.repository,
                    commit: statement.commit,
                    tree: statement.tree,
                    parent_tree: statement.parent_tree,
                    forge_author: None,
                    reviewer: statement.reviewer,
                    approved_at: statement.approved_at,
                    via: "signed".into(),
                })
            }
            Record::Forge {
                forge,
                repository,
                commit,
                tree,
                parent_tree,
                reviewer,
                login,
                author_login,
                approved_at,
                ..
            } => {
                let member = self
                    .keyring
                    .by_forge_login(*forge, login)
                    .ok_or_else(|| format!("{forge} login {login} is not a team member"))?;
                if member.name != *reviewer {
                    return Err(format!(
                        "{forge} login {login} belongs to {}, not {reviewer}",
                        member.name
                    ));
                }
                let forge_author = author_login.as_ref().and_then(|author| {
                    self.keyring.by_forge_login(*forge, author).map(|member| ForgeAuthor {
                        member: member.name.clone(),
                        forge: *forge,
                        login: author.clone(),
                    })
                });
                Ok(Approval {
                    repository: repository.clone(),
                    commit: commit.clone(),
                    tree: tree.clone(),
                    parent_tree: parent_tree.clone(),
                    forge_author,
                    reviewer: reviewer.clone(),
                    approved_at: *approved_at,
                    via: forge.to_string(),
                })
            }
        }
    }

    fn append(&mut self, record: Record) -> Result<Approval, Error> {
        let approval = self.accept(&record).map_err(Error::Review)?;
        if let Some(path) = &self.path {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|source| Error::io(parent, source))?;
            }
            let mut line = serde_json::to_string(&record).expect("record serializes");
            line.push('\n');
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|mut file| file.write_all(line.as_bytes()))
                .map_err(|source| Error::io(path, source))?;
        }
        self.approvals.push(approval.clone());
        Ok(approval)
    }

    /// Records `key`'s holder approving `commit`. The key must be a team member's; the member
    /// may not be an author of the commit.
    pub fn approve(
        &mut self,
        key: &KeyPair,
        repository: &str,
        commit: &Commit,
        now: Timestamp,
    ) -> Result<Approval, Error> {
        let member = self.keyring.by_key(&key.public()).ok_or_else(|| {
            Error::Review(format!(
                "key {} is not in team {}'s keyring; ask a maintainer to add your public key with \
                 `gantry review member add`",
                &key.keyid[..16],
                self.keyring.team
            ))
        })?;
        let envelope = sign_approval(key, &member.name.clone(), repository, commit, now);
        self.record_signed(envelope, commit)
    }

    /// Records an approval a reviewer signed elsewhere (their own machine, through the API):
    /// the signature must be a team member's, the envelope must name `commit` (read from the
    /// repository by the caller) and its tree, and the member may not have written it.
    pub fn record_signed(
        &mut self,
        envelope: Envelope,
        commit: &Commit,
    ) -> Result<Approval, Error> {
        let record = Record::Signed { envelope };
        let approval = self.accept(&record).map_err(Error::Review)?;
        if approval.commit != commit.id {
            return Err(Error::Review(format!(
                "the signed approval is for commit {}, not {}",
                approval.commit, commit.id
            )));
        }
        if approval.tree.is_some() && approval.tree != known_tree(commit) {
            return Err(Error::Review(format!(
                "the signed approval claims tree {} for commit {}, whose tree is {}; it is refused",
                approval.tree.as_deref().unwrap_or(""),
                commit.short_id(),
                commit.tree
            )));
        }
        let member =
            self.keyring.by_name(&approval.reviewer).expect("accepted approvals name a member");
        refuse_self_approval(member, commit)?;
        self.append(record)
    }

    /// Records an approval from a verified forge webhook. `commit` is the approved commit as read
    /// from the repository, so its authors are known.
    pub fn import_forge(
        &mut self,
        approval: &ForgeApproval,
        commit: &Commit,
        now: Timestamp,
    ) -> Result<Approval, Error> {
        let member = self
            .keyring
            .by_forge_login(approval.forge, &approval.reviewer_login)
            .ok_or_else(|| {
                Error::Review(format!(
                    "{} login {} is not in team {}'s keyring; its approval does not count",
                    approval.forge, approval.reviewer_login, self.keyring.team
                ))
            })?;
        if approval
            .author_login
            .as_deref()
            .is_some_and(|author| author.eq_ignore_ascii_case(&approval.reviewer_login))
        {
            return Err(Error::Review(format!(
                "{} approved their own change {} on {}; self-approval does not count",
                approval.reviewer_login,
                commit.short_id(),
                approval.forge
            )));
        }
        refuse_self_approval(member, commit)?;
        self.append(Record::Forge {
            forge: approval.forge,
            repository: approval.repository.clone(),
            commit: commit.id.clone(),
            tree: known_tree(commit),
            parent_tree: known_parent_tree(commit),
            reviewer: member.name.clone(),
            login: approval.reviewer_login.clone(),
            author_login: approval.author_login.clone(),
            approved_at: now,
            delivery: approval.delivery.clone(),
        })
    }

    /// The approvals that cover `commit`: of it, or of a commit with the same tree and the
    /// same parent tree (the same change to the same content, e.g. its squash-merge).
    fn covering<'b>(&'b self, commit: &'b Commit) -> impl Iterator<Item = &'b Approval> + 'b {
        let (tree, parent_tree) = (known_tree(commit), known_parent_tree(commit));
        self.approvals.iter().filter(move |approval| {
            approval.commit == commit.id
                || (tree.is_some()
                    && parent_tree.is_some()
                    && approval.tree == tree
                    && approval.parent_tree == parent_tree)
        })
    }

    /// The member a verified forge delivery named as `commit`'s author (the pull or merge
    /// request's author by login, not the git author fields), if any.
    pub fn forge_author_of(&self, commit: &Commit) -> Option<ForgeAuthor> {
        self.covering(commit).find_map(|approval| approval.forge_author.clone())
    }

    /// The members who approved `commit` (or the same change, see `covering`) and did not
    /// write it.
    pub fn reviewers_of(&self, commit: &Commit) -> Vec<String> {
        let mut reviewers: Vec<String> = self
            .covering(commit)
            .filter(|approval| {
                self.keyring.by_name(&approval.reviewer).is_some_and(|member| !member.wrote(commit))
            })
            .map(|approval| approval.reviewer.clone())
            .collect();
        reviewers.sort();
        reviewers.dedup();
        reviewers
    }
}

/// A reviewer's signed approval of `commit`, as `reviewer` (their name in the keyring).
pub fn sign_approval(
    key: &KeyPair,
    reviewer: &str,
    repository: &str,
    commit: &Commit,
    now: Timestamp,
) -> Envelope {
    let statement = ApprovalStatement {
        repository: repository.to_string(),
        commit: commit.id.clone(),
        tree: known_tree(commit),
        parent_tree: known_parent_tree(commit),
        reviewer: reviewer.to_string(),
        approved_at: now,
    };
    let body = serde_json::to_vec(&statement).expect("statement serializes");
    Envelope::sign(APPROVAL_PAYLOAD_TYPE, &body, &key.keyid, &key.signing)
}

fn known_tree(commit: &Commit) -> Option<String> {
    (!commit.tree.is_empty()).then(|| commit.tree.clone())
}

fn known_parent_tree(commit: &Commit) -> Option<String> {
    (!commit.parent_tree.is_empty()).then(|| commit.parent_tree.clone())
}

/// A commit's author as a verified forge delivery names them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForgeAuthor {
    pub member: String,
    pub forge: Forge,
    pub login: String,
}

fn refuse_self_approval(member: &Member, commit: &Commit) -> Result<(), Error> {
    if member.wrote(commit) {
        return Err(Error::Review(format!(
            "{} may not approve commit {} (\"{}\"): they wrote it; another team member must review it",
            member.name,
            commit.short_id(),
            commit.subject
        )));
    }
    Ok(())
}

/// Reads a commit for review from a repository at a path or URL.
pub fn commit_to_review(repository: &Repository, revision: &str) -> Result<Commit, Error> {
    let id = repository.resolve(revision)?;
    repository.commit(&id)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn member(name: &str, seed: u8) -> (Member, KeyPair) {
        let key = KeyPair::from_seed([seed; 32]);
        let member = Member {
            name: name.into(),
            emails: vec![format!("{name}@example.com")],
            forge_logins: vec![format!("github:{name}-gh")],
            public_key: key.public_base64(),
            ssh_keys: vec![],
        };
        (member, key)
    }

    pub fn commit_by(author: &str, id_digit: char) -> Commit {
        Commit {
            id: id_digit.to_string().repeat(40),
            author: Person { name: author.into(), email: format!("{author}@EXAMPLE.com") },
            co_authors: vec![],
            committer: None,
            authored_at: "2026-11-02T10:00:00Z".parse().unwrap(),
            subject: format!("work by {author}"),
            tree: format!("{id_digit}{}", "0".repeat(39)),
            parent_tree: "f".repeat(40),
        }
    }

    fn now() -> Timestamp {
        "2026-11-03T09:00:00Z".parse().unwrap()
    }

    #[test]
    fn approvals_are_authenticated_and_never_self() {
        let (alice, alice_key) = member("alice", 1);
        let (bob, bob_key) = member("bob", 2);
        let outsider = KeyPair::from_seed([3; 32]);
        let keyring = Keyring { team: "shop".into(), members: vec![alice, bob] };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reviews.jsonl");
        let mut book = ReviewBook::open(&path, keyring.clone()).unwrap();

        let by_bob = commit_by("bob", 'b');
        let mut co_written = commit_by("carol", 'c');
        co_written
            .co_authors
            .push(Person { name: "Alice".into(), email: "alice@example.com".into() });
        let mut rewritten = commit_by("carol", 'd');
        rewritten.committer = Some(Person { name: "Bob".into(), email: "bob@example.com".into() });

        let cases: Vec<(&str, &KeyPair, &Commit, Result<(), &str>)> = vec![
            ("another member approves", &alice_key, &by_bob, Ok(())),
            (
                "author approves own commit",
                &bob_key,
                &by_bob,
                Err("bob may not approve commit bbbbbbbbbbbb"),
            ),
            (
                "co-author approves",
                &alice_key,
                &co_written,
                Err("alice may not approve commit cccccccccccc"),
            ),
            (
                "committer of another's commit approves",
                &bob_key,
                &rewritten,
                Err("bob may not approve commit dddddddddddd"),
            ),
            ("key outside the keyring", &outsider, &by_bob, Err("is not in team shop's keyring")),
        ];
        for (name, key, commit, expected) in cases {
            let got =
                book.approve(key, "repo", commit, now()).map(|_| ()).map_err(|e| e.to_string());
            match (got, expected) {
                (Ok(()), Ok(())) => {}
                (Err(message), Err(expected)) => {
                    assert!(message.contains(expected), "{name}: {message}")
                }
                (got, expected) => panic!("{name}: got {got:?}, expected {expected:?}"),
            }
        }
        assert_eq!(book.reviewers_of(&by_bob), ["alice"]);
        assert!(book.reviewers_of(&co_written).is_empty());

        // A squash-merge of the approved commit: another id and committer, the same tree.
        let mut squashed = commit_by("carol", 'e');
        squashed.tree = by_bob.tree.clone();
        assert_eq!(book.reviewers_of(&squashed), ["alice"]);
        // The same tree reached from another parent: a revert back to the approved content,
        // undoing whatever came between, is another change.
        let mut reverted = squashed.clone();
        reverted.parent_tree = "9".repeat(40);
        assert!(book.reviewers_of(&reverted).is_empty(), "a revert to an approved tree");
        reverted.parent_tree = String::new();
        assert!(book.reviewers_of(&reverted).is_empty(), "an unknown parent tree matches nothing");
        squashed.tree = String::new();
        assert!(book.reviewers_of(&squashed).is_empty(), "an unknown tree matches nothing");
        // Alice approved the content but wrote the squash commit: still not a review.
        let mut squashed_by_alice = commit_by("alice", 'f');
        squashed_by_alice.tree = by_bob.tree.clone();
        assert!(book.reviewers_of(&squashed_by_alice).is_empty());

        let reloaded = ReviewBook::open(&path, keyring.clone()).unwrap();
        assert_eq!(reloaded.reviewers_of(&by_bob), ["alice"]);
        assert!(reloaded.rejected.is_empty());

        // Editing the stored approval to name another reviewer breaks its signature.
        let text = std::fs::read_to_string(&path).unwrap();
        let record: Record = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        let Record::Signed { mut envelope } = record else { panic!("signed") };
        let body = crate::dsse::decode_base64(&envelope.payload).unwrap();
        let forged = String::from_utf8(body).unwrap().replace("alice", "bob");
        envelope.payload =
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, forged);
        std::fs::write(&path, serde_json::to_string(&Record::Signed { envelope }).unwrap() + "\n")
            .unwrap();
        let tampered = ReviewBook::open(&path, keyring).unwrap();
        assert!(tampered.reviewers_of(&by_bob).is_empty());
        assert_eq!(tampered.rejected.len(), 1);
    }

    #[test]
    fn approvals_signed_elsewhere_must_match_the_commit() {
        let (alice, alice_key) = member("alice", 1);
        let (bob, _) = member("bob", 2);
        let mut book =
            ReviewBook::in_memory(Keyring { team: "shop".into(), members: vec![alice, bob] });
        let commit = commit_by("bob", 'b');
        let mut other_tree = commit.clone();
        other_tree.tree = "f".repeat(40);
        let cases = [
            ("as signed", sign_approval(&alice_key, "alice", "repo", &commit, now()), Ok(())),
            (
                "another commit",
                sign_approval(&alice_key, "alice", "repo", &commit_by("bob", 'c'), now()),
                Err("is for commit cccc"),
            ),
            (
                "a tree the commit does not have",
                sign_approval(&alice_key, "alice", "repo", &other_tree, now()),
                Err("claims tree ffff"),
            ),
            (
                "alice's key, bob's name",
                sign_approval(&alice_key, "bob", "repo", &commit, now()),
                Err("signed by alice but names bob"),
            ),
        ];
        for (name, envelope, expected) in cases {
            let got = book.record_signed(envelope, &commit).map(|_| ()).map_err(|e| e.to_string());
            match (&got, expected) {
                (Ok(()), Ok(())) => {}
                (Err(message), Err(expected)) => {
                    assert!(message.contains(expected), "{name}: {message}")
                }
                _ => panic!("{name}: got {got:?}, expected {expected:?}"),
            }
        }
    }

    #[test]
    fn signed_keyrings_ignore_edits_to_the_readable_copy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("team-keyring.json");
        let root = KeyPair::from_seed([8; 32]);
        let (alice, _) = member("alice", 1);
        let keyring = Keyring { team: "shop".into(), members: vec![alice] };
        crate::keys::write_signed(&path, &keyring.to_bytes(), KEYRING_PAYLOAD_TYPE, &root).unwrap();
        let (mallory, _) = member("mallory", 6);
        let mut edited = keyring.clone();
        edited.upsert(mallory);
        edited.write(&path).unwrap();
        assert_eq!(Keyring::read_signed(&path, &root.public()).unwrap(), keyring);
        let other_root = KeyPair::from_seed([9; 32]);
        let error = Keyring::read_signed(&path, &other_root.public()).unwrap_err().to_string();
        assert!(error.contains("not signed by the pinned trust root"), "{error}");
    }

    #[test]
    fn keyrings_refuse_ambiguous_members() {
        let (alice, _) = member("alice", 1);
        let (mut bob, _) = member("bob", 2);
        let (mut carol, _) = member("carol", 3);
        carol.emails.push("ALICE@example.com".into());
        bob.public_key = alice.public_key.clone();
        let mut bad_key = member("dave", 4).0;
        bad_key.public_key = "not-a-key".into();
        for (members, expected) in [
            (vec![alice.clone(), bob], "name or key used twice"),
            (vec![alice.clone(), carol], "shares an email with alice"),
            (vec![bad_key], "not a base64 ed25519 key"),
        ] {
            let error = Keyring { team: "t".into(), members }.check().unwrap_err();
            assert!(error.contains(expected), "{error}");
        }
        assert!(Keyring { team: "t".into(), members: vec![alice] }.check().is_ok());
    }

    #[test]
    fn forge_approvals_map_logins_and_refuse_self_approval() {
        let (alice, _) = member("alice", 1);
        let (bob, _) = member("bob", 2);
        let mut book =
            ReviewBook::in_memory(Keyring { team: "shop".into(), members: vec![alice, bob] });
        let commit = commit_by("bob", 'b');
        let approval = |reviewer: &str, author: &str| ForgeApproval {
            forge: Forge::GitHub,
            repository: "https://github.com/acme/shop".into(),
            commit: commit.id.clone(),
            reviewer_login: reviewer.into(),
            author_login: Some(author.into()),
            delivery: "d-1".into(),
        };
        assert!(
            book.import_forge(&approval("mallory", "bob-gh"), &commit, now())
                .unwrap_err()
                .to_string()
                .contains("not in team")
        );
        assert!(
            book.import_forge(&approval("bob-gh", "bob-gh"), &commit, now())
                .unwrap_err()
                .to_string()
                .contains("own change")
        );
        assert!(
            book.import_forge(&approval("bob-gh", "someone"), &commit, now())
                .unwrap_err()
                .to_string()
                .contains("they wrote it")
        );
        book.import_forge(&approval("alice-gh", "bob-gh"), &commit, now()).unwrap();
        assert_eq!(book.reviewers_of(&commit), ["alice"]);
    }
}
