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

pub mod image;

use std::hash::Hasher;

use rustc_hash::{FxHashMap, FxHasher};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::hashing::{Digest, DigestMap};
use crate::store::dist_index::DistIndex;

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

fn same_content(a: &Node, b: &Node) -> bool {
    match (&a.kind, &b.kind) {
        (Kind::Dir { .. }, Kind::Dir { .. }) => true,
        (
            Kind::File {
                source: s1,
                size: z1,
                executable: e1,
            },
            Kind::File {
                source: s2,
                size: z2,
                executable: e2,
            },
        ) => s1 == s2 && z1 == z2 && e1 == e2 && a.mtime == b.mtime,
        _ => false,
    }
}

/// Two dists providing different content at one path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("file conflict: {path} is provided by both {first} and {second} with different content (set on_conflict = \"last-wins\" in the manifest to let the later one win, as pip does)")]
pub struct Conflict {
    pub path: String,
    pub first: String,
    pub second: String,
}

/// What to do when two dists provide different files at one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConflictPolicy {
    #[default]
    Error,
    LastWins,
}

/// The nodes, their names and the (directory, name) index: the part of
/// the tree the builder grows and the view serves.
#[derive(Debug, Default)]
struct Tree {
    nodes: Vec<Node>,
    names: String,
    /// Open addressing, linear probing, kept at most half full. The root
    /// is not in it.
    table: Vec<Entry>,
}

/// One index entry: a slot + 1 (0 is empty) and its key's hash, so that
/// probing skips most mismatches and growing never rehashes a name.
#[derive(Debug, Default, Clone, Copy)]
struct Entry {
    slot: u32,
    hash: u32,
}

impl Tree {
    fn name(&self, slot: Slot) -> &str {
        let (off, len) = self.nodes[slot as usize].name;
        &self.names[off as usize..(off + len) as usize]
    }

    fn key_hash(parent: Slot, name: &str) -> u32 {
        let mut h = FxHasher::default();
        h.write_u32(parent);
        h.write(name.as_bytes());
        // FxHasher mixes into the high bits.
        (h.finish() >> 32) as u32
    }

    /// The child `name` of directory `dir`.
    fn find(&self, dir: Slot, name: &str) -> Option<Slot> {
        self.find_hashed(dir, name, Self::key_hash(dir, name))
    }

    fn find_hashed(&self, dir: Slot, name: &str, hash: u32) -> Option<Slot> {
        if self.table.is_empty() {
            return None;
        }
        let mask = self.table.len() - 1;
        let mut i = hash as usize & mask;
        loop {
            let e = self.table[i];
            let s = e.slot.checked_sub(1)?;
            if e.hash == hash && self.nodes[s as usize].parent == dir && self.name(s) == name {
                return Some(s);
            }
            i = (i + 1) & mask;
        }
    }

    /// Make room for `more` nodes without growing the index again.
    fn reserve(&mut self, more: usize) {
        self.nodes.reserve(more);
        if (self.nodes.len() + more) * 2 > self.table.len() {
            self.grow(self.nodes.len() + more);
        }
    }

    /// Index `slot` (a node not yet indexed) under `hash`.
    fn index(&mut self, slot: Slot, hash: u32) {
        if self.nodes.len() * 2 > self.table.len() {
            self.grow(self.nodes.len());
        }
        self.place(Entry {
            slot: slot + 1,
            hash,
        });
    }

    fn place(&mut self, e: Entry) {
        let mask = self.table.len() - 1;
        let mut i = e.hash as usize & mask;
        while self.table[i].slot != 0 {
            i = (i + 1) & mask;
        }
        self.table[i] = e;
    }

    fn grow(&mut self, nodes: usize) {
        let cap = (nodes * 2).next_power_of_two().max(1024);
        let old = std::mem::replace(&mut self.table, vec![Entry::default(); cap]);
        for e in old.into_iter().filter(|e| e.slot != 0) {
            self.place(e);
        }
    }

    fn push(&mut self, parent: Slot, name: &str, node: (Kind, Mtime, u32)) -> Slot {
        let hash = Self::key_hash(parent, name);
        self.push_hashed(parent, name, node, hash)
    }

    fn push_hashed(
        &mut self,
        parent: Slot,
        name: &str,
        node: (Kind, Mtime, u32),
        hash: u32,
    ) -> Slot {
        let off = self.names.len() as u32;
        self.names.push_str(name);
        let slot = self.nodes.len() as Slot;
        let (kind, mtime, owner) = node;
        self.nodes.push(Node {
            parent,
            name: (off, name.len() as u32),
            mtime,
            owner,
            kind,
        });
        if let Kind::Dir { children } = &mut self.nodes[parent as usize].kind {
            children.push(slot);
        }
        self.index(slot, hash);
        slot
    }

