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
//!
//! `files.idx` is a binary copy of `files.tsv` that a mount reads instead
//! (no hex or decimal to parse, half the bytes): derived, never
//! authoritative. It records the size and mtime of the `files.tsv` it was
//! made from and is ignored when they no longer match, like a pyc whose
//! source changed; a missing or stale one is rewritten by the next reader
//! that may write the store.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::hashing::Digest;
use crate::stamp::FileStamp;
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
pub const BINARY_FILE: &str = "files.idx";

impl DistIndex {
    /// Serialize into the index files inside `dir`.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        let meta = toml::to_string(&self.meta).map_err(std::io::Error::other)?;
        std::fs::write(dir.join(META_FILE), meta)?;
        std::fs::write(dir.join(FILES_FILE), render_files(&self.files))?;
        std::fs::write(dir.join(BINARY_FILE), self.render_binary(dir)?)
    }

    /// `files.idx` for this index, whose `files.tsv` is in `dir`.
    pub fn render_binary(&self, dir: &Path) -> std::io::Result<Vec<u8>> {
        let tsv = std::fs::metadata(dir.join(FILES_FILE))?;
        Ok(render_binary(&self.files, FileStamp::of(&tsv)))
    }

    /// Load a dist's index from its directory in the store: the rows
    /// from `files.idx` when it is current, else from `files.tsv`. The
    /// flag says whether `files.idx` was used.
    pub fn load(dir: &Path) -> Result<(Self, bool), IndexError> {
        let meta = Self::load_meta(dir)?;
        if let Some(files) = load_binary(dir) {
            return Ok((DistIndex { meta, files }, true));
        }
        let files = Self::load_text(dir)?;
        Ok((DistIndex { meta, files }, false))
    }

    /// The rows of `files.tsv`, the authoritative copy.
    pub fn load_text(dir: &Path) -> Result<Vec<FileEntry>, IndexError> {
        let path = dir.join(FILES_FILE);
        let text = read(&path)?;
        parse_files(&text).map_err(|(line, why)| IndexError::Row {
            path: path.display().to_string(),
            line,
            why,
        })
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

const BINARY_MAGIC: &[u8; 8] = b"SFIDX\0\0\x01";
const BINARY_HEADER: usize = 32;
const BINARY_ROW: usize = 48;

/// Header: magic, the tsv's length and mtime (not its inode: a copied
/// store keeps mtimes, and its indexes stay good), row count, path bytes.
/// Rows: size, object, path length, scheme, executable (48 bytes, little
/// endian). Then every path, back to back.
fn render_binary(files: &[FileEntry], stamp: FileStamp) -> Vec<u8> {
    let paths: usize = files.iter().map(|f| f.path.len()).sum();
    let mut out = Vec::with_capacity(BINARY_HEADER + files.len() * BINARY_ROW + paths);
    out.extend_from_slice(BINARY_MAGIC);
    out.extend_from_slice(&stamp.len.to_le_bytes());
    out.extend_from_slice(&stamp.mtime_ns.to_le_bytes());
    out.extend_from_slice(&(files.len() as u32).to_le_bytes());
    out.extend_from_slice(&(paths as u32).to_le_bytes());
    for f in files {
        out.extend_from_slice(&f.size.to_le_bytes());
        out.extend_from_slice(&f.object.0);
        out.extend_from_slice(&(f.path.len() as u32).to_le_bytes());
        out.extend_from_slice(&[f.scheme.code(), u8::from(f.executable), 0, 0]);
    }
    for f in files {
        out.extend_from_slice(f.path.as_bytes());
    }
    out
}

/// The rows of a current `files.idx` in `dir`; `None` when it is missing,
/// stale or malformed (the caller then reads `files.tsv`).
fn load_binary(dir: &Path) -> Option<Vec<FileEntry>> {
    let tsv = std::fs::metadata(dir.join(FILES_FILE)).ok()?;
    let bytes = std::fs::read(dir.join(BINARY_FILE)).ok()?;
    let files = parse_binary(&bytes, FileStamp::of(&tsv));
    if files.is_none() {
        log::debug!("{}/{BINARY_FILE}: stale or damaged", dir.display());
    }
    files
}

fn parse_binary(bytes: &[u8], stamp: FileStamp) -> Option<Vec<FileEntry>> {
    let u32_at = |at: usize| Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?));
    let u64_at = |at: usize| Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?));
    if bytes.get(..8)? != BINARY_MAGIC
        || u64_at(8)? != stamp.len
        || u64_at(16)? as i64 != stamp.mtime_ns
    {
        return None;
    }
    let (count, paths_len) = (u32_at(24)? as usize, u32_at(28)? as usize);
    let paths_at = BINARY_HEADER.checked_add(count.checked_mul(BINARY_ROW)?)?;
    if bytes.len() != paths_at.checked_add(paths_len)? {
        return None;
    }
    let paths = std::str::from_utf8(&bytes[paths_at..]).ok()?;
    let mut files = Vec::with_capacity(count);
    let mut off = 0usize;
    for row in bytes[BINARY_HEADER..paths_at].chunks_exact(BINARY_ROW) {
        let len = u32::from_le_bytes(row[40..44].try_into().ok()?) as usize;
        let path = paths.get(off..off.checked_add(len)?)?;
        off += len;
        files.push(FileEntry {
            scheme: Scheme::from_code(row[44])?,
            executable: match row[45] {
                0 => false,
                1 => true,
                _ => return None,
            },
            size: u64::from_le_bytes(row[..8].try_into().ok()?),
            object: Digest(row[8..40].try_into().ok()?),
            path: path.to_string(),
        });
    }
    (off == paths_len).then_some(files)
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
        assert_eq!(DistIndex::load(dir.path()).unwrap(), (idx.clone(), true));
        assert_eq!(DistIndex::load_text(dir.path()).unwrap(), idx.files);
    }

    #[test]
    fn a_stale_or_damaged_binary_index_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let idx = sample();
        idx.write(dir.path()).unwrap();
        let bin = std::fs::read(dir.path().join(BINARY_FILE)).unwrap();
        let tsv = std::fs::metadata(dir.path().join(FILES_FILE)).unwrap();
        let stamp = FileStamp::of(&tsv);
        assert_eq!(parse_binary(&bin, stamp).unwrap(), idx.files);
        // Another files.tsv (a different stamp), and every damage a
        // truncation, a bad magic, a bad scheme or flag byte, or a wrong
        // path length can do.
        let other = FileStamp {
            mtime_ns: stamp.mtime_ns + 1,
            ..stamp
        };
        assert_eq!(parse_binary(&bin, other), None);
        for cut in [0, 7, 31, 32, 79, bin.len() - 1] {
            assert_eq!(parse_binary(&bin[..cut], stamp), None, "cut at {cut}");
        }
        for (at, byte) in [
            (0, b'X'),
            (BINARY_HEADER + 44, 9),
            (BINARY_HEADER + 45, 2),
            (BINARY_HEADER + 40, 200),
        ] {
            let mut bad = bin.clone();
            bad[at] = byte;
            assert_eq!(parse_binary(&bad, stamp), None, "byte {at} = {byte}");
        }
        // A rewritten files.tsv (here shorter) wins over the old files.idx.
        let mut changed = idx.clone();
        changed.files.pop();
        std::fs::write(dir.path().join(FILES_FILE), render_files(&changed.files)).unwrap();
        assert_eq!(DistIndex::load(dir.path()).unwrap(), (changed, false));
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
