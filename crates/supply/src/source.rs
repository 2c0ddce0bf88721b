//! Sources: git repositories watched on their mainline branch, through the `git` command line.
//!
//! A source is a local path or a remote URL. Remote repositories are mirrored into a cache
//! directory and fetched before each look; local ones are read in place. From a repository this
//! module reads the mainline head, the commits between two points with their authors, and exports
//! the exact tree of one commit into a clean directory (`git archive`, so no `.git`, no untracked
//! files and no hooks come along). [`Poller`] turns "the head moved" into one [`Trigger`] per new
//! head with the commits it brings.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::{Digest, Error};

/// The most commits one artifact may bring since the previous one. Past this, reviewing them is
/// not a review; a pipeline configures a trusted base near the head for its first artifact.
pub const MAX_COMMITS_PER_ARTIFACT: usize = 1000;

/// A person as git records them.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Person {
    pub name: String,
    pub email: String,
}

impl std::fmt::Display for Person {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} <{}>", self.name, self.email)
    }
}

/// One commit on the mainline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    /// The full commit id (40 hex digits for SHA-1 repositories, 64 for SHA-256).
    pub id: String,
    pub author: Person,
    /// People named in `Co-authored-by:` trailers; they may not review the commit either.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub co_authors: Vec<Person>,
    /// Who committed it, when not the author (a cherry-pick, an amended commit). Git's author
    /// field is self-asserted, so the committer may not review the commit either: someone who
    /// rewrites another's commit under their name cannot then approve it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub committer: Option<Person>,
    pub authored_at: Timestamp,
    /// The first line of the message.
    pub subject: String,
    /// The id of the commit's tree: its whole content. Empty when unknown (webhook payloads do
    /// not carry it). An approval of one commit also covers a commit with the same tree and the
    /// same parent tree, e.g. the squash-merge of an approved pull request: the change is
    /// exactly what was reviewed, applied to exactly what it was reviewed against.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tree: String,
    /// The tree of the commit's first parent; empty for a root commit or when unknown. A commit
    /// that returns to an approved tree from another parent (a revert that undoes a later fix)
    /// is a different change, and is not covered by that approval.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub parent_tree: String,
}

impl Commit {
    /// Everyone who wrote the commit.
    pub fn authors(&self) -> impl Iterator<Item = &Person> {
        std::iter::once(&self.author).chain(&self.co_authors)
    }

    /// Everyone who may not review the commit: its authors and its committer.
    pub fn writers(&self) -> impl Iterator<Item = &Person> {
        self.authors().chain(&self.committer)
    }

    pub fn short_id(&self) -> &str {
        &self.id[..self.id.len().min(12)]
    }
}

