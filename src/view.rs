//! The merged view: an environment's site-packages as an in-memory inode
//! table, built from dist indexes. Pure data, no FUSE types, so every
//! merge rule is testable without a mount.
//!
//! Rules: directories of several dists merge (namespace packages); the
//! same path with the same content in two dists is one file; a path with
//! different content is a [`Conflict`] naming both dists, unless the
//! manifest says the later dist wins (pip's silent behaviour). A file and
//! a directory at one path always conflict.

use std::collections::HashMap;

use rustc_hash::FxHashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::dist_index::DistIndex;
use crate::hashing::Digest;

/// Inode number; [`ROOT`] is the mount's root directory.
pub type Ino = u64;
pub const ROOT: Ino = 1;

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
        /// Children in readdir order (insertion order, stable per mount).
        children: Vec<Ino>,
        by_name: FxHashMap<Arc<str>, Ino>,
    },
    File {
        source: Source,
        /// The size, except for [`Source::Lazy`] files, whose size is
        /// known once rendered: read sizes through [`Node::size`].
        size: u64,
        executable: bool,
    },
}

/// One file or directory of the view.
#[derive(Debug, Clone)]
pub struct Node {
    pub parent: Ino,
    pub name: Arc<str>,
    pub mtime: SystemTime,
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
            Kind::Dir { children, .. } => children.len() as u64,
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
    pub names: Vec<Arc<str>>,
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

/// The finished, immutable tree.
#[derive(Debug)]
pub struct View {
    nodes: Vec<Node>,
    /// Inode -> index into `nodes`, set once [`View::renumber_like`] has
    /// given nodes the inode numbers of an earlier view; empty means
    /// inode `i` is `nodes[i - 1]`.
    slots: FxHashMap<Ino, u32>,
    /// The highest inode number in use; fresh inodes start above it.
    pub max_ino: Ino,
    /// The interpreter whose pycs [`Source::Pyc`] names.
    pub cache_tag: String,
    pub owners: Vec<String>,
    pub total_bytes: u64,
    /// Conflicts resolved by [`ConflictPolicy::LastWins`], for logging.
    pub overridden: Vec<Conflict>,
}

impl View {
    pub fn get(&self, ino: Ino) -> Option<&Node> {
        if self.slots.is_empty() {
            return self.nodes.get(usize::try_from(ino).ok()?.checked_sub(1)?);
        }
        self.nodes.get(*self.slots.get(&ino)? as usize)
    }

    /// Give every node that `old` also has (same path, same kind, same
    /// content) the inode number it had there, and new nodes fresh numbers
    /// above any `old` used. A live reload thus keeps inodes stable for
    /// running processes, and a changed file never reuses an inode the
    /// kernel may still cache.
    pub fn renumber_like(&mut self, old: &View) {
        let mut next = old.max_ino.max(self.max_ino) + 1;
        let mut map: Vec<Ino> = vec![0; self.nodes.len()];
        map[0] = ROOT;
        let mut stack = vec![(ROOT, Some(ROOT))];
        while let Some((new_dir, old_dir)) = stack.pop() {
            let Some(Kind::Dir { children, .. }) =
                self.nodes.get(new_dir as usize - 1).map(|n| &n.kind)
            else {
                continue;
            };
            for &child in children {
                let node = &self.nodes[child as usize - 1];
                let kept = old_dir
                    .and_then(|d| old.lookup(d, &node.name))
                    .filter(|&o| old.get(o).is_some_and(|on| same_content(on, node)));
                map[child as usize - 1] = kept.unwrap_or_else(|| {
                    next += 1;
                    next - 1
                });
                if node.is_dir() {
                    stack.push((child, kept));
                }
            }
        }
        self.apply_numbering(&map);
    }

    fn apply_numbering(&mut self, map: &[Ino]) {
        let remap = |i: Ino| map[i as usize - 1];
        for node in &mut self.nodes {
            node.parent = remap(node.parent);
            if let Kind::Dir { children, by_name } = &mut node.kind {
                children.iter_mut().for_each(|c| *c = remap(*c));
                by_name.values_mut().for_each(|c| *c = remap(*c));
            }
        }
        self.slots = map
            .iter()
            .enumerate()
            .map(|(i, &ino)| (ino, i as u32))
            .collect();
        self.max_ino = map.iter().copied().max().unwrap_or(ROOT);
    }

