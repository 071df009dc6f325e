//! Dists and views for the view's unit tests.

use super::{epoch_secs, Conflict, ConflictPolicy, View, ViewBuilder};
use crate::hashing::Digest;
use crate::store::dist_index::{DistIndex, DistMeta, FileEntry};
use crate::wheel::Scheme;

pub(super) fn dist(name: &str, files: &[(&str, &[u8])]) -> DistIndex {
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

pub(super) fn build(policy: ConflictPolicy, dists: &[DistIndex]) -> Result<View, Conflict> {
    let mut b = ViewBuilder::new(policy, epoch_secs(5), "cpython-311");
    for d in dists {
        let pycs = d.files.iter().map(|f| (f.object, 7)).collect();
        b.add_dist(d, &pycs)?;
    }
    Ok(b.finish())
}
