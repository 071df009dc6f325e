//! The shared, content-addressed store: where things live and how they
//! are read. Writing into it is [`crate::store::ingest`]'s job.
//!
//! Its directories are listed, once, in [`layout`].
//!
//! Every published path is immutable and appears by `rename`, so readers
//! never see partial state and concurrent writers cannot corrupt it.

pub mod bytecode;
pub mod dist_index;
pub mod gc;
pub mod ingest;
pub mod layout;
pub mod lock;
pub mod pyc;
pub mod roots;
pub mod verify;

use std::collections::HashMap;
use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::hashing::{Digest, DigestMap};
use crate::stamp::FileStamp;
use crate::store::dist_index::{DistIndex, DistMeta, IndexError, BINARY_FILE};
use crate::store::layout::{Dir, Layout};
use crate::wheel::normalize_name;

/// A store-level failure, each naming the path involved.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store {0} does not exist: add wheels with `sitefs store add --store {0} WHEEL...` or pass the right --store")]
    Missing(String),
    #[error("{0} is not a sitefs store (no objects/ or dists/ inside): pass the right --store")]
    NotAStore(String),
    #[error("no store location: set --store, $SITEFS_STORE, $XDG_DATA_HOME or $HOME")]
    NoLocation,
    #[error("{path}: {err}")]
    Io { path: String, err: io::Error },
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(
        "{0:?} is not a store id: ids look like NAME-VERSION-<16 hex> (see `sitefs store ls`)"
    )]
    BadId(String),
    #[error("distribution {0} is not in the store {1}: add its wheel with `sitefs store add`")]
    NoSuchDist(String, String),
    #[error("no distribution matches {0:?} in the store (see `sitefs store ls`)")]
    NoMatch(String),
    #[error("store {0} is read-only for you: ask its owner to add the wheel (`sitefs store add --store {0} WHEEL`) or use a store of your own (--store DIR)")]
    ReadOnly(String),
}

/// Attach the path to an io::Error, the one piece of context users need.
pub fn io_at(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |err| StoreError::Io {
        path: path.display().to_string(),
        err,
    }
}

/// Pyc sizes by source digest, for one dist and one interpreter.
pub type PycSizes = DigestMap<u64>;

/// One pyc a dist's bytecode marker lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PycEntry {
    /// The source it was compiled from (and so its name in the store).
    pub source: Digest,
    pub size: u64,
    /// The pyc's own sha256, recorded when it was compiled, so `store
    /// verify` can check the bytecode that actually runs; `None` in
    /// markers older than that.
    pub sha256: Option<Digest>,
}

/// A store on disk. Cheap to clone; clones share a cache of loaded dist
/// indexes (a published dist never changes, so the cache never goes
/// stale, and a command that looks at a dist several times parses it once).
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    indexes: Arc<Mutex<HashMap<String, Arc<DistIndex>>>>,
}

impl Store {
    fn at(root: PathBuf) -> Store {
        Store {
            root,
            indexes: Arc::default(),
        }
    }

    /// The store location: `--store`, else `$SITEFS_STORE`, else
    /// `$XDG_DATA_HOME/sitefs`, else `~/.local/share/sitefs`.
    pub fn locate(flag: Option<&Path>) -> Result<PathBuf, StoreError> {
        let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        if let Some(p) = flag {
            return Ok(p.to_path_buf());
        }
        if let Some(p) = env("SITEFS_STORE") {
            return Ok(PathBuf::from(p));
        }
        if let Some(p) = env("XDG_DATA_HOME") {
            return Ok(PathBuf::from(p).join("sitefs"));
        }
        let home: OsString = env("HOME").ok_or(StoreError::NoLocation)?;
        Ok(PathBuf::from(home).join(".local/share/sitefs"))
    }

