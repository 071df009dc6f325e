//! The merged view: an environment's site-packages as an in-memory inode
//! table, built from dist indexes. Pure data, no FUSE types, so every
//! merge rule is testable without a mount.
//!
//! Rules: directories of several dists merge (namespace packages); the
//! same path with the same content in two dists is one file; a path with
//! different content is a [`Conflict`] naming both dists, unless the
//! manifest says the later dist wins (pip's silent behaviour). A file and
//! a directory at one path always conflict.
//!
//! Layout: building the view is on the critical path of `sitefs mount`
//! (~24k nodes for a big env), so it allocates little: nodes live in one
//! `Vec` and refer to each other by slot (their index there), every name
//! lives in one string arena, and one open-addressing table maps
//! (directory, name) to a slot for the whole tree instead of a hash map
//! per directory. Inode numbers are slot + 1 until a live reload
//! renumbers the view after the one it replaces.
//!
//! Here: the node types and the finished [`View`]. The table is in
//! `tree`, the merge rules in `builder`, reload renumbering in `renumber`,
//! the image format in `codec`; [`build`] turns a manifest into a view,
//! [`image`] caches views in the store, [`live`] holds the one a mount
//! serves.

pub mod build;
mod builder;
mod codec;
pub mod image;
pub mod live;
mod renumber;
#[cfg(test)]
mod testing;
mod tree;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustc_hash::FxHashMap;

use crate::hashing::Digest;
use tree::Tree;

pub use builder::ViewBuilder;

/// Inode number; [`ROOT`] is the mount's root directory.
pub type Ino = u64;
pub const ROOT: Ino = 1;

/// Index of a node in [`View`]'s node table; the root is slot 0.
type Slot = u32;
const ROOT_SLOT: Slot = 0;

/// Where a file's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A store object, by its sha256.
    Object(Digest),
    /// The pyc compiled from the source with this sha256, for the view's
    /// interpreter.
    Pyc(Digest),
    /// Bytes generated for this environment (INSTALLER, REQUESTED, ...).
    Inline(Arc<[u8]>),
    /// Bytes generated on first use (a venv's RECORD).
    Lazy(Arc<Lazy>),
}

/// Content computed the first time anyone looks at it. A venv's RECORD
/// files together cost more to render than the rest of the view, and
/// most are never read, so the mount renders each on demand, once.
pub struct Lazy {
    bytes: std::sync::OnceLock<Arc<[u8]>>,
    make: Box<dyn Fn() -> Vec<u8> + Send + Sync>,
}

impl Lazy {
    pub fn new(make: impl Fn() -> Vec<u8> + Send + Sync + 'static) -> Arc<Lazy> {
        Arc::new(Lazy {
            bytes: std::sync::OnceLock::new(),
            make: Box::new(make),
        })
    }

    pub fn get(&self) -> &Arc<[u8]> {
        self.bytes.get_or_init(|| Arc::from((self.make)()))
    }
}

impl std::fmt::Debug for Lazy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Lazy({})",
            if self.bytes.get().is_some() {
                "rendered"
            } else {
                "pending"
            }
        )
    }
}

/// Lazy contents are equal only to themselves.
impl PartialEq for Lazy {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

impl Eq for Lazy {}

#[derive(Debug, Clone)]
pub enum Kind {
    Dir {
        /// Slots of the children in readdir order (insertion order, stable
        /// per mount); read them through [`View::children`].
        children: Vec<Slot>,
    },
    File {
        source: Source,
        /// The size, except for [`Source::Lazy`] files, whose size is
        /// known once rendered: read sizes through [`Node::size`].
        size: u64,
        executable: bool,
    },
}

/// What a node's mtime follows. Only [`View::mtime`] turns it into a
/// time, so one view (and one image of it) serves any environment with the
/// same dists, whatever its manifest's mtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mtime {
    /// The environment's time (its manifest's mtime): directories and the
    /// files sitefs writes change with the environment, and the import
    /// system and importlib.metadata cache directory listings on it.
    Env,
    /// Its dist's ingest time, in seconds since the epoch: a dist's files
    /// never change.
    Ingested(u64),
}

/// One file or directory of the view.
#[derive(Debug, Clone)]
pub struct Node {
    parent: Slot,
    /// Offset and length of the name in the view's name arena.
    name: (u32, u32),
    pub mtime: Mtime,
    /// Index into [`View::owners`] of the dist that provided this node
    /// (the first one, for merged directories).
    pub owner: u32,
    pub kind: Kind,
}

impl Node {
    pub fn is_dir(&self) -> bool {
        matches!(self.kind, Kind::Dir { .. })
    }

    /// Mode bits as pip leaves them.
    pub fn perm(&self) -> u16 {
        match self.kind {
            Kind::Dir { .. } => 0o755,
            Kind::File {
                executable: true, ..
            } => 0o755,
            Kind::File { .. } => 0o644,
        }
    }

    pub fn size(&self) -> u64 {
        match &self.kind {
            Kind::Dir { children } => children.len() as u64,
            Kind::File {
                source: Source::Lazy(l),
                ..
            } => l.get().len() as u64,
            Kind::File { size, .. } => *size,
        }
    }
}

