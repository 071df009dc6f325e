//! Merging dists into a view: the merge rules of [`super`] applied one
//! file at a time, with conflicts named by path and dists.

use std::sync::Arc;
use std::time::SystemTime;

use rustc_hash::FxHashMap;

use super::tree::Tree;
use super::{
    new_dir, stored_bytes, Conflict, ConflictPolicy, Ino, Kind, Lazy, Mtime, Node, Slot, Source,
    View, ROOT_SLOT,
};
use crate::hashing::DigestMap;
use crate::store::dist_index::DistIndex;
use crate::store::pyc::{push_pyc_name, pyc_path};

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
        push_pyc_name(&mut name, stem, &self.cache_tag);
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
            // A wheel that ships its own `__pycache__/x.<tag>.pyc` beside
            // `x.py`: pip installs it and then compiles over it, so the
            // pyc compiled for the store wins, whichever comes first.
            (
                Kind::File {
                    source: Source::Object(_),
                    ..
                },
                Kind::File {
                    source: Source::Pyc(_),
                    ..
                },
            ) if old.owner == owner => {
                let old = &mut self.tree.nodes[existing as usize];
                (old.kind, old.mtime) = (kind, mtime);
                Ok(())
            }
            (
                Kind::File {
                    source: Source::Pyc(_),
                    ..
                },
                Kind::File {
                    source: Source::Object(_),
                    ..
                },
            ) if old.owner == owner => Ok(()),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hashing::Digest;
    use crate::view::epoch_secs;
    use crate::view::testing::{build, dist};

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
    fn a_shipped_pyc_is_replaced_by_the_compiled_one_as_pip_does() {
        let src: &[u8] = b"X = 1\n";
        for files in [
            // Shipped pyc before its source in the dist's order, and after.
            [
                ("p/__pycache__/m.t.pyc", b"shipped" as &[u8]),
                ("p/m.py", src),
            ],
            [("p/m.py", src), ("p/__pycache__/m.t.pyc", b"shipped")],
        ] {
            let d = dist("a", &files);
            let mut pycs = DigestMap::default();
            pycs.insert(Digest::of(src), 9);
            let mut b = ViewBuilder::new(ConflictPolicy::Error, epoch_secs(5), "t");
            b.add_dist(&d, &pycs).unwrap();
            let v = b.finish();
            let pyc = v.resolve("p/__pycache__/m.t.pyc").unwrap();
            assert!(
                matches!(
                    v.get(pyc).unwrap().kind,
                    Kind::File {
                        source: Source::Pyc(_),
                        size: 9,
                        ..
                    }
                ),
                "{files:?}"
            );
        }
        // Another dist's file at that path is still a conflict.
        let a = dist("a", &[("p/m.py", src)]);
        let b2 = dist("b", &[("p/__pycache__/m.t.pyc", b"other")]);
        let mut pycs = DigestMap::default();
        pycs.insert(Digest::of(src), 9);
        let mut b = ViewBuilder::new(ConflictPolicy::Error, epoch_secs(5), "t");
        b.add_dist(&a, &pycs).unwrap();
        assert!(b.add_dist(&b2, &pycs).is_err());
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
}
