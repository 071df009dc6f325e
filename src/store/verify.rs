//! `store verify`: re-hash every object a distribution needs, so silent
//! disk corruption or a hand-edited store file is found before an
//! environment serves it.

use std::collections::BTreeMap;
use std::fmt;

use rayon::prelude::*;

use crate::hashing::{hash_file, Digest};
use crate::progress;
use crate::store::dist_index::{DistIndex, FileEntry, BINARY_FILE, FILES_FILE};
use crate::store::layout::Dir;
use crate::store::{io_at, Store, StoreError};

/// One damaged object and who needs it.
#[derive(Debug, Clone)]
pub enum Problem {
    Missing {
        object: Digest,
        users: Vec<String>,
    },
    Corrupt {
        object: Digest,
        actual: Digest,
        users: Vec<String>,
    },
    Unreadable {
        object: Digest,
        why: String,
        users: Vec<String>,
    },
    BadIndex {
        id: String,
        why: String,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Missing { object, users } => write!(
                f,
                "missing object {object} (needed by {})",
                users.join(", ")
            ),
            Problem::Corrupt {
                object,
                actual,
                users,
            } => {
                write!(
                    f,
                    "corrupt object {object}: content hashes to {actual} (needed by {})",
                    users.join(", ")
                )
            }
            Problem::Unreadable { object, why, users } => {
                write!(
                    f,
                    "unreadable object {object}: {why} (needed by {})",
                    users.join(", ")
                )
            }
            Problem::BadIndex { id, why } => write!(f, "damaged index of {id}: {why}"),
        }
    }
}

/// What a verify run found.
#[derive(Debug, Default)]
pub struct VerifyReport {
    pub dists_checked: usize,
    pub objects_checked: usize,
    pub problems: Vec<Problem>,
}

/// Check every object referenced by every distribution.
pub fn verify(store: &Store, quiet: bool) -> Result<VerifyReport, StoreError> {
    let mut report = VerifyReport::default();
    let mut users: BTreeMap<Digest, Vec<String>> = BTreeMap::new();
    for meta in store.list()? {
        report.dists_checked += 1;
        match store.load(&meta.id) {
            Ok(idx) => {
                if let Some(why) = disagreement(store, &meta.id, &idx.files) {
                    report.problems.push(Problem::BadIndex {
                        id: meta.id.clone(),
                        why,
                    });
                }
                for f in &idx.files {
                    users
                        .entry(f.object)
                        .or_default()
                        .push(format!("{} {}", meta.id, f.path));
                }
            }
            Err(e) => report.problems.push(Problem::BadIndex {
                id: meta.id.clone(),
                why: e.to_string(),
            }),
        }
    }
    report.objects_checked = users.len();
    let bar = progress::bar(users.len() as u64, "verifying", quiet);
    let problems: Vec<Problem> = users
        .into_par_iter()
        .filter_map(|(object, users)| {
            bar.inc(1);
            check_object(store, object, users)
        })
        .collect();
    bar.finish_and_clear();
    report.problems.extend(problems);
    Ok(report)
}

/// Whether what a mount reads (possibly `files.idx`) differs from the
/// authoritative `files.tsv`.
fn disagreement(store: &Store, id: &str, served: &[FileEntry]) -> Option<String> {
    match DistIndex::load_text(&store.dist_dir(id)) {
        Ok(rows) if rows == served => None,
        Ok(_) => Some(format!("{BINARY_FILE} disagrees with {FILES_FILE}")),
        Err(e) => Some(e.to_string()),
    }
}

fn check_object(store: &Store, object: Digest, users: Vec<String>) -> Option<Problem> {
    match hash_file(&store.object_path(&object)) {
        Ok((actual, _)) if actual == object => None,
        Ok((actual, _)) => Some(Problem::Corrupt {
            object,
            actual,
            users,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Some(Problem::Missing { object, users })
        }
        Err(e) => Some(Problem::Unreadable {
            object,
            why: e.to_string(),
            users,
        }),
    }
}

impl Problem {
    /// The damaged object, if the problem is one.
    fn object(&self) -> Option<&Digest> {
        match self {
            Problem::Missing { object, .. }
            | Problem::Corrupt { object, .. }
            | Problem::Unreadable { object, .. } => Some(object),
            Problem::BadIndex { .. } => None,
        }
    }

    /// The dists that cannot be served correctly because of it.
    fn dists(&self) -> Vec<String> {
        match self {
            Problem::Missing { users, .. }
            | Problem::Corrupt { users, .. }
            | Problem::Unreadable { users, .. } => users
                .iter()
                .filter_map(|u| u.split_once(' ').map(|(id, _)| id.to_string()))
                .collect(),
            Problem::BadIndex { id, .. } => vec![id.clone()],
        }
    }
}

/// What `verify --repair` did.
#[derive(Debug, Default)]
pub struct Repair {
    /// Damaged objects moved to `quarantine/`.
    pub moved: Vec<Digest>,
    /// Dists unpublished (their index moved to `quarantine/`), with the
    /// wheel file name to add again.
    pub unpublished: Vec<(String, String)>,
}

/// Move every damaged object aside and unpublish each dist that needs
/// one, so that adding its wheel again re-ingests it (an intact store
/// dist is skipped by ingest) and restores the objects. Nothing is
/// fetched; envs naming an unpublished dist fail to mount with the
/// message that says to add it, instead of serving wrong bytes.
pub fn repair(store: &Store, report: &VerifyReport) -> Result<Repair, StoreError> {
    let quarantine = store.path(Dir::Quarantine);
    std::fs::create_dir_all(quarantine.join("dists")).map_err(io_at(&quarantine))?;
    let stamp = std::process::id();
    let mut out = Repair::default();
    for obj in report.problems.iter().filter_map(Problem::object) {
        let src = store.object_path(obj);
        let dest = quarantine.join(format!("{obj}.{stamp}"));
        if std::fs::rename(&src, &dest).is_ok() {
            out.moved.push(*obj);
        }
    }
    let ids: std::collections::BTreeSet<String> =
        report.problems.iter().flat_map(Problem::dists).collect();
    for id in ids {
        let wheel = DistIndex::load_meta(&store.dist_dir(&id))
            .map_or_else(|_| format!("the wheel of {id}"), |m| m.wheel);
        let src = store.dist_dir(&id);
        let dest = quarantine.join("dists").join(format!("{id}.{stamp}"));
        std::fs::rename(&src, &dest).map_err(io_at(&src))?;
        out.unpublished.push((id, wheel));
    }
    Ok(out)
}