    /// Open an existing store; a missing one is an error that says how
    /// to make it, so a typo in `--store` never silently starts afresh.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        if !root.exists() {
            return Err(StoreError::Missing(root.display().to_string()));
        }
        if !Layout::new(root).is_store() {
            return Err(StoreError::NotAStore(root.display().to_string()));
        }
        Ok(Store::at(absolute(root)))
    }

    /// Open a store if there is one at `root`, else create it: creating
    /// an env needs no write access to an existing (shared) store.
    pub fn open_or_create(root: &Path) -> Result<Store, StoreError> {
        if Dir::Objects.under(root).is_dir() {
            Store::open(root)
        } else {
            Store::create(root)
        }
    }

    /// Open a store, creating its directories first if needed (ingest).
    pub fn create(root: &Path) -> Result<Store, StoreError> {
        if root.exists()
            && !Dir::Objects.under(root).is_dir()
            && std::fs::read_dir(root)
                .map_err(io_at(root))?
                .next()
                .is_some()
        {
            return Err(StoreError::NotAStore(root.display().to_string()));
        }
        Layout::new(root).create_dirs()?;
        let store = Store::at(absolute(root));
        store.require_writable()?;
        Ok(store)
    }

    /// Adding to a store needs write access to its contents; a shared
    /// store's users get a clear message instead of a failed rename deep
    /// inside ingest.
    pub fn require_writable(&self) -> Result<(), StoreError> {
        for dir in [Dir::Objects, Dir::Dists, Dir::Tmp] {
            let p = self.path(dir);
            if nix::unistd::access(&p, nix::unistd::AccessFlags::W_OK).is_err() {
                return Err(StoreError::ReadOnly(self.root.display().to_string()));
            }
        }
        Ok(())
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where everything of this store lives.
    pub fn layout(&self) -> Layout<'_> {
        Layout::new(&self.root)
    }

    /// One of the store's directories.
    pub fn path(&self, dir: Dir) -> PathBuf {
        dir.under(&self.root)
    }

    pub fn object_path(&self, d: &Digest) -> PathBuf {
        self.layout().object(d)
    }

    pub fn dists_dir(&self) -> PathBuf {
        self.path(Dir::Dists)
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.path(Dir::Tmp)
    }

    /// The directory of a dist; `id` must already be validated.
    pub fn dist_dir(&self, id: &str) -> PathBuf {
        self.layout().dist(id)
    }

    pub fn pyc_path(&self, cache_tag: &str, source: &Digest) -> PathBuf {
        self.layout().pyc(cache_tag, source)
    }

    /// The marker saying `id` is fully compiled for `cache_tag`.
    pub fn bytecode_marker(&self, cache_tag: &str, id: &str) -> PathBuf {
        self.layout().bytecode_marker(cache_tag, id)
    }

    pub fn has_bytecode(&self, cache_tag: &str, id: &str) -> bool {
        self.bytecode_marker(cache_tag, id).exists()
    }

    /// The pycs of dist `id` for `cache_tag`: source digest -> pyc size,
    /// from the marker written when compilation finished. `None` when the
    /// dist has no bytecode for that interpreter.
    pub fn pyc_sizes(&self, cache_tag: &str, id: &str) -> Result<Option<PycSizes>, StoreError> {
        // On every mount's path: the pyc hashes are not parsed.
        Ok(self
            .read_marker(cache_tag, id, false)?
            .map(|v| v.into_iter().map(|e| (e.source, e.size)).collect()))
    }

    /// Every pyc the marker of `id` for `cache_tag` lists, with its hash.
    pub fn pyc_entries(
        &self,
        cache_tag: &str,
        id: &str,
    ) -> Result<Option<Vec<PycEntry>>, StoreError> {
        self.read_marker(cache_tag, id, true)
    }

    /// A bytecode marker: `source \t size [\t sha256 of the pyc]` per line
    /// (sitefs before pyc hashes wrote two fields).
    fn read_marker(
        &self,
        cache_tag: &str,
        id: &str,
        hashes: bool,
    ) -> Result<Option<Vec<PycEntry>>, StoreError> {
        let marker = self.bytecode_marker(cache_tag, id);
        let text = match std::fs::read_to_string(&marker) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_at(&marker)(e)),
        };
        let bad = || StoreError::Io {
            path: marker.display().to_string(),
            err: io::Error::new(io::ErrorKind::InvalidData, "damaged bytecode marker"),
        };
        let mut out = Vec::new();
        for line in text.lines() {
            let mut f = line.split('\t');
            let (Some(src), Some(size), hash) = (f.next(), f.next(), f.next()) else {
                return Err(bad());
            };
            let sha256 = match hash.filter(|_| hashes) {
                Some(h) => Some(h.parse().map_err(|_| bad())?),
                None => None,
            };
            out.push(PycEntry {
                source: src.parse().map_err(|_| bad())?,
                size: size.parse().map_err(|_| bad())?,
                sha256,
            });
        }
        Ok(Some(out))
    }

    /// The interpreter cache tags that have bytecode for `id`.
    pub fn bytecode_tags(&self, id: &str) -> Vec<String> {
        let mut tags: Vec<String> = read_names(&self.path(Dir::Bytecode))
            .into_iter()
            .filter(|t| self.has_bytecode(t, id))
            .collect();
        tags.sort();
        tags
    }

    /// Check that `id` names a distribution of this store: a plain name
    /// (no path tricks) whose directory exists. Manifests can name nothing
    /// outside the store.
    pub fn check_id(&self, id: &str) -> Result<PathBuf, StoreError> {
        if !is_valid_id(id) {
            return Err(StoreError::BadId(id.to_string()));
        }
        let dir = self.dist_dir(id);
        if !dir.join(crate::store::dist_index::META_FILE).is_file() {
            return Err(StoreError::NoSuchDist(
                id.to_string(),
                self.root.display().to_string(),
            ));
        }
        Ok(dir)
    }

    /// Load a dist's full index (cached for the life of this `Store`).
    pub fn load(&self, id: &str) -> Result<Arc<DistIndex>, StoreError> {
        let cache = |c: &Mutex<HashMap<String, Arc<DistIndex>>>| {
            c.lock().unwrap_or_else(|e| e.into_inner()).get(id).cloned()
        };
        if let Some(idx) = cache(&self.indexes) {
            return Ok(idx);
        }
        let dir = self.check_id(id)?;
        let (idx, binary) = DistIndex::load(&dir)?;
        if !binary {
            self.add_binary_index(&dir, &idx);
        }
        let idx = Arc::new(idx);
        let mut map = self.indexes.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(id.to_string(), idx.clone());
        Ok(idx)
    }

    /// Give a dist published without a current `files.idx` (by an older
    /// sitefs, or copied without mtimes) one, so later mounts skip parsing
    /// `files.tsv`. Best effort: a store this user may not write is fine.
    fn add_binary_index(&self, dir: &Path, idx: &DistIndex) {
        let id = dir.file_name().unwrap_or_default().to_string_lossy();
        let tmp = self
            .tmp_dir()
            .join(format!("{id}.{}.idx", std::process::id()));
        let done = idx
            .render_binary(dir)
            .and_then(|bytes| std::fs::write(&tmp, bytes))
            .and_then(|()| std::fs::rename(&tmp, dir.join(BINARY_FILE)));
        if let Err(e) = done {
            log::debug!("no {BINARY_FILE} for {}: {e}", dir.display());
            let _ = std::fs::remove_file(&tmp);
        }
    }

    /// Every published distribution, sorted by name then version.
    pub fn list(&self) -> Result<Vec<DistMeta>, StoreError> {
        let mut out = Vec::new();
        for id in read_names(&self.dists_dir()) {
            if is_valid_id(&id) {
                out.push(DistIndex::load_meta(&self.dist_dir(&id))?);
            }
        }
        out.sort_by(|a, b| {
            (normalize_name(&a.name), &a.version, &a.id).cmp(&(
                normalize_name(&b.name),
                &b.version,
                &b.id,
            ))
        });
        Ok(out)
    }

    /// Distributions matching `NAME` or `NAME==VERSION` (PEP 503 names).
    pub fn find(&self, spec: &str) -> Result<Vec<DistMeta>, StoreError> {
        let (name, version) = match spec.split_once("==") {
            Some((n, v)) => (n.trim(), Some(v.trim())),
            None => (spec.trim(), None),
        };
        let want = normalize_name(name);
        let found: Vec<DistMeta> = self
            .list()?
            .into_iter()
            .filter(|m| normalize_name(&m.name) == want && version.is_none_or(|v| v == m.version))
            .collect();
        if found.is_empty() {
            return Err(StoreError::NoMatch(spec.to_string()));
        }
        Ok(found)
    }
}

