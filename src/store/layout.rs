//! Every path inside a store, named in one place.
//!
//! ```text
//! S/objects/<aa>/<sha256>                       file contents, read-only
//! S/dists/<id>/{dist.toml,files.tsv,files.idx}  one per ingested wheel
//! S/bytecode/<tag>/<aa>/<sha256>.pyc            pyc of that source for that interpreter
//! S/bytecode/<tag>/dists/<id>                   "<id> is compiled for <tag>" (+ pyc sizes)
//! S/roots/envs/, roots/mounts/, roots/pins/     gc roots (see `roots`)
//! S/locks/gc, locks/users/                      gc's lock and the use marks it waits for
//! S/views/<sha256>                              cached view images (derived)
//! S/interpreters/<hash>                         cached interpreter probes (derived)
//! S/seen/<hash>                                 wheel file stamp -> dist id (derived)
//! S/quarantine/                                 what `verify --repair` moved aside
//! S/tmp/                                        staging: everything is renamed into place
//! ```
//!
//! Like uv-cache's `CacheBucket`, [`Dir`] is the one list of a store's
//! directories: creating a store, gc and the docs iterate over it, and no
//! other module spells a store path, so the layout can be read (and
//! changed) here alone.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::hashing::Digest;
use crate::store::{io_at, StoreError};

/// A directory of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// File contents by sha256, fanned out by the first byte.
    Objects,
    /// One directory per ingested wheel: its metadata and file index.
    Dists,
    /// Pycs per interpreter cache tag, and the markers saying a dist is
    /// compiled for that tag.
    Bytecode,
    /// Registered envs (sticky, world-writable: every user may register).
    EnvRoots,
    /// Live mounts (sticky, world-writable).
    MountRoots,
    /// `sitefs store pin`.
    Pins,
    /// gc's exclusive lock file.
    Locks,
    /// The use marks gc waits for (sticky, world-writable).
    UseMarks,
    /// Merged view images, a cache mounts rebuild; gc clears it.
    Views,
    /// Interpreter probe results keyed by the binary's stamp, a cache env
    /// creation rebuilds in one run of the interpreter; gc clears it.
    Interpreters,
    /// Wheel file stamp -> dist id, so re-adding a known wheel costs a
    /// stat, not a hash; gc drops entries of freed dists.
    Seen,
    /// Objects and dists `store verify --repair` found damaged.
    Quarantine,
    /// Staging for every write; safe to empty when nothing runs.
    Tmp,
}

impl Dir {
    /// Every directory, in the order a new store creates them.
    pub const ALL: [Dir; 13] = [
        Dir::Objects,
        Dir::Dists,
        Dir::Bytecode,
        Dir::Tmp,
        Dir::EnvRoots,
        Dir::MountRoots,
        Dir::Pins,
        Dir::Locks,
        Dir::UseMarks,
        Dir::Views,
        Dir::Interpreters,
        Dir::Seen,
        Dir::Quarantine,
    ];

    /// The path below the store root.
    pub const fn rel(self) -> &'static str {
        match self {
            Dir::Objects => "objects",
            Dir::Dists => "dists",
            Dir::Bytecode => "bytecode",
            Dir::EnvRoots => "roots/envs",
            Dir::MountRoots => "roots/mounts",
            Dir::Pins => "roots/pins",
            Dir::Locks => "locks",
            Dir::UseMarks => "locks/users",
            Dir::Views => "views",
            Dir::Interpreters => "interpreters",
            Dir::Seen => "seen",
            Dir::Quarantine => "quarantine",
            Dir::Tmp => "tmp",
        }
    }

    /// This directory of the store at `root`.
    pub fn under(self, root: &Path) -> PathBuf {
        root.join(self.rel())
    }

    /// Whether every user of a shared store must be able to add to it
    /// (made sticky and world-writable, like `/tmp`).
    pub const fn is_shared(self) -> bool {
        matches!(self, Dir::EnvRoots | Dir::MountRoots | Dir::UseMarks)
    }

    /// Whether it only caches what can be derived again, so gc may empty
    /// it (a view image may name dists that gc frees; an interpreter
    /// probe may describe a binary that was upgraded in place).
    pub const fn is_cache(self) -> bool {
        matches!(self, Dir::Views | Dir::Interpreters)
    }

    /// Whether a new store creates it up front (the others appear when
    /// first written).
    pub const fn is_created(self) -> bool {
        matches!(
            self,
            Dir::Objects
                | Dir::Dists
                | Dir::Bytecode
                | Dir::Tmp
                | Dir::EnvRoots
                | Dir::MountRoots
                | Dir::Pins
                | Dir::UseMarks
        )
    }
}

