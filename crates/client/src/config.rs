//! Where the controller is and which token to send: from a flag, else the environment
//! (`GANTRY_SERVER`, `GANTRY_TOKEN`), else the config file, else the local default.
//!
//! The config file is `$GANTRY_CONFIG`, else `$XDG_CONFIG_HOME/gantry/config.toml`, else
//! `~/.config/gantry/config.toml`:
//!
//! ```toml
//! server = "https://gantry.example.com"
//! token = "gantry_…"            # or:
//! token_file = "/run/secrets/gantry-token"
//! ```
//!
//! A missing default file is no error; a file named by `GANTRY_CONFIG` must exist. Unknown keys
//! are refused with their line, so a typo does not silently send no token.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The controller's address when nothing names one: `gantry server`'s default listen address.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:7700";

/// The largest config or token file read: a few lines; anything larger is not one.
pub const MAX_CONFIG_BYTES: u64 = 64 * 1024;

pub const SERVER_VARIABLE: &str = "GANTRY_SERVER";
pub const TOKEN_VARIABLE: &str = "GANTRY_TOKEN";
pub const CONFIG_VARIABLE: &str = "GANTRY_CONFIG";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {reason}", path.display())]
    Read { path: PathBuf, reason: String },
    #[error("{}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
    #[error(
        "the server address {server:?} (from {from}) is not a URL: write it as http://host:port \
         or https://host"
    )]
    Server { server: String, from: String },
}

/// The connection: the controller's base URL and the bearer token, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub server: String,
    pub token: Option<String>,
}

/// The config file's keys.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    server: Option<String>,
    token: Option<String>,
    token_file: Option<PathBuf>,
}

impl Settings {
    /// The settings from `server` and `token` given as flags, the environment and the config
    /// file, in that order.
    pub fn resolve(server: Option<String>, token: Option<String>) -> Result<Settings, Error> {
        let variable = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        let (path, required) = match variable(CONFIG_VARIABLE) {
            Some(path) => (Some(PathBuf::from(path)), true),
            None => (default_path(), false),
        };
        let file = match &path {
            Some(path) => File::load(path, required)?,
            None => File::default(),
        };
        let file_name = || path.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
        let (server, from) = match (server, variable(SERVER_VARIABLE), file.server) {
            (Some(server), _, _) => (server, "--server".to_string()),
            (None, Some(server), _) => (server, SERVER_VARIABLE.to_string()),
            (None, None, Some(server)) => (server, file_name()),
            (None, None, None) => (DEFAULT_SERVER.to_string(), "the default".to_string()),
        };
        if !(server.starts_with("http://") || server.starts_with("https://")) {
            return Err(Error::Server { server, from });
        }
        let token = match (token, variable(TOKEN_VARIABLE), file.token, file.token_file) {
            (Some(token), ..) | (None, Some(token), ..) | (None, None, Some(token), _) => {
                Some(token)
            }
            (None, None, None, Some(token_file)) => {
                let base = path.as_deref().and_then(Path::parent).unwrap_or(Path::new("."));
                Some(read_small(&base.join(token_file))?.trim().to_string())
            }
            (None, None, None, None) => None,
        };
        Ok(Settings { server, token: token.map(|t| t.trim().to_string()) })
    }
}

impl File {
    fn load(path: &Path, required: bool) -> Result<File, Error> {
        if !required && !path.exists() {
            return Ok(File::default());
        }
        let text = read_small(path)?;
        toml::from_str(&text)
            .map_err(|error| Error::Invalid { path: path.to_path_buf(), reason: error.to_string() })
    }
}

fn read_small(path: &Path) -> Result<String, Error> {
    use std::io::Read;
    let read = |path: &Path| -> std::io::Result<String> {
        let mut text = String::new();
        std::fs::File::open(path)?.take(MAX_CONFIG_BYTES + 1).read_to_string(&mut text)?;
        Ok(text)
    };
    let text =
        read(path).map_err(|e| Error::Read { path: path.to_path_buf(), reason: e.to_string() })?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(Error::Read {
            path: path.to_path_buf(),
            reason: format!("larger than {MAX_CONFIG_BYTES} bytes; this is not a config file"),
        });
    }
    Ok(text)
}

/// `$XDG_CONFIG_HOME/gantry/config.toml`, else `~/.config/gantry/config.toml`.
pub fn default_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|value| !value.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))?;
    Some(base.join("gantry").join("config.toml"))
}