impl Store {
    /// The store id a wheel file on disk was added as, if the file is
    /// unchanged since (same device, inode, size and mtime): re-adding a
    /// directory of known wheels then costs a stat per file, not a hash.
    pub fn seen_wheel(&self, wheel: &Path) -> Option<String> {
        let key = wheel_key(wheel)?;
        let text = std::fs::read_to_string(self.seen_path(wheel)?).ok()?;
        let (k, id) = text.trim_end().rsplit_once(' ')?;
        (k == key && self.check_id(id).is_ok()).then(|| id.to_string())
    }

    /// Record that `wheel` was added as `id` (best effort: a read-only
    /// shared store simply does not remember).
    pub fn remember_wheel(&self, wheel: &Path, id: &str) {
        let (Some(key), Some(path)) = (wheel_key(wheel), self.seen_path(wheel)) else {
            return;
        };
        if std::fs::read_to_string(&path).is_ok_and(|t| t.trim_end() == format!("{key} {id}")) {
            return;
        }
        let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
        let ok = path
            .parent()
            .is_some_and(|d| std::fs::create_dir_all(d).is_ok())
            && std::fs::write(&tmp, format!("{key} {id}\n")).is_ok()
            && std::fs::rename(&tmp, &path).is_ok();
        if !ok {
            let _ = std::fs::remove_file(&tmp);
        }
    }