/// The paths of one store, built from its root. Cheap: a borrowed root.
#[derive(Debug, Clone, Copy)]
pub struct Layout<'a> {
    root: &'a Path,
}

impl<'a> Layout<'a> {
    pub fn new(root: &'a Path) -> Layout<'a> {
        Layout { root }
    }

    pub fn root(&self) -> &'a Path {
        self.root
    }

    pub fn dir(&self, d: Dir) -> PathBuf {
        d.under(self.root)
    }

    /// Create the directories a store starts with; the shared ones sticky
    /// and world-writable when we own them (best effort: a store we do not
    /// own keeps its modes). Idempotent.
    pub fn create_dirs(&self) -> Result<(), StoreError> {
        for dir in Dir::ALL.into_iter().filter(|d| d.is_created()) {
            let p = self.dir(dir);
            std::fs::create_dir_all(&p).map_err(io_at(&p))?;
            if dir.is_shared() {
                let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o1777));
            }
        }
        Ok(())
    }

    /// Whether `root` looks like a store (what `Store::open` requires).
    pub fn is_store(&self) -> bool {
        self.dir(Dir::Objects).is_dir() && self.dir(Dir::Dists).is_dir()
    }

    pub fn object(&self, d: &Digest) -> PathBuf {
        self.dir(Dir::Objects).join(d.fanout()).join(d.to_hex())
    }

    /// The directory of a dist; `id` must already be validated.
    pub fn dist(&self, id: &str) -> PathBuf {
        self.dir(Dir::Dists).join(id)
    }

    /// The bytecode of one interpreter.
    pub fn bytecode(&self, cache_tag: &str) -> PathBuf {
        self.dir(Dir::Bytecode).join(cache_tag)
    }

    pub fn pyc(&self, cache_tag: &str, source: &Digest) -> PathBuf {
        self.bytecode(cache_tag)
            .join(source.fanout())
            .join(format!("{}.pyc", source.to_hex()))
    }

    /// The directory of markers saying which dists are compiled for a tag.
    pub fn bytecode_markers(&self, cache_tag: &str) -> PathBuf {
        self.bytecode(cache_tag).join("dists")
    }

    /// The marker saying `id` is fully compiled for `cache_tag`.
    pub fn bytecode_marker(&self, cache_tag: &str, id: &str) -> PathBuf {
        self.bytecode_markers(cache_tag).join(id)
    }

    /// gc's exclusive lock.
    pub fn gc_lock(&self) -> PathBuf {
        self.dir(Dir::Locks).join(GC_LOCK)
    }

    /// A view image by its key.
    pub fn view_image(&self, name: &str) -> PathBuf {
        self.dir(Dir::Views).join(name)
    }

    /// A cache entry of [`Dir::Interpreters`] or [`Dir::Seen`], named by
    /// the first 128 bits of the sha256 of its key.
    pub fn keyed(&self, d: Dir, key: &[u8]) -> PathBuf {
        self.dir(d).join(&Digest::of(key).to_hex()[..32])
    }
}

/// The file name of gc's lock inside [`Dir::Locks`].
pub const GC_LOCK: &str = "gc";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_dir_is_distinct_and_relative() {
        let mut seen = std::collections::HashSet::new();
        for d in Dir::ALL {
            assert!(seen.insert(d.rel()), "{d:?} twice");
            assert!(!d.rel().starts_with('/') && !d.rel().contains(".."));
        }
        let l = Layout::new(Path::new("/s"));
        assert_eq!(l.gc_lock(), Path::new("/s/locks/gc"));
        let d = Digest::of(b"x");
        assert_eq!(
            l.pyc("cpython-311", &d),
            Path::new(&format!(
                "/s/bytecode/cpython-311/{}/{}.pyc",
                d.fanout(),
                d.to_hex()
            ))
        );
        assert!(Dir::ALL
            .iter()
            .filter(|d| d.is_shared())
            .all(|d| d.is_created()));
    }
}