/// Whether `text` is a full commit id. Ids reach git only after this check, so a webhook payload
/// cannot smuggle an option or a revision expression into a git command.
pub fn is_commit_id(text: &str) -> bool {
    (text.len() == 40 || text.len() == 64)
        && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Whether a repository string names a remote (URL or scp-like `user@host:path`), not a path.
pub fn is_remote(repository: &str) -> bool {
    repository.contains("://")
        || (repository.contains('@') && repository.contains(':') && !repository.starts_with('/'))
}

/// A repository name normalised for comparison: lowercase, without scheme, credentials,
/// trailing `/` or `.git`, and with scp-like `host:path` written `host/path`.
pub fn normalize_repository(repository: &str) -> String {
    let mut text = repository.trim().to_lowercase();
    if let Some((_, rest)) = text.split_once("://") {
        text = rest.to_string();
    }
    if let Some((_, rest)) = text.split_once('@') {
        text = rest.replacen(':', "/", 1);
    }
    let text = text.trim_end_matches('/');
    text.strip_suffix(".git").unwrap_or(text).to_string()
}

/// A git repository opened for reading, local or mirrored.
#[derive(Clone, Debug)]
pub struct Repository {
    /// As the pipeline names it.
    pub name: String,
    pub branch: String,
    /// Where git commands run: the work tree or the mirror.
    git_dir: PathBuf,
}

impl Repository {
    /// Opens a pipeline source. Remote repositories are mirrored (or fetched again) under
    /// `cache`; local paths are used in place.
    pub fn open(source: &gantry_model::Source, cache: &Path) -> Result<Repository, Error> {
        let repository = Repository {
            name: source.repository.clone(),
            branch: source.branch.clone(),
            git_dir: PathBuf::from(&source.repository),
        };
        if !is_remote(&source.repository) {
            if !Path::new(&source.repository).exists() {
                return Err(Error::Source(format!(
                    "source repository {} does not exist; check `sources` in the pipeline",
                    source.repository
                )));
            }
            return Ok(repository);
        }
        let name = format!(
            "{}.git",
            &Digest::of(normalize_repository(&source.repository).as_bytes()).hex()[..16]
        );
        let mirror = cache.join(name);
        if mirror.exists() {
            git(&mirror, &["fetch", "--prune", "--quiet", "origin"])?;
        } else {
            std::fs::create_dir_all(cache).map_err(|source| Error::io(cache, source))?;
            let target = mirror.display().to_string();
            git(cache, &["clone", "--mirror", "--quiet", "--", &source.repository, &target])?;
        }
        Ok(Repository { git_dir: mirror, ..repository })
    }

    fn branch_ref(&self) -> String {
        format!("refs/heads/{}", self.branch)
    }

    /// The commit at the tip of the mainline branch.
    pub fn head(&self) -> Result<String, Error> {
        let reference = format!("{}^{{commit}}", self.branch_ref());
        self.rev_parse(&reference).map_err(|_| {
            Error::Source(format!(
                "branch {} not found in {}; check the source's `branch`",
                self.branch, self.name
            ))
        })
    }

    /// The full id of a commit given by a (possibly abbreviated) id, tag or branch.
    pub fn resolve(&self, revision: &str) -> Result<String, Error> {
        if revision.starts_with('-') {
            return Err(Error::Source(format!("{revision:?} is not a revision")));
        }
        self.rev_parse(&format!("{revision}^{{commit}}"))
            .map_err(|_| Error::Source(format!("no commit {revision} in {}", self.name)))
    }

    fn rev_parse(&self, expression: &str) -> Result<String, Error> {
        let out = git(
            &self.git_dir,
            &["rev-parse", "--verify", "--quiet", "--end-of-options", expression],
        )?;
        Ok(String::from_utf8_lossy(&out).trim().to_string())
    }

    /// Whether `commit` is on the mainline branch (an ancestor of its head, or the head).
    pub fn is_on_mainline(&self, commit: &str) -> Result<bool, Error> {
        check_commit_id(commit)?;
        self.is_ancestor(commit, &self.branch_ref())
    }

    /// Whether `ancestor` is `descendant` or one of its ancestors. A commit unknown to the
    /// repository is nobody's ancestor.
    pub fn is_ancestor(&self, ancestor: &str, descendant: &str) -> Result<bool, Error> {
        check_commit_id(ancestor)?;
        let status = Command::new("git")
            .current_dir(&self.git_dir)
            .args(["merge-base", "--is-ancestor", ancestor, descendant])
            .envs(GIT_ENV)
            .stderr(Stdio::null())
            .status()
            .map_err(|source| Error::io(&self.git_dir, source))?;
        Ok(status.success())
    }

    /// How many commits `commit` reaches, itself included: its position on the mainline. A
    /// descendant reaches every commit its ancestors reach and itself, so a later build always
    /// numbers higher than the builds it follows.
    pub fn depth(&self, commit: &str) -> Result<u64, Error> {
        check_commit_id(commit)?;
        let out = git(&self.git_dir, &["rev-list", "--count", commit, "--"])?;
        String::from_utf8_lossy(&out).trim().parse().map_err(|_| {
            Error::Source(format!(
                "git rev-list --count {commit} in {} did not answer a number",
                self.name
            ))
        })
    }

    /// One commit's record.
    pub fn commit(&self, id: &str) -> Result<Commit, Error> {
        check_commit_id(id)?;
        let mut commits = self.log(&[id, "-n", "1"])?;
        commits.pop().ok_or_else(|| Error::Source(format!("no commit {id} in {}", self.name)))
    }

    /// The commits reachable from `until` but not from `since`, newest first; every ancestor when
    /// there is no `since`. Refuses more than [`MAX_COMMITS_PER_ARTIFACT`].
    pub fn commits_between(&self, since: Option<&str>, until: &str) -> Result<Vec<Commit>, Error> {
        check_commit_id(until)?;
        let range = match since {
            Some(since) => {
                check_commit_id(since)?;
                format!("{since}..{until}")
            }
            None => until.to_string(),
        };
        let limit = (MAX_COMMITS_PER_ARTIFACT + 1).to_string();
        let commits = self.log(&[&range, "-n", &limit])?;
        if commits.len() > MAX_COMMITS_PER_ARTIFACT {
            return Err(Error::Source(format!(
                "more than {MAX_COMMITS_PER_ARTIFACT} commits lead to {until} in {}; \
                 configure a trusted base nearer the head (a reviewed commit)",
                self.name
            )));
        }
        Ok(commits)
    }

    fn log(&self, revisions: &[&str]) -> Result<Vec<Commit>, Error> {
        const FORMAT: &str = "--format=%H%x00%T%x00%P%x00%an%x00%ae%x00%cn%x00%ce%x00%aI%x00%s%x00%(trailers:key=Co-authored-by,valueonly,separator=%x1f)%x1e";
        let mut args = vec!["log", FORMAT];
        args.extend_from_slice(revisions);
        args.push("--");
        let out = git(&self.git_dir, &args)?;
        let text = String::from_utf8_lossy(&out);
        let mut commits = text
            .split('\u{1e}')
            .map(|record| record.trim_start_matches('\n'))
            .filter(|record| !record.is_empty())
            .map(|record| {
                parse_log_record(record).ok_or_else(|| {
                    Error::Source(format!(
                        "unexpected `git log` output in {}: {record:?}",
                        self.name
                    ))
                })
            })
            .collect::<Result<Vec<(Commit, Option<String>)>, Error>>()?;
        // Every first parent's tree in one call.
        let parents: Vec<String> = commits
            .iter()
            .filter_map(|(_, parent)| parent.as_ref().map(|p| format!("{p}^{{tree}}")))
            .collect();
        if !parents.is_empty() {
            // Each argument is a full commit id from `git log`, never an option; rev-parse
            // would echo a `--end-of-options` back as a line of its output and shift every
            // tree onto the wrong commit.
            let mut args = vec!["rev-parse"];
            args.extend(parents.iter().map(String::as_str));
            let out = git(&self.git_dir, &args)?;
            let trees: Vec<String> = String::from_utf8_lossy(&out)
                .lines()
                .map(str::to_string)
                .filter(|tree| is_commit_id(tree))
                .collect();
            if trees.len() != parents.len() {
                return Err(Error::Source(format!(
                    "`git rev-parse` named {} trees for {} parents in {}",
                    trees.len(),
                    parents.len(),
                    self.name
                )));
            }
            let mut trees = trees.into_iter();
            for (commit, parent) in &mut commits {
                if parent.is_some() {
                    commit.parent_tree = trees.next().unwrap_or_default();
                }
            }
        }
        Ok(commits.into_iter().map(|(commit, _)| commit).collect())
    }

    /// For each of `ids` that carries a git SSH signature (`gpg.format=ssh`) by one of the
    /// keys in `allowed_signers` (an OpenSSH allowed-signers file), the principal it names and
    /// the key's fingerprint. Unsigned commits and signatures by other keys are left out.
    pub fn ssh_signers(
        &self,
        ids: &[String],
        allowed_signers: &Path,
    ) -> Result<BTreeMap<String, (String, String)>, Error> {
        let mut signers = BTreeMap::new();
        if ids.is_empty() {
            return Ok(signers);
        }
        for id in ids {
            check_commit_id(id)?;
        }
        let config = format!("gpg.ssh.allowedSignersFile={}", allowed_signers.display());
        let mut args = vec![
            "-c",
            "gpg.format=ssh",
            "-c",
            &config,
            "log",
            "--no-walk=unsorted",
            "--format=%H%x00%G?%x00%GS%x00%GF%x1e",
        ];
        args.extend(ids.iter().map(String::as_str));
        args.push("--");
        let out = git(&self.git_dir, &args)?;
        for record in String::from_utf8_lossy(&out).split('\u{1e}') {
            let fields: Vec<&str> = record.trim_start_matches('\n').split('\0').collect();
            // G: a good signature by a key the allowed-signers file names.
            if let [id, "G", principal, fingerprint] = fields[..] {
                signers.insert(id.to_string(), (principal.to_string(), fingerprint.to_string()));
            }
        }
        Ok(signers)
    }

    /// Writes the exact tree of `commit` into `destination`, which must be empty or absent.
    pub fn export(&self, commit: &str, destination: &Path) -> Result<(), Error> {
        check_commit_id(commit)?;
        std::fs::create_dir_all(destination).map_err(|source| Error::io(destination, source))?;
        let tarball = git(&self.git_dir, &["archive", "--format=tar", commit])?;
        tar::Archive::new(&tarball[..])
            .unpack(destination)
            .map_err(|source| Error::io(destination, source))
    }
}

fn check_commit_id(id: &str) -> Result<(), Error> {
    if is_commit_id(id) {
        Ok(())
    } else {
        Err(Error::Source(format!(
            "{id:?} is not a full commit id (40 or 64 lowercase hex digits)"
        )))
    }
}

/// Parses a `Name <email>` trailer value.
pub fn parse_person(text: &str) -> Option<Person> {
    let (name, rest) = text.trim().split_once('<')?;
    let email = rest.strip_suffix('>')?;
    Some(Person { name: name.trim().to_string(), email: email.trim().to_string() })
}

/// A commit and its first parent, if any.
fn parse_log_record(record: &str) -> Option<(Commit, Option<String>)> {
    let fields: Vec<&str> = record.split('\0').collect();
    let [id, tree, parents, name, email, committer_name, committer_email, date, subject, trailers] =
        fields[..]
    else {
        return None;
    };
    let parent = parents.split_whitespace().next().map(str::to_string);
    let author = Person { name: name.to_string(), email: email.to_string() };
    let committer = Person { name: committer_name.to_string(), email: committer_email.to_string() };
    let commit = Commit {
        id: id.to_string(),
        committer: (!committer.email.eq_ignore_ascii_case(&author.email)).then_some(committer),
        author,
        co_authors: trailers
            .split('\u{1f}')
            .filter(|value| !value.trim().is_empty())
            .filter_map(parse_person)
            .collect(),
        authored_at: date.parse().ok()?,
        subject: subject.to_string(),
        tree: tree.to_string(),
        parent_tree: String::new(),
    };
    Some((commit, parent))
}

/// Environment for every git command: no prompts, stable messages, no user or system config
/// that could run hooks or rewrite URLs behind our back.
const GIT_ENV: [(&str, &str); 4] = [
    ("GIT_TERMINAL_PROMPT", "0"),
    ("LC_ALL", "C"),
    ("GIT_CONFIG_NOSYSTEM", "1"),
    ("GIT_CONFIG_GLOBAL", "/dev/null"),
];

/// Runs git in `dir` and returns its standard output.
pub(crate) fn git(dir: &Path, args: &[&str]) -> Result<Vec<u8>, Error> {
    let output = Command::new("git")
        .current_dir(dir)
        .args(args)
        .envs(GIT_ENV)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| Error::io(dir, source))?;
    if output.status.success() {
        Ok(output.stdout)
    } else {
        Err(Error::Git {
            args: args.join(" "),
            place: dir.display().to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        })
    }
}