    fn seen_path(&self, wheel: &Path) -> Option<PathBuf> {
        let abs = std::path::absolute(wheel).ok()?;
        Some(
            self.layout()
                .keyed(Dir::Seen, abs.as_os_str().as_encoded_bytes()),
        )
    }
}

fn wheel_key(wheel: &Path) -> Option<String> {
    FileStamp::read(wheel).map(|s| s.key())
}

/// Store ids are single path components of safe characters.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && !id.starts_with('.')
        && id.len() <= 255
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+'))
}

/// The id a wheel gets: readable name and version plus 64 bits of the
/// wheel's sha256, so two builds of one version never collide.
pub fn dist_id(name: &str, version: &str, wheel_sha256: &Digest) -> String {
    let name = normalize_name(name).replace('-', "_");
    let version: String = version
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '+') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{name}-{version}-{}", &wheel_sha256.to_hex()[..16])
}

fn read_names(dir: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect()
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_safe_components() {
        let id = dist_id("Foo.Bar", "1.0+local", &Digest::of(b"x"));
        assert!(id.starts_with("foo_bar-1.0+local-"), "{id}");
        assert!(is_valid_id(&id));
        for bad in ["", "../x", "a/b", ".hidden", "a b"] {
            assert!(!is_valid_id(bad), "{bad}");
        }
    }

    #[test]
    fn open_requires_an_existing_store() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let e = Store::open(&missing).unwrap_err().to_string();
        assert!(
            e.contains("does not exist") && e.contains("store add"),
            "{e}"
        );
        let s = Store::create(&missing).unwrap();
        assert!(Store::open(s.root()).is_ok());
        let e = s.check_id("../../etc").unwrap_err().to_string();
        assert!(e.contains("not a store id"), "{e}");
        let e = s
            .check_id("pkg-1-0000000000000000")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not in the store"), "{e}");
    }
}