    /// What the kernel must forget after replacing `old` by `self` (both
    /// numbered alike): directories whose listing changed, and each name
    /// added, removed or now naming another inode.
    pub fn changes_since(&self, old: &View) -> Vec<Change> {
        let mut out = Vec::new();
        for node in &self.nodes {
            let Kind::Dir { by_name, .. } = &node.kind else {
                continue;
            };
            let ino = self.ino_of(node);
            let old_names = match old.get(ino).map(|n| &n.kind) {
                Some(Kind::Dir { by_name, .. }) => Some(by_name),
                _ => None,
            };
            let Some(old_names) = old_names else { continue };
            let mut names: Vec<Arc<str>> = by_name
                .iter()
                .filter(|(n, i)| old_names.get(*n) != Some(i))
                .map(|(n, _)| n.clone())
                .collect();
            names.extend(
                old_names
                    .keys()
                    .filter(|n| !by_name.contains_key(*n))
                    .cloned(),
            );
            if !names.is_empty() {
                out.push(Change { dir: ino, names });
            }
        }
        out
    }

    fn ino_of(&self, node: &Node) -> Ino {
        match &self.get(node.parent).map(|p| &p.kind) {
            Some(Kind::Dir { by_name, .. }) if !node.name.is_empty() => {
                by_name.get(&node.name).copied().unwrap_or(ROOT)
            }
            _ => ROOT,
        }
    }

    /// O(1) name lookup in a directory.
    pub fn lookup(&self, parent: Ino, name: &str) -> Option<Ino> {
        match &self.get(parent)?.kind {
            Kind::Dir { by_name, .. } => by_name.get(name).copied(),
            Kind::File { .. } => None,
        }
    }