/// A pipeline start: the source's mainline moved to `commit`, bringing `commits`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trigger {
    pub repository: String,
    pub branch: String,
    pub commit: String,
    /// Newest first, `commit` included.
    pub commits: Vec<Commit>,
}

/// Remembers the last head seen per source and reports each move once.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Poller {
    /// `repository#branch` to the last head seen.
    pub last_seen: BTreeMap<String, String>,
}

impl Poller {
    fn key(repository: &Repository) -> String {
        format!("{}#{}", normalize_repository(&repository.name), repository.branch)
    }

    /// Looks at the source's head; a new head gives a trigger with the commits since the last
    /// one seen (the head alone the first time: the build computes the commit range an
    /// artifact carries, and a long history must not stop the first poll). Safe to call again:
    /// an unchanged head gives nothing.
    pub fn poll(&mut self, repository: &Repository) -> Result<Option<Trigger>, Error> {
        let head = repository.head()?;
        let key = Poller::key(repository);
        let since = self.last_seen.get(&key).cloned();
        if since.as_deref() == Some(head.as_str()) {
            return Ok(None);
        }
        let commits = match &since {
            Some(since) if repository.is_ancestor(since, &head)? => {
                repository.commits_between(Some(since), &head)?
            }
            // First sight, or a rewritten branch: the head alone.
            _ => vec![repository.commit(&head)?],
        };
        self.last_seen.insert(key, head.clone());
        Ok(Some(Trigger {
            repository: repository.name.clone(),
            branch: repository.branch.clone(),
            commit: head,
            commits,
        }))
    }

