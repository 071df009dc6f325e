//! The view image format: a view as self-checking bytes, and back. The
//! cache of images in the store is [`super::image`].

use std::sync::Arc;
use std::time::SystemTime;

use rustc_hash::FxHashMap;

use super::tree::{Entry, Tree};
use super::{new_dir, stored_bytes, Ino, Kind, Lazy, Mtime, Node, Slot, Source, View, ROOT_SLOT};
use crate::hashing::Digest;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::testing::dist;
    use crate::view::{epoch_secs, ConflictPolicy, ViewBuilder, ROOT};

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
