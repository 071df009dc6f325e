//! The per-distribution index a mount loads: `dist.toml` (what the
//! distribution is) and `files.tsv` (every file, its scheme, mode, size and
//! object). Written once at ingest; a mount reads it without touching the
//! wheel, so mounting costs a few small reads per distribution.
//!
//! `files.tsv` is a plain tab-separated table rather than TOML or JSON: it is
//! the one file that grows with the distribution (numpy: ~1,700 rows), it
//! parses in microseconds, and it diffs well. Paths cannot contain tabs or
//! newlines because [`crate::wheel::check_safe_path`] rejects control
//! characters at ingest.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::hashing::Digest;
use crate::wheel::Scheme;

/// What a distribution is: shown by `store ls/info`, used to pick
/// distributions for a manifest and to write entry-point scripts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DistMeta {
    pub id: String,
    /// Name and version as METADATA spells them (what pip shows).
    pub name: String,
    pub version: String,
    pub wheel: String,
    pub wheel_sha256: String,
    pub wheel_size: u64,
    pub tags: Vec<String>,
    pub root_is_purelib: bool,
    pub dist_info: String,
    /// Seconds since the epoch; served as the mtime of this dist's files.
    pub ingested: u64,
    pub file_count: usize,
    pub unpacked_size: u64,
    #[serde(default)]
    pub entry_points: BTreeMap<String, BTreeMap<String, String>>,
}

/// One installed file of a distribution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    pub scheme: Scheme,
    pub executable: bool,
    pub size: u64,
    pub object: Digest,
    /// Relative to the scheme's directory, `/`-separated.
    pub path: String,
}

impl FileEntry {
    /// Mode bits as pip leaves them: 0755 for executables, else 0644.
    pub fn mode(&self) -> u16 {
        if self.executable {
            0o755
        } else {
            0o644
        }
    }
}

/// A distribution's complete index.
#[derive(Debug, Clone, PartialEq)]
pub struct DistIndex {
    pub meta: DistMeta,
    pub files: Vec<FileEntry>,
}

/// A dist index that cannot be read: the store is damaged or was written
/// by an incompatible version.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("{path}: {err}")]
    Io { path: String, err: std::io::Error },
    #[error("{path}: {err}")]
    Toml { path: String, err: String },
    #[error("{path} line {line}: {why}")]
    Row {
        path: String,
        line: usize,
        why: String,
    },
}

pub const META_FILE: &str = "dist.toml";
pub const FILES_FILE: &str = "files.tsv";

impl DistIndex {
    /// Serialize into the two index files inside `dir`.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        let meta = toml::to_string(&self.meta).map_err(std::io::Error::other)?;
        std::fs::write(dir.join(META_FILE), meta)?;
        std::fs::write(dir.join(FILES_FILE), render_files(&self.files))
    }

    /// Load a dist's index from its directory in the store.
    pub fn load(dir: &Path) -> Result<Self, IndexError> {
        let meta = Self::load_meta(dir)?;
        let path = dir.join(FILES_FILE);
        let text = read(&path)?;
        let files = parse_files(&text).map_err(|(line, why)| IndexError::Row {
            path: path.display().to_string(),
            line,
            why,
        })?;
        Ok(DistIndex { meta, files })
    }

    /// Load only `dist.toml`, for listings that do not need the files.
    pub fn load_meta(dir: &Path) -> Result<DistMeta, IndexError> {
        let path = dir.join(META_FILE);
        toml::from_str(&read(&path)?).map_err(|e| IndexError::Toml {
            path: path.display().to_string(),
            err: e.to_string(),
        })
    }
}

fn read(path: &Path) -> Result<String, IndexError> {
    std::fs::read_to_string(path).map_err(|err| IndexError::Io {
        path: path.display().to_string(),
        err,
    })
}

fn render_files(files: &[FileEntry]) -> String {
    let mut out = String::with_capacity(files.len() * 100);
    for f in files {
        let _ = writeln!(
            out,
            "{}\t{:o}\t{}\t{}\t{}",
            f.scheme.as_str(),
            f.mode(),
            f.size,
            f.object,
            f.path
        );
    }
    out
}

fn parse_files(text: &str) -> Result<Vec<FileEntry>, (usize, String)> {
    text.lines()
        .enumerate()
        .map(|(i, line)| parse_row(line).map_err(|why| (i + 1, why)))
        .collect()
}

fn parse_row(line: &str) -> Result<FileEntry, String> {
    let mut it = line.splitn(5, '\t');
    let mut next = |what: &str| it.next().ok_or_else(|| format!("missing {what}"));
    let scheme = next("scheme")?;
    let scheme = Scheme::parse(scheme).ok_or_else(|| format!("bad scheme {scheme:?}"))?;
    let executable = match next("mode")? {
        "755" => true,
        "644" => false,
        m => return Err(format!("bad mode {m:?}")),
    };
    let size = next("size")?.parse().map_err(|_| "bad size".to_string())?;
    let object = next("object")?
        .parse()
        .map_err(|e: crate::hashing::BadDigest| e.to_string())?;
    let path = next("path")?.to_string();
    Ok(FileEntry {
        scheme,
        executable,
        size,
        object,
        path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> DistIndex {
        let mut eps = BTreeMap::new();
        eps.insert(
            "console_scripts".to_string(),
            BTreeMap::from([("foo".to_string(), "pkg:main".to_string())]),
        );
        DistIndex {
            meta: DistMeta {
                id: "pkg-1.0-0123456789abcdef".into(),
                name: "Pkg".into(),
                version: "1.0".into(),
                wheel: "pkg-1.0-py3-none-any.whl".into(),
                wheel_sha256: Digest::of(b"w").to_hex(),
                wheel_size: 10,
                tags: vec!["py3-none-any".into()],
                root_is_purelib: true,
                dist_info: "pkg-1.0.dist-info".into(),
                ingested: 1_700_000_000,
                file_count: 2,
                unpacked_size: 3,
                entry_points: eps,
            },
            files: vec![
                FileEntry {
                    scheme: Scheme::Purelib,
                    executable: false,
                    size: 1,
                    object: Digest::of(b"a"),
                    path: "pkg/a b.py".into(),
                },
                FileEntry {
                    scheme: Scheme::Scripts,
                    executable: true,
                    size: 2,
                    object: Digest::of(b"bb"),
                    path: "tool".into(),
                },
            ],
        }
    }

    #[test]
    fn round_trips_through_disk() {
        let dir = tempfile::tempdir().unwrap();
        let idx = sample();
        idx.write(dir.path()).unwrap();
        assert_eq!(DistIndex::load(dir.path()).unwrap(), idx);
    }

    #[test]
    fn bad_rows_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        sample().write(dir.path()).unwrap();
        std::fs::write(dir.path().join(FILES_FILE), "purelib\t644\t1\tnothex\tx\n").unwrap();
        let e = DistIndex::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("sha256"), "{e}");
    }
}