    /// Records a head learnt another way (a push webhook), so polling does not trigger it again.
    pub fn saw(&mut self, repository: &Repository, head: &str) {
        self.last_seen.insert(Poller::key(repository), head.to_string());
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A scratch repository whose commits have fixed authors and dates.
    pub struct Scratch {
        pub dir: tempfile::TempDir,
    }

    impl Scratch {
        pub fn new() -> Scratch {
            let dir = tempfile::tempdir().unwrap();
            git(dir.path(), &["init", "--quiet", "--initial-branch=main"]).unwrap();
            Scratch { dir }
        }

        pub fn path(&self) -> &Path {
            self.dir.path()
        }

        /// Writes files and commits them as `author`; returns the commit id.
        pub fn commit(&self, author: &str, message: &str, files: &[(&str, &str)]) -> String {
            for (path, content) in files {
                let path = self.path().join(path);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, content).unwrap();
            }
            git(self.path(), &["add", "--all"]).unwrap();
            let output = Command::new("git")
                .current_dir(self.path())
                .args(["commit", "--quiet", "--allow-empty", "-m", message])
                .envs(GIT_ENV)
                .env("GIT_AUTHOR_NAME", author)
                .env("GIT_AUTHOR_EMAIL", format!("{author}@example.com"))
                .env("GIT_AUTHOR_DATE", "2026-11-02T10:00:00Z")
                .env("GIT_COMMITTER_NAME", author)
                .env("GIT_COMMITTER_EMAIL", format!("{author}@example.com"))
                .env("GIT_COMMITTER_DATE", "2026-11-02T10:00:00Z")
                .output()
                .unwrap();
            assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
            String::from_utf8(git(self.path(), &["rev-parse", "HEAD"]).unwrap())
                .unwrap()
                .trim()
                .to_string()
        }

        pub fn source(&self) -> gantry_model::Source {
            gantry_model::Source {
                repository: self.path().display().to_string(),
                branch: "main".into(),
            }
        }
    }