    /// Resolve a `/`-separated path relative to the root.
    pub fn resolve(&self, path: &str) -> Option<Ino> {
        path.split('/')
            .filter(|p| !p.is_empty())
            .try_fold(ROOT, |ino, part| self.lookup(ino, part))
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The full path of a node, for messages.
    pub fn path_of(&self, mut ino: Ino) -> String {
        let mut parts = Vec::new();
        while ino != ROOT {
            let Some(n) = self.get(ino) else { break };
            parts.push(n.name.to_string());
            ino = n.parent;
        }
        parts.reverse();
        parts.join("/")
    }
}

/// Builds a [`View`] one dist at a time.
pub struct ViewBuilder {
    nodes: Vec<Node>,
    cache_tag: String,
    owners: Vec<String>,
    policy: ConflictPolicy,
    dir_mtime: SystemTime,
    overridden: Vec<Conflict>,
}

/// Seconds since the epoch as a `SystemTime`.
pub fn epoch_secs(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

impl ViewBuilder {
    /// `dir_mtime` is served for every directory: it must be stable for a
    /// given environment and change when the environment changes
    /// (importlib.metadata and the import system cache on it).
    pub fn new(policy: ConflictPolicy, dir_mtime: SystemTime, cache_tag: &str) -> Self {
        let root = Node {
            parent: ROOT,
            name: "".into(),
            mtime: dir_mtime,
            owner: 0,
            kind: Kind::Dir {
                children: Vec::new(),
                by_name: FxHashMap::default(),
            },
        };
        ViewBuilder {
            nodes: vec![root],
            cache_tag: cache_tag.to_string(),
            owners: Vec::new(),
            policy,
            dir_mtime,
            overridden: Vec::new(),
        }
    }

    /// Add a dist's site-packages files, and for each `.py` source the
    /// pyc from `pycs` (source digest -> pyc size) in `__pycache__`.
    pub fn add_dist(
        &mut self,
        dist: &DistIndex,
        pycs: &HashMap<Digest, u64>,
    ) -> Result<(), Conflict> {
        let owner = self.owners.len() as u32;
        self.owners
            .push(format!("{} {}", dist.meta.name, dist.meta.version));
        let mtime = epoch_secs(dist.meta.ingested);
        for f in dist.files.iter().filter(|f| f.scheme.in_site_packages()) {
            let file = Kind::File {
                source: Source::Object(f.object),
                size: f.size,
                executable: f.executable,
            };
            self.insert(&f.path, file, mtime, owner)?;
            if let Some(stem) = f.path.strip_suffix(".py") {
                if let Some(&size) = pycs.get(&f.object) {
                    let pyc = pyc_path(stem, &self.cache_tag);
                    let kind = Kind::File {
                        source: Source::Pyc(f.object),
                        size,
                        executable: false,
                    };
                    self.insert(&pyc, kind, mtime, owner)?;
                }
            }
        }
        Ok(())
    }

    /// Add (or replace) a file rendered on first use.
    pub fn add_lazy(&mut self, path: &str, lazy: Arc<Lazy>) -> Result<(), Conflict> {
        let owner = self.owners.len().saturating_sub(1) as u32;
        let kind = Kind::File {
            size: 0,
            source: Source::Lazy(lazy),
            executable: false,
        };
        self.replace(path, kind, self.dir_mtime, owner)
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
        self.replace(path, kind, self.dir_mtime, owner)
    }

    pub fn finish(self) -> View {
        let total_bytes = self
            .nodes
            .iter()
            .filter(|n| !n.is_dir())
            .map(Node::size)
            .sum();
        View {
            max_ino: self.nodes.len() as Ino,
            slots: FxHashMap::default(),
            nodes: self.nodes,
            cache_tag: self.cache_tag,
            owners: self.owners,
            total_bytes,
            overridden: self.overridden,
        }
    }

    fn insert(
        &mut self,
        path: &str,
        kind: Kind,
        mtime: SystemTime,
        owner: u32,
    ) -> Result<(), Conflict> {
        let (dir, name) = self.parent_dir(path, owner)?;
        let Some(existing) = self.child(dir, name) else {
            self.push(dir, name, kind, mtime, owner);
            return Ok(());
        };
        let node = &self.nodes[existing as usize - 1];
        match (&node.kind, &kind) {
            (Kind::File { source: a, .. }, Kind::File { source: b, .. }) if a == b => Ok(()),
            (Kind::File { .. }, Kind::File { .. }) if self.policy == ConflictPolicy::LastWins => {
                let c = self.conflict(path, node.owner, owner);
                log::warn!("{c}: using the file of {}", c.second);
                self.overridden.push(c);
                let node = &mut self.nodes[existing as usize - 1];
                (node.kind, node.owner, node.mtime) = (kind, owner, mtime);
                Ok(())
            }
            _ => Err(self.conflict(path, node.owner, owner)),
        }
    }

    fn replace(
        &mut self,
        path: &str,
        kind: Kind,
        mtime: SystemTime,
        owner: u32,
    ) -> Result<(), Conflict> {
        let (dir, name) = self.parent_dir(path, owner)?;
        match self.child(dir, name) {
            Some(ino) if !self.nodes[ino as usize - 1].is_dir() => {
                let node = &mut self.nodes[ino as usize - 1];
                (node.kind, node.mtime) = (kind, mtime);
            }
            Some(ino) => {
                return Err(self.conflict(path, self.nodes[ino as usize - 1].owner, owner))
            }
            None => {
                self.push(dir, name, kind, mtime, owner);
            }
        }
        Ok(())
    }

    /// Walk to (creating) the directory holding `path`; returns it and the
    /// final name.
    fn parent_dir<'p>(&mut self, path: &'p str, owner: u32) -> Result<(Ino, &'p str), Conflict> {
        let (dirs, name) = path.rsplit_once('/').unwrap_or(("", path));
        let mut cur = ROOT;
        for part in dirs.split('/').filter(|p| !p.is_empty()) {
            cur = match self.child(cur, part) {
                Some(ino) if self.nodes[ino as usize - 1].is_dir() => ino,
                Some(ino) => {
                    return Err(self.conflict(
                        &self.path_upto(ino),
                        self.nodes[ino as usize - 1].owner,
                        owner,
                    ))
                }
                None => {
                    let kind = Kind::Dir {
                        children: Vec::new(),
                        by_name: FxHashMap::default(),
                    };
                    self.push(cur, part, kind, self.dir_mtime, owner)
                }
            };
        }
        Ok((cur, name))
    }

    fn child(&self, dir: Ino, name: &str) -> Option<Ino> {
        match &self.nodes[dir as usize - 1].kind {
            Kind::Dir { by_name, .. } => by_name.get(name).copied(),
            Kind::File { .. } => None,
        }
    }

    fn push(&mut self, parent: Ino, name: &str, kind: Kind, mtime: SystemTime, owner: u32) -> Ino {
        let name: Arc<str> = Arc::from(name);
        self.nodes.push(Node {
            parent,
            name: name.clone(),
            mtime,
            owner,
            kind,
        });
        let ino = self.nodes.len() as Ino;
        if let Kind::Dir { children, by_name } = &mut self.nodes[parent as usize - 1].kind {
            children.push(ino);
            by_name.insert(name, ino);
        }
        ino
    }

    fn path_upto(&self, mut ino: Ino) -> String {
        let mut parts = Vec::new();
        while ino != ROOT {
            let n = &self.nodes[ino as usize - 1];
            parts.push(n.name.to_string());
            ino = n.parent;
        }
        parts.reverse();
        parts.join("/")
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
    use crate::dist_index::{DistMeta, FileEntry};
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
            &HashMap::new(),
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
}