    fn path_of(&self, mut slot: Slot) -> String {
        let mut parts = Vec::new();
        while slot != ROOT_SLOT {
            parts.push(self.name(slot));
            slot = self.nodes[slot as usize].parent;
        }
        parts.reverse();
        parts.join("/")
    }
}

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

    /// Give every node that `old` also has (same path, same kind, same
    /// content) the inode number it had there, and new nodes fresh numbers
    /// above any `old` used. A live reload thus keeps inodes stable for
    /// running processes, and a changed file never reuses an inode the
    /// kernel may still cache.
    pub fn renumber_like(&mut self, old: &View) {
        let mut next = old.max_ino.max(self.max_ino) + 1;
        let nodes = &self.tree.nodes;
        let mut map: Vec<Ino> = vec![0; nodes.len()];
        map[ROOT_SLOT as usize] = ROOT;
        let mut stack = vec![(ROOT_SLOT, Some(ROOT))];
        while let Some((new_dir, old_dir)) = stack.pop() {
            let Kind::Dir { children } = &nodes[new_dir as usize].kind else {
                continue;
            };
            for &child in children {
                let node = &nodes[child as usize];
                let kept = old_dir
                    .and_then(|d| old.lookup(d, self.tree.name(child)))
                    .filter(|&o| old.get(o).is_some_and(|on| same_content(on, node)));
                map[child as usize] = kept.unwrap_or_else(|| {
                    next += 1;
                    next - 1
                });
                if node.is_dir() {
                    stack.push((child, kept));
                }
            }
        }
        self.slots = map
            .iter()
            .enumerate()
            .map(|(i, &ino)| (ino, i as Slot))
            .collect();
        self.max_ino = map.iter().copied().max().unwrap_or(ROOT);
        self.inos = map;
    }

    /// What the kernel must forget after replacing `old` by `self` (both
    /// numbered alike): directories whose listing changed, and each name
    /// added, removed or now naming another inode.
    pub fn changes_since(&self, old: &View) -> Vec<Change> {
        let mut out = Vec::new();
        for (slot, node) in self.tree.nodes.iter().enumerate() {
            if !node.is_dir() {
                continue;
            }
            let ino = self.ino(slot as Slot);
            if !old.get(ino).is_some_and(Node::is_dir) {
                continue;
            }
            let mut names: Vec<String> = self
                .children(ino)
                .filter(|&(child, name, _)| old.lookup(ino, name) != Some(child))
                .map(|(_, name, _)| name.to_string())
                .collect();
            names.extend(
                old.children(ino)
                    .filter(|&(_, name, _)| self.lookup(ino, name).is_none())
                    .map(|(_, name, _)| name.to_string()),
            );
            if !names.is_empty() {
                out.push(Change { dir: ino, names });
            }
        }
        out
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

/// Builds a [`View`] one dist at a time.
pub struct ViewBuilder {
    tree: Tree,
    cache_tag: String,
    owners: Vec<String>,
    policy: ConflictPolicy,
    env_mtime: SystemTime,
    overridden: Vec<Conflict>,
    /// The directory the last file went into, and its slot: a dist's
    /// files come grouped by directory, so most paths skip the walk.
    last_dir: (String, Slot),
    /// Scratch for pyc names.
    pyc_name: String,
}

/// The full path of a file being inserted, rendered only for a conflict.
#[derive(Clone, Copy)]
enum At<'a> {
    Path(&'a str),
    /// The pyc of this `.py` source path.
    PycOf(&'a str),
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

impl ViewBuilder {
    /// `env_mtime` is served for every directory and generated file
    /// ([`Mtime::Env`]): it must be stable for a given environment and
    /// change when the environment changes.
    pub fn new(policy: ConflictPolicy, env_mtime: SystemTime, cache_tag: &str) -> Self {
        let root = Node {
            parent: ROOT_SLOT,
            name: (0, 0),
            mtime: Mtime::Env,
            owner: 0,
            kind: new_dir(),
        };
        ViewBuilder {
            tree: Tree {
                nodes: vec![root],
                ..Tree::default()
            },
            cache_tag: cache_tag.to_string(),
            owners: Vec::new(),
            policy,
            env_mtime,
            overridden: Vec::new(),
            last_dir: (String::new(), ROOT_SLOT),
            pyc_name: String::new(),
        }
    }

    /// Add a dist's site-packages files, and for each `.py` source the
    /// pyc from `pycs` (source digest -> pyc size) in `__pycache__`.
    pub fn add_dist(&mut self, dist: &DistIndex, pycs: &DigestMap<u64>) -> Result<(), Conflict> {
        let owner = self.owners.len() as u32;
        self.owners
            .push(format!("{} {}", dist.meta.name, dist.meta.version));
        let mtime = Mtime::Ingested(dist.meta.ingested);
        // Each file, its pyc, and a share of new directories.
        self.tree.reserve(dist.files.len() * 2);
        for f in dist.files.iter().filter(|f| f.scheme.in_site_packages()) {
            let file = Kind::File {
                source: Source::Object(f.object),
                size: f.size,
                executable: f.executable,
            };
            let (dir, name) = self.parent_dir(&f.path, owner)?;
            self.insert(dir, name, (file, mtime, owner), At::Path(&f.path))?;
            let Some(stem) = name.strip_suffix(".py") else {
                continue;
            };
            if let Some(&size) = pycs.get(&f.object) {
                let kind = Kind::File {
                    source: Source::Pyc(f.object),
                    size,
                    executable: false,
                };
                self.add_pyc(dir, stem, (kind, mtime, owner), &f.path)?;
            }
        }
        Ok(())
    }

    /// Add `__pycache__/<stem>.<tag>.pyc` under directory `dir`.
    fn add_pyc(
        &mut self,
        dir: Slot,
        stem: &str,
        node: (Kind, Mtime, u32),
        source_path: &str,
    ) -> Result<(), Conflict> {
        let cache = match self.tree.find(dir, "__pycache__") {
            Some(s) if self.tree.nodes[s as usize].is_dir() => s,
            Some(s) => return Err(self.conflict(&self.tree.path_of(s), self.owner_of(s), node.2)),
            None => self
                .tree
                .push(dir, "__pycache__", (new_dir(), Mtime::Env, node.2)),
        };
        let mut name = std::mem::take(&mut self.pyc_name);
        name.clear();
        name.push_str(stem);
        name.push('.');
        name.push_str(&self.cache_tag);
        name.push_str(".pyc");
        let r = self.insert(cache, &name, node, At::PycOf(source_path));
        self.pyc_name = name;
        r
    }

    /// Add (or replace) a file rendered on first use.
    pub fn add_lazy(&mut self, path: &str, lazy: Arc<Lazy>) -> Result<(), Conflict> {
        let owner = self.owners.len().saturating_sub(1) as u32;
        let kind = Kind::File {
            size: 0,
            source: Source::Lazy(lazy),
            executable: false,
        };
        self.replace(path, kind, owner)
    }

    /// Add (or replace) a generated file, owned by the last added dist.
    pub fn add_inline(
        &mut self,
        path: &str,
        bytes: Arc<[u8]>,
        executable: bool,
    ) -> Result<(), Conflict> {
        let owner = self.owners.len().saturating_sub(1) as u32;
        let kind = Kind::File {
            size: bytes.len() as u64,
            source: Source::Inline(bytes),
            executable,
        };
        self.replace(path, kind, owner)
    }

    pub fn finish(self) -> View {
        let total_bytes = stored_bytes(&self.tree);
        View {
            max_ino: self.tree.nodes.len() as Ino,
            inos: Vec::new(),
            slots: FxHashMap::default(),
            tree: self.tree,
            cache_tag: self.cache_tag,
            owners: self.owners,
            total_bytes,
            env_mtime: self.env_mtime,
            overridden: self.overridden,
        }
    }

    fn owner_of(&self, slot: Slot) -> u32 {
        self.tree.nodes[slot as usize].owner
    }

    /// The full path `at` names, for messages.
    fn path(&self, at: At) -> String {
        match at {
            At::Path(p) => p.to_string(),
            At::PycOf(source) => pyc_path(&source[..source.len() - 3], &self.cache_tag),
        }
    }

    /// Put a file named `name` into directory `dir`: merged with an equal
    /// file, replacing a different one under last-wins, else a conflict.
    fn insert(
        &mut self,
        dir: Slot,
        name: &str,
        node: (Kind, Mtime, u32),
        at: At,
    ) -> Result<(), Conflict> {
        let hash = Tree::key_hash(dir, name);
        let Some(existing) = self.tree.find_hashed(dir, name, hash) else {
            self.tree.push_hashed(dir, name, node, hash);
            return Ok(());
        };
        let (kind, mtime, owner) = node;
        let old = &self.tree.nodes[existing as usize];
        match (&old.kind, &kind) {
            (Kind::File { source: a, .. }, Kind::File { source: b, .. }) if a == b => Ok(()),
            (Kind::File { .. }, Kind::File { .. }) if self.policy == ConflictPolicy::LastWins => {
                let c = self.conflict(&self.path(at), old.owner, owner);
                log::warn!("{c}: using the file of {}", c.second);
                self.overridden.push(c);
                let old = &mut self.tree.nodes[existing as usize];
                (old.kind, old.owner, old.mtime) = (kind, owner, mtime);
                Ok(())
            }
            _ => Err(self.conflict(&self.path(at), old.owner, owner)),
        }
    }

    fn replace(&mut self, path: &str, kind: Kind, owner: u32) -> Result<(), Conflict> {
        let (dir, name) = self.parent_dir(path, owner)?;
        match self.tree.find(dir, name) {
            Some(s) if !self.tree.nodes[s as usize].is_dir() => {
                let node = &mut self.tree.nodes[s as usize];
                (node.kind, node.mtime) = (kind, Mtime::Env);
            }
            Some(s) => return Err(self.conflict(path, self.owner_of(s), owner)),
            None => {
                self.tree.push(dir, name, (kind, Mtime::Env, owner));
            }
        }
        Ok(())
    }

    /// Walk to (creating) the directory holding `path`; returns it and the
    /// final name.
    fn parent_dir<'p>(&mut self, path: &'p str, owner: u32) -> Result<(Slot, &'p str), Conflict> {
        let (dirs, name) = path.rsplit_once('/').unwrap_or(("", path));
        if dirs == self.last_dir.0 {
            return Ok((self.last_dir.1, name));
        }
        let mut cur = ROOT_SLOT;
        for part in dirs.split('/').filter(|p| !p.is_empty()) {
            let hash = Tree::key_hash(cur, part);
            cur = match self.tree.find_hashed(cur, part, hash) {
                Some(s) if self.tree.nodes[s as usize].is_dir() => s,
                Some(s) => {
                    return Err(self.conflict(&self.tree.path_of(s), self.owner_of(s), owner))
                }
                None => {
                    let dir = (new_dir(), Mtime::Env, owner);
                    self.tree.push_hashed(cur, part, dir, hash)
                }
            };
        }
        self.last_dir.0.clear();
        self.last_dir.0.push_str(dirs);
        self.last_dir.1 = cur;
        Ok((cur, name))
    }

    fn conflict(&self, path: &str, first: u32, second: u32) -> Conflict {
        let name = |o: u32| self.owners.get(o as usize).cloned().unwrap_or_default();
        Conflict {
            path: path.to_string(),
            first: name(first),
            second: name(second),
        }
    }
}

// ---------------------------------------------------------------------------
// Images
// ---------------------------------------------------------------------------

/// First bytes of a view image; the last byte is the format version.
const IMAGE_MAGIC: &[u8; 8] = b"SFVIEW\x00\x02";
/// The fixed part of a node record; children and inline bytes follow in
/// their own sections.
const NODE_RECORD: usize = 72;
const TAG_DIR: u8 = 0;
const TAG_OBJECT: u8 = 1;
const TAG_PYC: u8 = 2;
const TAG_INLINE: u8 = 3;
const TAG_LAZY: u8 = 4;

/// A cheap checksum (not a cryptographic one): an image is a cache the
/// mount itself wrote, so this only has to catch torn or damaged files,
/// at memory speed (four independent multiply lanes).
fn image_checksum(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mix = |h: u64, w: u64| (h ^ w).wrapping_mul(K).rotate_left(31);
    let mut lanes = [1u64, 2, 3, 4];
    let mut chunks = bytes.chunks_exact(32);
    for c in &mut chunks {
        for (i, lane) in lanes.iter_mut().enumerate() {
            let w = u64::from_le_bytes(c[i * 8..i * 8 + 8].try_into().unwrap_or_default());
            *lane = mix(*lane, w);
        }
    }
    let tail = chunks
        .remainder()
        .iter()
        .fold(0, |h, &b| mix(h, u64::from(b)));
    lanes.into_iter().fold(mix(tail, bytes.len() as u64), mix)
}

impl View {
    /// The view as a self-checking byte image, which [`View::from_image`]
    /// turns back into an equal view without the dists' indexes: a mount
    /// of the same dists loads it instead of merging every dist again.
    /// Lazy files are stored as their owner only, [`Mtime::Env`] as a
    /// flag (the loader says what it stands for); inode numbers are the
    /// built view's (slot + 1), whatever a reload renumbered.
    pub fn to_image(&self) -> Vec<u8> {
        let t = &self.tree;
        let mut out = Vec::with_capacity(64 + t.nodes.len() * (NODE_RECORD + 4) + t.names.len());
        out.extend_from_slice(IMAGE_MAGIC);
        out.extend_from_slice(&[0; 8]); // checksum, filled in last
        let put32 = |o: &mut Vec<u8>, v: usize| o.extend_from_slice(&(v as u32).to_le_bytes());
        let put_str = |o: &mut Vec<u8>, s: &[u8]| {
            put32(o, s.len());
            o.extend_from_slice(s);
        };
        put32(&mut out, t.nodes.len());
        put32(&mut out, t.table.len());
        put_str(&mut out, self.cache_tag.as_bytes());
        put32(&mut out, self.owners.len());
        for o in &self.owners {
            put_str(&mut out, o.as_bytes());
        }
        put_str(&mut out, t.names.as_bytes());
        let inline: Vec<&Arc<[u8]>> = t
            .nodes
            .iter()
            .filter_map(|n| match &n.kind {
                Kind::File {
                    source: Source::Inline(b),
                    ..
                } => Some(b),
                _ => None,
            })
            .collect();
        put32(&mut out, inline.len());
        for b in inline {
            put_str(&mut out, b);
        }
        for e in &t.table {
            out.extend_from_slice(&e.slot.to_le_bytes());
            out.extend_from_slice(&e.hash.to_le_bytes());
        }
        let mut inlined = 0;
        for n in &t.nodes {
            let (tag, exec, size, aux, digest) = match &n.kind {
                Kind::Dir { children } => (TAG_DIR, false, 0, children.len(), None),
                Kind::File {
                    source,
                    size,
                    executable,
                } => {
                    let (tag, aux, digest) = match source {
                        Source::Object(d) => (TAG_OBJECT, 0, Some(d)),
                        Source::Pyc(d) => (TAG_PYC, 0, Some(d)),
                        Source::Inline(_) => {
                            inlined += 1;
                            (TAG_INLINE, inlined - 1, None)
                        }
                        Source::Lazy(_) => (TAG_LAZY, 0, None),
                    };
                    (tag, *executable, *size, aux, digest)
                }
            };
            let (env, secs) = match n.mtime {
                Mtime::Env => (true, 0),
                Mtime::Ingested(secs) => (false, secs),
            };
            for v in [n.parent, n.name.0, n.name.1, n.owner] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            out.extend_from_slice(&secs.to_le_bytes());
            out.extend_from_slice(&[tag, exec as u8, env as u8, 0]);
            out.extend_from_slice(&size.to_le_bytes());
            put32(&mut out, aux);
            out.extend_from_slice(&digest.map_or([0; 32], |d| d.0));
        }
        for n in &t.nodes {
            if let Kind::Dir { children } = &n.kind {
                for &c in children {
                    out.extend_from_slice(&c.to_le_bytes());
                }
            }
        }
        let sum = image_checksum(&out[16..]);
        out[8..16].copy_from_slice(&sum.to_le_bytes());
        out
    }

    /// The view an image of [`View::to_image`] holds, serving `env_mtime`
    /// for [`Mtime::Env`], with each lazy file made again by
    /// `lazy(owner)`. `None` for anything that is not a whole, consistent
    /// image of this format: the caller builds the view instead. Every
    /// index is checked, so no image can make the view panic or loop.
    pub fn from_image(
        bytes: &[u8],
        env_mtime: SystemTime,
        lazy: &dyn Fn(u32) -> Arc<Lazy>,
    ) -> Option<View> {
        let body = bytes.strip_prefix(IMAGE_MAGIC)?;
        let (sum, body) = body.split_first_chunk::<8>()?;
        if u64::from_le_bytes(*sum) != image_checksum(body) {
            return None;
        }
        let mut r = ImageReader(body);
        let count = r.len()?;
        let table_len = r.len()?;
        let cache_tag = r.string()?;
        let owners = (0..r.len()?)
            .map(|_| r.string())
            .collect::<Option<Vec<_>>>()?;
        let names = r.string()?;
        let inline: Vec<Arc<[u8]>> = (0..r.len()?)
            .map(|_| r.bytes().map(Arc::from))
            .collect::<Option<_>>()?;
        if count == 0 || !table_len.is_power_of_two() || table_len < count * 2 {
            return None;
        }
        let table: Vec<Entry> = r
            .take(table_len.checked_mul(8)?)?
            .chunks_exact(8)
            .map(|e| Entry {
                slot: u32::from_le_bytes([e[0], e[1], e[2], e[3]]),
                hash: u32::from_le_bytes([e[4], e[5], e[6], e[7]]),
            })
            .collect();
        if table.iter().any(|e| e.slot as usize > count) {
            return None;
        }
        // Probing ends at an empty entry: every node but the root has one
        // entry, and at least half the table must stay empty.
        if table.iter().filter(|e| e.slot != 0).count() != count - 1 {
            return None;
        }
        let records = r.take(count.checked_mul(NODE_RECORD)?)?;
        let mut nodes = Vec::with_capacity(count);
        let mut child_counts = Vec::new();
        for (slot, rec) in records.chunks_exact(NODE_RECORD).enumerate() {
            let mut f = ImageReader(rec);
            let (parent, off, len, owner) = (f.u32()?, f.u32()?, f.u32()?, f.u32()?);
            let secs = f.u64()?;
            let head = f.take(4)?;
            let (size, aux) = (f.u64()?, f.len()?);
            let digest = Digest(*f.take(32)?.first_chunk::<32>()?);
            let name_ok = names.get(off as usize..(off as usize).checked_add(len as usize)?);
            // Parents come before their children (the root is its own),
            // so parent links cannot form a cycle.
            let parent_ok = if slot == 0 {
                parent == 0
            } else {
                (parent as usize) < slot
            };
            if !parent_ok || name_ok.is_none() || (owner as usize) >= owners.len().max(1) {
                return None;
            }
            let mtime = match head[2] {
                0 => Mtime::Ingested(secs),
                1 => Mtime::Env,
                _ => return None,
            };
            let source = match head[0] {
                TAG_DIR => {
                    child_counts.push(aux);
                    None
                }
                TAG_OBJECT => Some(Source::Object(digest)),
                TAG_PYC => Some(Source::Pyc(digest)),
                TAG_INLINE => Some(Source::Inline(inline.get(aux)?.clone())),
                TAG_LAZY => Some(Source::Lazy(lazy(owner))),
                _ => return None,
            };
            let kind = match source {
                None => new_dir(),
                Some(source) => Kind::File {
                    source,
                    size,
                    executable: head[1] != 0,
                },
            };
            nodes.push(Node {
                parent,
                name: (off, len),
                mtime,
                owner,
                kind,
            });
        }
        // Each node but the root is listed once, by its own parent.
        let mut listed = vec![false; count];
        let parents: Vec<Slot> = nodes.iter().map(|n| n.parent).collect();
        let dirs = nodes
            .iter_mut()
            .enumerate()
            .filter_map(|(slot, n)| match &mut n.kind {
                Kind::Dir { children } => Some((slot, children)),
                Kind::File { .. } => None,
            });
        for ((dir, children), n) in dirs.zip(child_counts) {
            let slots = r.take(n.checked_mul(4)?)?;
            children.reserve_exact(n);
            for c in slots.chunks_exact(4) {
                let c = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                let seen = listed.get_mut(c as usize)?;
                if c == ROOT_SLOT || *seen || parents[c as usize] as usize != dir {
                    return None;
                }
                *seen = true;
                children.push(c);
            }
        }
        if listed.iter().skip(1).any(|&l| !l) {
            return None;
        }
        if !r.0.is_empty() || !nodes[ROOT_SLOT as usize].is_dir() {
            return None;
        }
        let tree = Tree {
            nodes,
            names,
            table,
        };
        Some(View {
            max_ino: tree.nodes.len() as Ino,
            inos: Vec::new(),
            slots: FxHashMap::default(),
            total_bytes: stored_bytes(&tree),
            tree,
            cache_tag,
            owners,
            env_mtime,
            overridden: Vec::new(),
        })
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

/// Little-endian fields of an image, front to back; `None` past the end.
struct ImageReader<'a>(&'a [u8]);

impl<'a> ImageReader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(*self.take(4)?.first_chunk()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(*self.take(8)?.first_chunk()?))
    }

    fn len(&mut self) -> Option<usize> {
        self.u32().map(|v| v as usize)
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.len()?;
        self.take(n)
    }

    fn string(&mut self) -> Option<String> {
        String::from_utf8(self.bytes()?.to_vec()).ok()
    }
}

/// `dir/stem.py` -> `dir/__pycache__/stem.<tag>.pyc`.
pub fn pyc_path(stem_path: &str, cache_tag: &str) -> String {
    match stem_path.rsplit_once('/') {
        Some((dir, stem)) => format!("{dir}/__pycache__/{stem}.{cache_tag}.pyc"),
        None => format!("__pycache__/{stem_path}.{cache_tag}.pyc"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::dist_index::{DistMeta, FileEntry};
    use crate::wheel::Scheme;

    fn dist(name: &str, files: &[(&str, &[u8])]) -> DistIndex {
        DistIndex {
            meta: DistMeta {
                id: format!("{name}-1-0000000000000000"),
                name: name.into(),
                version: "1".into(),
                wheel: String::new(),
                wheel_sha256: String::new(),
                wheel_size: 0,
                tags: vec![],
                root_is_purelib: true,
                dist_info: format!("{name}-1.dist-info"),
                ingested: 1000,
                file_count: files.len(),
                unpacked_size: 0,
                entry_points: Default::default(),
            },
            files: files
                .iter()
                .map(|(p, c)| FileEntry {
                    scheme: if p.starts_with("bin/") {
                        Scheme::Scripts
                    } else {
                        Scheme::Purelib
                    },
                    executable: false,
                    size: c.len() as u64,
                    object: Digest::of(c),
                    path: p.trim_start_matches("bin/").to_string(),
                })
                .collect(),
        }
    }

    fn build(policy: ConflictPolicy, dists: &[DistIndex]) -> Result<View, Conflict> {
        let mut b = ViewBuilder::new(policy, epoch_secs(5), "cpython-311");
        for d in dists {
            let pycs = d.files.iter().map(|f| (f.object, 7)).collect();
            b.add_dist(d, &pycs)?;
        }
        Ok(b.finish())
    }

    #[test]
    fn merges_namespace_dirs_and_adds_pycs() {
        let v = build(
            ConflictPolicy::Error,
            &[
                dist("a", &[("google/a/__init__.py", b"a"), ("bin/tool", b"t")]),
                dist("b", &[("google/b/__init__.py", b"b")]),
            ],
        )
        .unwrap();
        let google = v.resolve("google").unwrap();
        assert!(v.get(google).unwrap().is_dir());
        assert!(v.resolve("google/a/__init__.py").is_some());
        assert!(v.resolve("google/b/__init__.py").is_some());
        let pyc = v
            .resolve("google/b/__pycache__/__init__.cpython-311.pyc")
            .unwrap();
        assert_eq!(v.get(pyc).unwrap().size(), 7);
        assert!(
            v.resolve("tool").is_none(),
            "scripts are not in site-packages"
        );
        assert_eq!(
            v.path_of(pyc),
            "google/b/__pycache__/__init__.cpython-311.pyc"
        );
    }

    #[test]
    fn identical_files_merge_and_different_ones_conflict() {
        let same = [
            dist("a", &[("x/data.txt", b"same")]),
            dist("b", &[("x/data.txt", b"same")]),
        ];
        assert!(build(ConflictPolicy::Error, &same).is_ok());
        let diff = [
            dist("a", &[("x/data.txt", b"one")]),
            dist("b", &[("x/data.txt", b"two")]),
        ];
        let c = build(ConflictPolicy::Error, &diff).unwrap_err();
        assert_eq!(
            (c.first.as_str(), c.second.as_str(), c.path.as_str()),
            ("a 1", "b 1", "x/data.txt")
        );
        let v = build(ConflictPolicy::LastWins, &diff).unwrap();
        let ino = v.resolve("x/data.txt").unwrap();
        assert!(
            matches!(&v.get(ino).unwrap().kind, Kind::File { source: Source::Object(d), .. } if *d == Digest::of(b"two"))
        );
        assert_eq!(v.overridden.len(), 1);
    }

    #[test]
    fn renumbering_keeps_inodes_of_unchanged_paths() {
        let a = dist("a", &[("a/x.py", b"x"), ("shared/one.txt", b"1")]);
        let b = dist("b", &[("b/y.py", b"y"), ("shared/two.txt", b"2")]);
        let old = build(ConflictPolicy::Error, &[a.clone(), b]).unwrap();
        let a2 = dist("a", &[("a/x.py", b"x2"), ("shared/one.txt", b"1")]);
        let mut new = build(ConflictPolicy::Error, &[a2]).unwrap();
        new.renumber_like(&old);
        assert_eq!(new.resolve("shared/one.txt"), old.resolve("shared/one.txt"));
        assert_eq!(new.resolve("shared"), old.resolve("shared"));
        let changed = new.resolve("a/x.py").unwrap();
        assert!(changed > old.max_ino, "changed content gets a fresh inode");
        assert!(new.resolve("b").is_none());
        for ino in [changed, new.resolve("a").unwrap(), ROOT] {
            assert!(new.get(ino).is_some());
        }
        let changes = new.changes_since(&old);
        let root = changes.iter().find(|c| c.dir == ROOT).unwrap();
        assert!(root.names.iter().any(|n| &**n == "b"));
        let shared = changes
            .iter()
            .find(|c| Some(c.dir) == new.resolve("shared"))
            .unwrap();
        assert_eq!(&*shared.names[0], "two.txt");
    }

    #[test]
    fn file_versus_directory_always_conflicts() {
        let d = [
            dist("a", &[("x", b"file")]),
            dist("b", &[("x/y.txt", b"y")]),
        ];
        assert!(build(ConflictPolicy::LastWins, &d).is_err());
    }

    #[test]
    fn inline_files_replace_and_inodes_are_unique() {
        let mut b = ViewBuilder::new(ConflictPolicy::Error, epoch_secs(5), "t");
        b.add_dist(
            &dist("a", &[("a-1.dist-info/INSTALLER", b"pip")]),
            &DigestMap::default(),
        )
        .unwrap();
        b.add_inline(
            "a-1.dist-info/INSTALLER",
            Arc::from(&b"sitefs\n"[..]),
            false,
        )
        .unwrap();
        let v = b.finish();
        let ino = v.resolve("a-1.dist-info/INSTALLER").unwrap();
        assert!(
            matches!(&v.get(ino).unwrap().kind, Kind::File { source: Source::Inline(b), .. } if &b[..] == b"sitefs\n")
        );
        let mut seen = std::collections::HashSet::new();
        for i in 1..=v.len() as Ino {
            assert!(seen.insert(v.path_of(i)));
        }
    }

    #[test]
    fn lazy_files_render_on_first_use_not_when_the_view_is_built() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let renders = Arc::new(AtomicUsize::new(0));
        let counter = renders.clone();
        let mut b = ViewBuilder::new(ConflictPolicy::Error, epoch_secs(5), "t");
        b.add_dist(&dist("a", &[("a/x.txt", b"x")]), &DigestMap::default())
            .unwrap();
        let lazy = Lazy::new(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            b"rendered".to_vec()
        });
        b.add_lazy("a-1.dist-info/RECORD", lazy).unwrap();
        let v = b.finish();
        assert_eq!(renders.load(Ordering::SeqCst), 0, "rendered by finish()");
        let node = v.get(v.resolve("a-1.dist-info/RECORD").unwrap()).unwrap();
        assert_eq!(node.size(), 8);
        assert_eq!(node.size(), 8);
        assert_eq!(renders.load(Ordering::SeqCst), 1);
    }

    /// A view with every kind of node: merged dirs, files, an executable,
    /// pycs, inline and lazy files.
    fn every_kind() -> View {
        let mut b = ViewBuilder::new(ConflictPolicy::Error, epoch_secs(5), "cpython-311");
        let mut a = dist("a", &[("ns/a/__init__.py", b"a"), ("bin/tool", b"#!")]);
        a.files[1].executable = true;
        let z = dist("z", &[("ns/z/mod.py", b"z"), ("ns/z/data.bin", b"\0")]);
        for d in [&a, &z] {
            let pycs = d.files.iter().map(|f| (f.object, 9)).collect();
            b.add_dist(d, &pycs).unwrap();
        }
        b.add_inline(
            "a-1.dist-info/INSTALLER",
            Arc::from(&b"sitefs\n"[..]),
            false,
        )
        .unwrap();
        b.add_lazy("z-1.dist-info/RECORD", Lazy::new(|| b"record".to_vec()))
            .unwrap();
        b.finish()
    }

    /// Every node as the mount serves it, by inode.
    fn served(v: &View) -> Vec<String> {
        (1..=v.len() as Ino)
            .map(|ino| {
                let n = v.get(ino).unwrap();
                let kids: Vec<_> = v.children(ino).map(|(i, name, _)| (i, name)).collect();
                let source = match &n.kind {
                    Kind::File {
                        source: Source::Lazy(l),
                        ..
                    } => format!("{:?}", l.get()),
                    Kind::File { source, .. } => format!("{source:?}"),
                    Kind::Dir { .. } => String::new(),
                };
                format!(
                    "{ino} {} parent={} {:?} owner={} perm={:o} size={} {source} {kids:?}",
                    v.path_of(ino),
                    v.parent(ino),
                    v.mtime(n),
                    n.owner,
                    n.perm(),
                    n.size()
                )
            })
            .collect()
    }

    #[test]
    fn an_image_loads_as_an_equal_view_with_lazy_files_made_again() {
        let built = every_kind();
        let image = built.to_image();
        let made = std::sync::Mutex::new(Vec::new());
        let lazy = |owner: u32| {
            made.lock().unwrap().push(owner);
            Lazy::new(|| b"record".to_vec())
        };
        let loaded = View::from_image(&image, epoch_secs(5), &lazy).unwrap();
        assert_eq!(*made.lock().unwrap(), [1], "made once, for its owner");
        assert_eq!(served(&loaded), served(&built));
        assert_eq!(loaded.owners, built.owners);
        assert_eq!(loaded.cache_tag, built.cache_tag);
        assert_eq!(loaded.total_bytes, built.total_bytes);
        assert_eq!(loaded.lookup(ROOT, "missing"), None);
        let pyc = loaded.resolve("ns/z/__pycache__/mod.cpython-311.pyc");
        assert_eq!(pyc, built.resolve("ns/z/__pycache__/mod.cpython-311.pyc"));
        assert!(pyc.is_some());
        assert_eq!(loaded.to_image(), image, "an image round-trips exactly");
    }

    #[test]
    fn an_image_serves_the_env_mtime_it_is_loaded_with_and_keeps_dist_times() {
        let built = every_kind();
        let lazy = |_: u32| Lazy::new(Vec::new);
        let later = epoch_secs(5_000_000);
        let loaded = View::from_image(&built.to_image(), later, &lazy).unwrap();
        let mtime = |v: &View, path: &str| v.mtime(v.get(v.resolve(path).unwrap()).unwrap());
        for path in ["", "ns", "ns/z/__pycache__", "a-1.dist-info/INSTALLER"] {
            assert_eq!(mtime(&built, path), epoch_secs(5), "{path:?}");
            assert_eq!(mtime(&loaded, path), later, "{path:?}");
        }
        for path in ["ns/z/mod.py", "ns/z/__pycache__/mod.cpython-311.pyc"] {
            assert_eq!(mtime(&loaded, path), mtime(&built, path), "{path:?}");
            assert_ne!(mtime(&loaded, path), later, "{path:?}");
        }
    }

    #[test]
    fn a_damaged_or_cut_image_is_refused_never_trusted() {
        let image = every_kind().to_image();
        let lazy = |_: u32| Lazy::new(Vec::new);
        for len in 0..image.len() {
            assert!(
                View::from_image(&image[..len], epoch_secs(5), &lazy).is_none(),
                "cut at {len}"
            );
        }
        for i in 0..image.len() {
            let mut bad = image.clone();
            bad[i] ^= 0x40;
            let loaded = View::from_image(&bad, epoch_secs(5), &lazy);
            assert!(loaded.is_none(), "byte {i} flipped");
        }
    }

    #[test]
    fn a_resealed_damaged_image_loads_only_as_a_view_that_cannot_panic() {
        // A damaged image whose checksum was made to match: only the
        // structural checks stand between it and the mount.
        let image = every_kind().to_image();
        let lazy = |_: u32| Lazy::new(Vec::new);
        for i in 16..image.len() {
            for bit in [0x01, 0x80] {
                let mut bad = image.clone();
                bad[i] ^= bit;
                let sum = image_checksum(&bad[16..]);
                bad[8..16].copy_from_slice(&sum.to_le_bytes());
                if let Some(v) = View::from_image(&bad, epoch_secs(5), &lazy) {
                    served(&v);
                    for ino in 1..=v.len() as Ino {
                        assert_eq!(v.lookup(ino, "no such name"), None);
                    }
                }
            }
        }
    }
}