    #[test]
    fn reads_commits_authors_and_trees() {
        let scratch = Scratch::new();
        let first = scratch.commit("alice", "first", &[("a.txt", "1")]);
        let second = scratch.commit(
            "bob",
            "second\n\nCo-authored-by: Carol <carol@example.com>",
            &[("b/c.txt", "2")],
        );
        let cache = tempfile::tempdir().unwrap();
        let repository = Repository::open(&scratch.source(), cache.path()).unwrap();
        assert_eq!(repository.head().unwrap(), second);
        assert_eq!(repository.resolve(&second[..8]).unwrap(), second);
        assert!(repository.is_on_mainline(&first).unwrap());
        assert!(repository.is_ancestor(&first, &second).unwrap());
        assert!(!repository.is_ancestor(&second, &first).unwrap());
        assert!(!repository.is_ancestor(&"0".repeat(40), &second).unwrap());

        let commits = repository.commits_between(Some(&first), &second).unwrap();
        let summary: Vec<_> = commits
            .iter()
            .map(|c| (c.subject.as_str(), c.authors().map(|p| p.to_string()).collect::<Vec<_>>()))
            .collect();
        assert_eq!(
            summary,
            [(
                "second",
                vec!["bob <bob@example.com>".to_string(), "Carol <carol@example.com>".to_string()]
            )]
        );
        assert_eq!(repository.commits_between(None, &second).unwrap().len(), 2);
        assert_eq!(commits[0].authored_at.to_string(), "2026-11-02T10:00:00Z");
        assert_eq!(commits[0].committer, None, "committed by its author");
        // Dave amends Bob's commit: Bob stays the author, Dave is recorded as committer.
        let amended = Command::new("git")
            .current_dir(scratch.path())
            .args(["commit", "--quiet", "--amend", "--no-edit"])
            .envs(GIT_ENV)
            .env("GIT_COMMITTER_NAME", "Dave")
            .env("GIT_COMMITTER_EMAIL", "dave@example.com")
            .status()
            .unwrap();
        assert!(amended.success());
        let head = repository.head().unwrap();
        let amended = repository.commit(&head).unwrap();
        assert_eq!(amended.author.email, "bob@example.com");
        assert_eq!(
            amended.committer,
            Some(Person { name: "Dave".into(), email: "dave@example.com".into() })
        );
        let tree = git(scratch.path(), &["rev-parse", &format!("{second}^{{tree}}")]).unwrap();
        assert_eq!(commits[0].tree, String::from_utf8(tree).unwrap().trim());

        let out = tempfile::tempdir().unwrap();
        repository.export(&first, out.path()).unwrap();
        assert!(out.path().join("a.txt").exists());
        assert!(!out.path().join("b").exists());
        assert!(!out.path().join(".git").exists());
    }

