//! `store verify`: re-hash every object a distribution needs, and every
//! pyc compiled for it, so silent disk corruption or a hand-edited store
//! file is found before an environment serves it. The pycs matter as much
//! as the sources: they are what runs (unchecked-hash pycs, linked into
//! the store), and a flipped byte in one crashes or, worse, quietly runs
//! other code.

use std::collections::BTreeMap;
use std::fmt;

use rayon::prelude::*;

use crate::hashing::{hash_file, Digest};
use crate::interpreter::Interpreter;
use crate::progress;
use crate::store::bytecode::CompilerPool;
use crate::store::dist_index::{DistIndex, FileEntry, BINARY_FILE, FILES_FILE};
use crate::store::ingest;
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
    /// A pyc that is missing, unreadable, or not the bytes compiled.
    Pyc {
        cache_tag: String,
        source: Digest,
        why: String,
        /// The dists whose marker lists it.
        ids: Vec<String>,
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
            Problem::Pyc {
                cache_tag,
                source,
                why,
                ids,
            } => write!(
                f,
                "damaged pyc of {source} for {cache_tag}: {why} (compiled for {})",
                ids.join(", ")
            ),
        }
    }
}

/// What a verify run found.
#[derive(Debug, Default)]
pub struct VerifyReport {
    pub dists_checked: usize,
    pub objects_checked: usize,
    pub pycs_checked: usize,
    /// Pycs whose marker (written before sitefs recorded pyc hashes) has
    /// no hash to check them against.
    pub pycs_unrecorded: usize,
    pub problems: Vec<Problem>,
}

/// The pycs to check: (tag, source) -> (recorded sha256, dists).
type PycChecks = BTreeMap<(String, Digest), (Digest, Vec<String>)>;

/// Check every object referenced by every distribution.
pub fn verify(store: &Store, quiet: bool) -> Result<VerifyReport, StoreError> {
    let mut report = VerifyReport::default();
    let mut users: BTreeMap<Digest, Vec<String>> = BTreeMap::new();
    let mut pycs = PycChecks::new();
    for meta in store.list()? {
        report.dists_checked += 1;
        collect_pycs(store, &meta.id, &mut pycs, &mut report)?;
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
    report.pycs_checked = pycs.len();
    let bar = progress::bar(pycs.len() as u64, "verifying bytecode", quiet);
    let problems: Vec<Problem> = pycs
        .into_par_iter()
        .filter_map(|((cache_tag, source), (want, ids))| {
            bar.inc(1);
            let why = match hash_file(&store.pyc_path(&cache_tag, &source)) {
                Ok((got, _)) if got == want => return None,
                Ok((got, _)) => format!("content hashes to {got}, compiled as {want}"),
                Err(e) => e.to_string(),
            };
            Some(Problem::Pyc {
                cache_tag,
                source,
                why,
                ids,
            })
        })
        .collect();
    bar.finish_and_clear();
    report.problems.extend(problems);
    Ok(report)
}

/// Every pyc the bytecode markers of `id` list, with the hash recorded
/// when it was compiled.
fn collect_pycs(
    store: &Store,
    id: &str,
    pycs: &mut PycChecks,
    report: &mut VerifyReport,
) -> Result<(), StoreError> {
    for tag in store.bytecode_tags(id) {
        for e in store.pyc_entries(&tag, id)?.unwrap_or_default() {
            let Some(want) = e.sha256 else {
                report.pycs_unrecorded += 1;
                continue;
            };
            let entry = pycs
                .entry((tag.clone(), e.source))
                .or_insert_with(|| (want, Vec::new()));
            entry.1.push(id.to_string());
        }
    }
    Ok(())
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
            Problem::BadIndex { .. } | Problem::Pyc { .. } => None,
        }
    }

    /// The dists that cannot be served correctly because of it and must
    /// be added again (a damaged pyc is compiled again instead).
    fn dists(&self) -> Vec<String> {
        match self {
            Problem::Missing { users, .. }
            | Problem::Corrupt { users, .. }
            | Problem::Unreadable { users, .. } => users
                .iter()
                .filter_map(|u| u.split_once(' ').map(|(id, _)| id.to_string()))
                .collect(),
            Problem::BadIndex { id, .. } => vec![id.clone()],
            Problem::Pyc { .. } => Vec::new(),
        }
    }
}

/// Why `verify --repair` stopped.
#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("compiling the damaged pycs again: {0}")]
    Compile(#[from] ingest::IngestError),
}

/// What `verify --repair` did.
#[derive(Debug, Default)]
pub struct Repair {
    /// Damaged objects moved to `quarantine/`.
    pub moved: Vec<Digest>,
    /// Dists unpublished (their index moved to `quarantine/`), with the
    /// wheel file name to add again.
    pub unpublished: Vec<(String, String)>,
    /// Interpreter tags whose damaged pycs were compiled again, with how
    /// many dists that re-marked.
    pub recompiled: Vec<(String, usize)>,
    /// Tags with damaged pycs but no known interpreter to compile them
    /// (their dists lost the bytecode marker for that tag, so envs fail
    /// to mount naming `sitefs store compile --python`).
    pub no_interpreter: Vec<String>,
}

/// Move every damaged object aside and unpublish each dist that needs
/// one, so that adding its wheel again re-ingests it (an intact store
/// dist is skipped by ingest) and restores the objects. Nothing is
/// fetched; envs naming an unpublished dist fail to mount with the
/// message that says to add it, instead of serving wrong bytes.
pub fn repair(store: &Store, report: &VerifyReport) -> Result<Repair, RepairError> {
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
    recompile_pycs(store, report, &quarantine, &mut out)?;
    Ok(out)
}

/// Move each damaged pyc aside, drop the markers that list it (a dist is
/// compiled for a tag only with all of its pycs), and compile them again
/// with an interpreter of that tag the store has seen (its probe cache).
fn recompile_pycs(
    store: &Store,
    report: &VerifyReport,
    quarantine: &std::path::Path,
    out: &mut Repair,
) -> Result<(), RepairError> {
    let mut by_tag: BTreeMap<&str, std::collections::BTreeSet<String>> = BTreeMap::new();
    for p in &report.problems {
        let Problem::Pyc {
            cache_tag,
            source,
            ids,
            ..
        } = p
        else {
            continue;
        };
        let pyc = store.pyc_path(cache_tag, source);
        let _ = std::fs::rename(&pyc, quarantine.join(format!("{cache_tag}.{source}.pyc")));
        for id in ids {
            let marker = store.bytecode_marker(cache_tag, id);
            match std::fs::remove_file(&marker) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(io_at(&marker)(e).into())
                }
                _ => {}
            }
        }
        by_tag
            .entry(cache_tag)
            .or_default()
            .extend(ids.iter().cloned());
    }
    for (tag, ids) in by_tag {
        let Some(interp) = Interpreter::cached_for_tag(&store.path(Dir::Interpreters), tag) else {
            out.no_interpreter.push(tag.to_string());
            continue;
        };
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        let pools = [CompilerPool::lazy(&interp, workers)];
        let ids: Vec<String> = ids.into_iter().collect();
        ingest::ensure_bytecode(store, &ids, &pools, true)?;
        out.recompiled.push((tag.to_string(), ids.len()));
    }
    Ok(())
}
