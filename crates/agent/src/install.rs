//! The Install event, as CodeDeploy's agent carries it out: remove the files the previous
//! deployment of this pipeline installed (its cleanup list), copy the revision's `files` to their
//! destinations under `file_exists_behavior`, then apply `permissions`.
//!
//! Conflicts are found before anything is copied, so a DISALLOWed file fails the event with the
//! box unchanged. Only files this agent copied are ever removed; files hook scripts create are
//! theirs to manage, as in CodeDeploy.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::Error;
use crate::appspec::{AppSpec, FileExistsBehavior, ObjectType, Permission};

/// The most files one Install event copies; a revision that maps more has mapped a whole
/// filesystem by mistake (the supply chain's package limit is the same).
pub const MAX_INSTALLED_FILES: usize = gantry_supply::artifact::MAX_PACKAGE_FILES;

/// What the Install event put on the box: every file and link it copied and every directory it
/// created, so the next deployment can remove exactly these.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Installed {
    pub files: Vec<PathBuf>,
    pub directories: Vec<PathBuf>,
}

/// One copy the Install event makes.
struct Copy {
    source: PathBuf,
    destination: PathBuf,
}

/// Removes what the previous deployment installed: files and links first, then the directories
/// it created, deepest first, when they are empty.
pub fn remove_previous(previous: &Installed) -> Result<(), Error> {
    for file in &previous.files {
        match std::fs::remove_file(file) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(Error::io(file, error)),
        }
    }
    let mut directories = previous.directories.clone();
    directories.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    for directory in &directories {
        // Not empty: something else lives there now, so it stays.
        let _ = std::fs::remove_dir(directory);
    }
    Ok(())
}

