//! The tree's storage: nodes in one `Vec`, names in one string arena, and
//! one open-addressing table from (directory, name) to slot for the whole
//! tree, so building a big view allocates little and a lookup is O(1).

use std::hash::Hasher;

use rustc_hash::FxHasher;

use super::{Kind, Mtime, Node, Slot, ROOT_SLOT};

/// The nodes, their names and the (directory, name) index: the part of
/// the tree the builder grows and the view serves.
#[derive(Debug, Default)]
pub(super) struct Tree {
    pub(super) nodes: Vec<Node>,
    pub(super) names: String,
    /// Open addressing, linear probing, kept at most half full. The root
    /// is not in it.
    pub(super) table: Vec<Entry>,
}

/// One index entry: a slot + 1 (0 is empty) and its key's hash, so that
/// probing skips most mismatches and growing never rehashes a name.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Entry {
    pub(super) slot: u32,
    pub(super) hash: u32,
}

impl Tree {
    pub(super) fn name(&self, slot: Slot) -> &str {
        let (off, len) = self.nodes[slot as usize].name;
        &self.names[off as usize..(off + len) as usize]
    }

    pub(super) fn key_hash(parent: Slot, name: &str) -> u32 {
        let mut h = FxHasher::default();
        h.write_u32(parent);
        h.write(name.as_bytes());
        // FxHasher mixes into the high bits.
        (h.finish() >> 32) as u32
    }

    /// The child `name` of directory `dir`.
    pub(super) fn find(&self, dir: Slot, name: &str) -> Option<Slot> {
        self.find_hashed(dir, name, Self::key_hash(dir, name))
    }

    pub(super) fn find_hashed(&self, dir: Slot, name: &str, hash: u32) -> Option<Slot> {
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
    pub(super) fn reserve(&mut self, more: usize) {
        self.nodes.reserve(more);
        if (self.nodes.len() + more) * 2 > self.table.len() {
            self.grow(self.nodes.len() + more);
        }
    }

    /// Index `slot` (a node not yet indexed) under `hash`.
    pub(super) fn index(&mut self, slot: Slot, hash: u32) {
        if self.nodes.len() * 2 > self.table.len() {
            self.grow(self.nodes.len());
        }
        self.place(Entry {
            slot: slot + 1,
            hash,
        });
    }

    pub(super) fn place(&mut self, e: Entry) {
        let mask = self.table.len() - 1;
        let mut i = e.hash as usize & mask;
        while self.table[i].slot != 0 {
            i = (i + 1) & mask;
        }
        self.table[i] = e;
    }

    pub(super) fn grow(&mut self, nodes: usize) {
        let cap = (nodes * 2).next_power_of_two().max(1024);
        let old = std::mem::replace(&mut self.table, vec![Entry::default(); cap]);
        for e in old.into_iter().filter(|e| e.slot != 0) {
            self.place(e);
        }
    }

    pub(super) fn push(&mut self, parent: Slot, name: &str, node: (Kind, Mtime, u32)) -> Slot {
        let hash = Self::key_hash(parent, name);
        self.push_hashed(parent, name, node, hash)
    }

    pub(super) fn push_hashed(
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

    pub(super) fn path_of(&self, mut slot: Slot) -> String {
        let mut parts = Vec::new();
        while slot != ROOT_SLOT {
            parts.push(self.name(slot));
            slot = self.nodes[slot as usize].parent;
        }
        parts.reverse();
        parts.join("/")
    }
}
