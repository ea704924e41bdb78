//! `--snapshot-cache PATH`: a local copy of what this server serves (every environment's
//! snapshot and the token hashes), rewritten after each applied change, so that a replica
//! starting while its database is down can serve evaluations from it (read-only) until
//! the database is back. Written to a temporary file in the same directory and renamed
//! over the old one, so a crash never leaves a half-written cache.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use flagd_core::EnvironmentSnapshot;
use serde::{Deserialize, Serialize};

use crate::store::{Role, Token};

/// Version of the file layout; a file of another version is refused, not misread.
const FORMAT: u32 = 1;

/// Reading or writing the cache failed.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The file could not be read or written.
    #[error("snapshot cache {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a snapshot cache this version understands.
    #[error("snapshot cache {path} is unreadable: {message}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
}

/// The cache's contents.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CacheFile {
    format: u32,
    /// The change sequence number applied when it was written.
    pub seq: i64,
    /// When it was written (Unix ms).
    pub written_at: i64,
    /// Every environment's snapshot.
    pub environments: Vec<EnvironmentSnapshot>,
    /// The tokens, with their hashes (never their values).
    pub tokens: Vec<CachedToken>,
}

/// A token as the cache keeps it: unlike the API's view, with its hash.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CachedToken {
    id: String,
    name: String,
    role: Role,
    environment: Option<String>,
    hash: String,
    created_at: i64,
    revoked_at: Option<i64>,
}

impl From<&Token> for CachedToken {
    fn from(t: &Token) -> Self {
        Self {
            id: t.id.clone(),
            name: t.name.clone(),
            role: t.role,
            environment: t.environment.clone(),
            hash: t.hash.clone(),
            created_at: t.created_at,
            revoked_at: t.revoked_at,
        }
    }
}

impl From<CachedToken> for Token {
    fn from(t: CachedToken) -> Self {
        Self {
            id: t.id,
            name: t.name,
            role: t.role,
            environment: t.environment,
            hash: t.hash,
            created_at: t.created_at,
            revoked_at: t.revoked_at,
        }
    }
}

impl CacheFile {
    /// A cache of these snapshots and tokens as of `seq`.
    pub fn new(seq: i64, written_at: i64, environments: Vec<EnvironmentSnapshot>, tokens: &[Token]) -> Self {
        Self { format: FORMAT, seq, written_at, environments, tokens: tokens.iter().map(CachedToken::from).collect() }
    }

    /// Writes the cache atomically: a temporary file, synced, renamed over `path`.
    pub fn write(&self, path: &Path) -> Result<(), CacheError> {
        let io = |source| CacheError::Io { path: path.to_owned(), source };
        let json = serde_json::to_vec(self)
            .map_err(|e| CacheError::Unreadable { path: path.to_owned(), message: e.to_string() })?;
        let temporary = path.with_extension(format!("tmp-{}", std::process::id()));
        // It holds the token hashes: readable by this server's user alone.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)
            .map_err(io)?;
        file.write_all(&json).and_then(|()| file.sync_all()).map_err(io)?;
        std::fs::rename(&temporary, path).map_err(io)
    }

    /// Reads a cache written by [`CacheFile::write`].
    pub fn read(path: &Path) -> Result<Self, CacheError> {
        let bytes = std::fs::read(path).map_err(|source| CacheError::Io { path: path.to_owned(), source })?;
        let unreadable = |message: String| CacheError::Unreadable { path: path.to_owned(), message };
        let file: Self = serde_json::from_slice(&bytes).map_err(|e| unreadable(e.to_string()))?;
        if file.format != FORMAT {
            return Err(unreadable(format!("format {} (this server reads format {FORMAT})", file.format)));
        }
        Ok(file)
    }
}