    #[test]
    fn remote_repositories_are_mirrored_and_polled() {
        let scratch = Scratch::new();
        let first = scratch.commit("alice", "first", &[("a.txt", "1")]);
        let cache = tempfile::tempdir().unwrap();
        let source = gantry_model::Source {
            repository: format!("file://{}", scratch.path().display()),
            branch: "main".into(),
        };
        let mut poller = Poller::default();
        let repository = Repository::open(&source, cache.path()).unwrap();
        let trigger = poller.poll(&repository).unwrap().unwrap();
        assert_eq!((trigger.commit.as_str(), trigger.commits.len()), (first.as_str(), 1));
        assert_eq!(poller.poll(&repository).unwrap(), None);

        let second = scratch.commit("bob", "second", &[("a.txt", "2")]);
        let third = scratch.commit("bob", "third", &[("a.txt", "3")]);
        let repository = Repository::open(&source, cache.path()).unwrap();
        let trigger = poller.poll(&repository).unwrap().unwrap();
        let ids: Vec<_> = trigger.commits.iter().map(|c| c.id.clone()).collect();
        assert_eq!(ids, [third.clone(), second]);
        assert_eq!(trigger.commit, third);

        // A first poll of a long history names only the head: no walk of all of it.
        for n in 0..(MAX_COMMITS_PER_ARTIFACT as u32 / 100) {
            scratch.commit("bob", &format!("more {n}"), &[("a.txt", &n.to_string())]);
        }
        let head = scratch.commit("bob", "head", &[("a.txt", "head")]);
        let repository = Repository::open(&source, cache.path()).unwrap();
        let trigger = Poller::default().poll(&repository).unwrap().unwrap();
        assert_eq!(trigger.commits.iter().map(|c| c.id.clone()).collect::<Vec<_>>(), [head]);
    }

    #[test]
    fn refuses_what_is_not_a_commit_id() {
        let scratch = Scratch::new();
        scratch.commit("alice", "first", &[("a.txt", "1")]);
        let repository = Repository::open(&scratch.source(), Path::new("/nonexistent")).unwrap();
        for bad in ["--upload-pack=x", "HEAD", "abc", &"G".repeat(40)] {
            assert!(repository.commit(bad).is_err(), "{bad}");
        }
        assert!(repository.resolve("--output=/tmp/x").is_err());
    }

    #[test]
    fn normalizes_repository_names() {
        for (a, b) in [
            ("https://github.com/Acme/Shop.git", "git@github.com:acme/shop"),
            ("https://gitlab.example.com/acme/shop/", "ssh://git@gitlab.example.com/acme/shop.git"),
        ] {
            assert_eq!(normalize_repository(a), normalize_repository(b), "{a} vs {b}");
        }
        assert!(is_remote("git@github.com:acme/shop.git"));
        assert!(!is_remote("/srv/git/shop"));
    }
}