fn walk(root: &Path, relative: &Path, out: &mut Vec<PathBuf>) -> Result<(), Error> {
    let directory = root.join(relative);
    let mut entries: Vec<_> = std::fs::read_dir(&directory)
        .map_err(|e| Error::io(&directory, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| Error::io(&directory, e))?;
    entries.sort_by_key(|entry| entry.file_name());
    for entry in entries {
        let child = relative.join(entry.file_name());
        let kind = entry.file_type().map_err(|e| Error::io(entry.path(), e))?;
        if kind.is_dir() {
            walk(root, &child, out)?;
        } else {
            out.push(child);
        }
        if out.len() > MAX_INSTALLED_FILES {
            return Err(Error::Install(format!(
                "the files section maps more than {MAX_INSTALLED_FILES} files"
            )));
        }
    }
    Ok(())
}

/// The copies `files` asks for: a file goes into its destination directory; a directory's
/// contents (not the directory itself) go below the destination; `/` is the whole revision.
fn plan(spec: &AppSpec, bundle: &Path) -> Result<Vec<Copy>, Error> {
    let mut copies = Vec::new();
    for mapping in &spec.files {
        let source_root =
            if mapping.source == "/" { bundle.to_path_buf() } else { bundle.join(&mapping.source) };
        let metadata =
            std::fs::symlink_metadata(&source_root).map_err(|e| Error::io(&source_root, e))?;
        if metadata.is_dir() {
            let mut relatives = Vec::new();
            walk(&source_root, Path::new(""), &mut relatives)?;
            for relative in relatives {
                copies.push(Copy {
                    source: source_root.join(&relative),
                    destination: mapping.destination.join(&relative),
                });
            }
        } else {
            let name = source_root.file_name().expect("a file has a name");
            copies.push(Copy {
                source: source_root.clone(),
                destination: mapping.destination.join(name),
            });
        }
    }
    Ok(copies)
}

/// Copies the revision's files and applies its permissions. `previous` is what the last
/// deployment installed (already removed by [`remove_previous`]).
pub fn install(spec: &AppSpec, bundle: &Path) -> Result<Installed, Error> {
    let copies = plan(spec, bundle)?;
    let mut seen = BTreeSet::new();
    let mut conflicts = Vec::new();
    let mut skipped = BTreeSet::new();
    for copy in &copies {
        if !seen.insert(copy.destination.clone()) {
            return Err(Error::Install(format!(
                "two files sections map onto {}; each destination may come from one source",
                copy.destination.display()
            )));
        }
        match std::fs::symlink_metadata(&copy.destination) {
            Err(_) => {}
            Ok(metadata) if metadata.is_dir() => {
                return Err(Error::Install(format!(
                    "{} is a directory on this box, where the revision has a file",
                    copy.destination.display()
                )));
            }
            Ok(_) => match spec.file_exists_behavior {
                FileExistsBehavior::Disallow => conflicts.push(copy.destination.clone()),
                FileExistsBehavior::Overwrite => {}
                FileExistsBehavior::Retain => {
                    skipped.insert(copy.destination.clone());
                }
            },
        }
    }
    if !conflicts.is_empty() {
        return Err(Error::Install(format!(
            "file_exists_behavior is DISALLOW (the default) and {} file(s) not installed by the previous deployment exist: {}; remove them or set OVERWRITE or RETAIN",
            conflicts.len(),
            conflicts.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        )));
    }

    let mut installed = Installed::default();
    for copy in &copies {
        let parent = copy.destination.parent().expect("an absolute destination has a parent");
        create_directories(parent, &mut installed.directories)?;
        if skipped.contains(&copy.destination) {
            continue;
        }
        copy_one(&copy.source, &copy.destination)?;
        installed.files.push(copy.destination.clone());
    }
    apply_permissions(&spec.permissions, &installed)?;
    Ok(installed)
}

fn create_directories(directory: &Path, created: &mut Vec<PathBuf>) -> Result<(), Error> {
    if directory.is_dir() {
        return Ok(());
    }
    if let Some(parent) = directory.parent() {
        create_directories(parent, created)?;
    }
    std::fs::create_dir(directory).map_err(|e| Error::io(directory, e))?;
    created.push(directory.to_path_buf());
    Ok(())
}

fn copy_one(source: &Path, destination: &Path) -> Result<(), Error> {
    let metadata = std::fs::symlink_metadata(source).map_err(|e| Error::io(source, e))?;
    if std::fs::symlink_metadata(destination).is_ok() {
        std::fs::remove_file(destination).map_err(|e| Error::io(destination, e))?;
    }
    if metadata.file_type().is_symlink() {
        let target = std::fs::read_link(source).map_err(|e| Error::io(source, e))?;
        std::os::unix::fs::symlink(&target, destination).map_err(|e| Error::io(destination, e))?;
    } else {
        // std::fs::copy keeps the source's permission bits.
        std::fs::copy(source, destination).map_err(|e| Error::io(destination, e))?;
    }
    Ok(())
}

/// A glob over one name, `*` matching any run of characters, as CodeDeploy's patterns do; names
/// with a `/` (below a subdirectory) never match.
fn glob(name: &str, pattern: &str) -> bool {
    if name.contains('/') {
        return false;
    }
    fn matches(name: &[u8], pattern: &[u8]) -> bool {
        match pattern.split_first() {
            None => name.is_empty(),
            Some((b'*', rest)) => (0..=name.len()).any(|skip| matches(&name[skip..], rest)),
            Some((c, rest)) => name.first() == Some(c) && matches(&name[1..], rest),
        }
    }
    matches(name.as_bytes(), pattern.as_bytes())
}

/// The installed objects a permission applies to. A file `object` is itself the only one (its
/// pattern must then be `**` with no exceptions). For a directory: everything installed below it
/// of the listed types — all of it for `**`, else the names directly below it matching the
/// pattern — without the exceptions, and never the object itself.
fn targets(permission: &Permission, installed: &Installed) -> Result<Vec<PathBuf>, Error> {
    let object = &permission.object;
    if installed.files.contains(object) {
        if permission.pattern != "**" || !permission.except.is_empty() {
            return Err(Error::Install(format!(
                "permissions: object {} is a file, so it takes no pattern or except",
                object.display()
            )));
        }
        return Ok(vec![object.clone()]);
    }
    let candidates = installed
        .files
        .iter()
        .map(|p| (p, ObjectType::File))
        .chain(installed.directories.iter().map(|p| (p, ObjectType::Directory)));
    let mut out = Vec::new();
    for (path, kind) in candidates {
        let Ok(relative) = path.strip_prefix(object) else { continue };
        let relative = relative.to_string_lossy();
        if relative.is_empty() || !permission.types.contains(&kind) {
            continue;
        }
        let included = permission.pattern == "**" || glob(&relative, &permission.pattern);
        let excepted = permission.except.iter().any(|except| glob(&relative, except));
        if included && !excepted {
            out.push(path.clone());
        }
    }
    out.sort();
    Ok(out)
}

fn apply_permissions(permissions: &[Permission], installed: &Installed) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    for permission in permissions {
        let uid = match &permission.owner {
            Some(owner) => Some(
                nix::unistd::User::from_name(owner)
                    .ok()
                    .flatten()
                    .ok_or_else(|| Error::Install(format!("permissions: no user {owner:?}")))?
                    .uid
                    .as_raw(),
            ),
            None => None,
        };
        let gid = match &permission.group {
            Some(group) => Some(
                nix::unistd::Group::from_name(group)
                    .ok()
                    .flatten()
                    .ok_or_else(|| Error::Install(format!("permissions: no group {group:?}")))?
                    .gid
                    .as_raw(),
            ),
            None => None,
        };
        for path in targets(permission, installed)? {
            let is_link = std::fs::symlink_metadata(&path)
                .map(|m| m.file_type().is_symlink())
                .unwrap_or(false);
            if uid.is_some() || gid.is_some() {
                std::os::unix::fs::lchown(&path, uid, gid).map_err(|e| Error::io(&path, e))?;
            }
            if is_link {
                continue;
            }
            if let Some(mode) = permission.mode {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                    .map_err(|e| Error::io(&path, e))?;
            }
            if !permission.acls.is_empty() {
                set_acls(&path, &permission.acls)?;
            }
        }
    }
    Ok(())
}

/// Replaces the extended ACL of `path` with `entries`, through setfacl (Debian's `acl` package).
fn set_acls(path: &Path, entries: &[String]) -> Result<(), Error> {
    let output = std::process::Command::new("setfacl")
        .arg("-b")
        .arg("-m")
        .arg(entries.join(","))
        .arg(path)
        .output()
        .map_err(|error| {
            Error::Install(format!(
                "permissions: acls need setfacl (Debian package `acl`), which could not run: {error}"
            ))
        })?;
    if !output.status.success() {
        return Err(Error::Install(format!(
            "permissions: setfacl {} {}: {}",
            entries.join(","),
            path.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn globs_match_one_name() {
        for (name, pattern, expected) in [
            ("my-file-3.txt", "*-3.txt", true),
            ("my-file-2.txt", "*-3.txt", false),
            ("my-folder-1", "*my-folder*", true),
            ("my-folder-2/my-folder-3", "*my-folder*", false),
            ("a", "a", true),
            ("ab", "a", false),
            ("", "*", true),
        ] {
            assert_eq!(glob(name, pattern), expected, "{name} ~ {pattern}");
        }
    }
}