/// A directory whose listing changed in a reload, and the changed names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub dir: Ino,
    pub names: Vec<String>,
}

/// Two dists providing different content at one path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("file conflict: {path} is provided by both {first} and {second} with different content (set on_conflict = \"last-wins\" in the manifest to let the later one win, as pip does)")]
pub struct Conflict {
    pub path: String,
    pub first: String,
    pub second: String,
}

/// The manifest's `on_conflict`, which the builder applies.
pub use crate::manifest::OnConflict as ConflictPolicy;

/// The finished, immutable tree.
#[derive(Debug)]
pub struct View {
    tree: Tree,
    /// Slot -> inode, set once [`View::renumber_like`] has given nodes
    /// the inode numbers of an earlier view; empty means slot + 1.
    inos: Vec<Ino>,
    /// Inode -> slot, the inverse of `inos`.
    slots: FxHashMap<Ino, Slot>,
    /// The highest inode number in use; fresh inodes start above it.
    pub max_ino: Ino,
    /// The interpreter whose pycs [`Source::Pyc`] names.
    pub cache_tag: String,
    pub owners: Vec<String>,
    pub total_bytes: u64,
    /// What [`Mtime::Env`] stands for.
    pub env_mtime: SystemTime,
    /// Conflicts resolved by [`ConflictPolicy::LastWins`], for logging.
    pub overridden: Vec<Conflict>,
}

impl View {
    fn slot(&self, ino: Ino) -> Option<Slot> {
        if self.inos.is_empty() {
            let s = Slot::try_from(ino.checked_sub(1)?).ok()?;
            return ((s as usize) < self.tree.nodes.len()).then_some(s);
        }
        self.slots.get(&ino).copied()
    }

    fn ino(&self, slot: Slot) -> Ino {
        match self.inos.get(slot as usize) {
            Some(&ino) => ino,
            None => Ino::from(slot) + 1,
        }
    }

    pub fn get(&self, ino: Ino) -> Option<&Node> {
        self.tree.nodes.get(self.slot(ino)? as usize)
    }

    /// A node's name (empty for the root).
    pub fn name(&self, ino: Ino) -> &str {
        self.slot(ino).map_or("", |s| self.tree.name(s))
    }

    /// The inode of a node's parent directory (the root's is the root).
    pub fn parent(&self, ino: Ino) -> Ino {
        self.slot(ino)
            .map_or(ROOT, |s| self.ino(self.tree.nodes[s as usize].parent))
    }

    /// A directory's children in readdir order: inode, name and node.
    pub fn children(&self, ino: Ino) -> impl Iterator<Item = (Ino, &str, &Node)> {
        let kids: &[Slot] = match self.get(ino).map(|n| &n.kind) {
            Some(Kind::Dir { children }) => children,
            _ => &[],
        };
        kids.iter()
            .map(|&s| (self.ino(s), self.tree.name(s), &self.tree.nodes[s as usize]))
    }
    /// O(1) name lookup in a directory.
    pub fn lookup(&self, parent: Ino, name: &str) -> Option<Ino> {
        let dir = self.slot(parent)?;
        self.tree.find(dir, name).map(|s| self.ino(s))
    }

    /// Resolve a `/`-separated path relative to the root.
    pub fn resolve(&self, path: &str) -> Option<Ino> {
        path.split('/')
            .filter(|p| !p.is_empty())
            .try_fold(ROOT, |ino, part| self.lookup(ino, part))
    }

    pub fn len(&self) -> usize {
        self.tree.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tree.nodes.is_empty()
    }

    /// The mtime to serve for `node`.
    pub fn mtime(&self, node: &Node) -> SystemTime {
        match node.mtime {
            Mtime::Env => self.env_mtime,
            Mtime::Ingested(secs) => epoch_secs(secs),
        }
    }

    /// The full path of a node, for messages.
    pub fn path_of(&self, ino: Ino) -> String {
        self.slot(ino)
            .map_or_else(String::new, |s| self.tree.path_of(s))
    }
}

/// Seconds since the epoch as a `SystemTime`; the epoch itself for a time
/// past what the platform can represent (only a damaged index or image
/// holds one), so serving a node can never panic.
pub fn epoch_secs(secs: u64) -> SystemTime {
    UNIX_EPOCH
        .checked_add(Duration::from_secs(secs))
        .unwrap_or(UNIX_EPOCH)
}

fn new_dir() -> Kind {
    Kind::Dir {
        children: Vec::new(),
    }
}

/// The bytes of a tree's files as stored, not [`Node::size`]: that would
/// render every lazy file (each dist's RECORD) at mount time, which
/// laziness exists to avoid. statfs may leave out those few KiB.
fn stored_bytes(tree: &Tree) -> u64 {
    tree.nodes
        .iter()
        .map(|n| match n.kind {
            Kind::File { size, .. } => size,
            Kind::Dir { .. } => 0,
        })
        .sum()
}
