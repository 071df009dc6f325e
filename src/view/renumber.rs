//! Live reloads: a rebuilt view takes the inode numbers of the view it
//! replaces wherever a node is unchanged, and says what the kernel must
//! forget.

use super::{Change, Ino, Kind, Node, Slot, View, ROOT, ROOT_SLOT};

impl View {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::testing::{build, dist};
    use crate::view::ConflictPolicy;

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
}
