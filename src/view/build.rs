//! Manifest -> view: the one place a manifest becomes the tree a mount
//! serves. `sitefs mount`, a live reload, `env create`/`add` and
//! `manifest check` all come through here, so they all find the same
//! problems with the same messages.
//!
//! A view is built from the dists' indexes ([`from_indexes`]) or loaded
//! from the store's image of an earlier build ([`load_or_build`], see
//! [`super::image`]); [`load`] and [`load_for_mount`] start from the
//! manifest file.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::install::record::{installed_record, InstalledExtras};
use crate::install::scripts::env_files;
use crate::manifest::{DistRef, Manifest, ManifestError};
use crate::store::dist_index::DistIndex;
use crate::store::lock::UseGuard;
use crate::store::{PycSizes, Store, StoreError};
use crate::view::image::{self, Cached, PendingImage};
use crate::view::{Conflict, Lazy, View, ViewBuilder};
use crate::wheel::normalize_name;

/// Why a manifest's view cannot be had: the manifest itself, or what it
/// names in its store. One line each, naming what to fix.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("manifest {}: {err}", path.display())]
    Store {
        path: PathBuf,
        #[source]
        err: StoreError,
    },
    #[error("manifest {}: dist {id:?} is {found}, but the manifest says {wanted}", path.display())]
    Mismatch {
        path: PathBuf,
        id: String,
        found: String,
        /// `name version` as the manifest gives them.
        wanted: String,
    },
    #[error(
        "manifest {}: {dist} has no bytecode for {cache_tag} in the store: run `{command}`",
        path.display()
    )]
    NoBytecode {
        path: PathBuf,
        /// `name version (id)`.
        dist: String,
        cache_tag: String,
        /// The `sitefs store compile` command that fixes it.
        command: String,
    },
    #[error("manifest {}: {conflict}", path.display())]
    Conflict {
        path: PathBuf,
        #[source]
        conflict: Conflict,
    },
    #[error("manifest {}: {name} is listed twice", path.display())]
    Duplicate { path: PathBuf, name: String },
}

/// A manifest's store and view, ready to serve.
pub struct Loaded {
    pub store: Store,
    pub view: View,
    /// The store ids the view serves: a mount's gc root.
    pub dists: Vec<String>,
    /// The view's image, to write once the mount is live, when the view
    /// was built rather than loaded from one.
    pub image: Option<PendingImage>,
}

/// Load a manifest file and its view. The view's directory mtime is the
/// manifest's mtime: stable across remounts, and changed whenever the
/// manifest is rewritten.
pub fn load(manifest_path: &Path) -> Result<Loaded, BuildError> {
    of_manifest(Manifest::load(manifest_path)?, manifest_path)
}

/// [`load`] for a mount or a live reload: the manifest is parsed once,
/// and the guard keeps gc out from the store until the caller has
/// recorded the mount's root (see [`crate::store::lock`]).
pub fn load_for_mount(manifest_path: &Path) -> Result<(UseGuard, Loaded), BuildError> {
    let m = Manifest::load(manifest_path)?;
    let guard = UseGuard::acquire(&m.store_path(manifest_path));
    Ok((guard, of_manifest(m, manifest_path)?))
}

fn of_manifest(m: Manifest, manifest_path: &Path) -> Result<Loaded, BuildError> {
    let mtime = std::fs::metadata(manifest_path)
        .and_then(|m| m.modified())
        .unwrap_or(UNIX_EPOCH);
    let store = open_store(&m, manifest_path)?;
    let (view, image) = load_or_build(&m, &store, manifest_path, mtime)?;
    let dists = m.dists.into_iter().map(|d| d.id).collect();
    Ok(Loaded {
        store,
        view,
        dists,
        image,
    })
}

/// The store a manifest names.
pub fn open_store(m: &Manifest, manifest_path: &Path) -> Result<Store, BuildError> {
    Store::open(&m.store_path(manifest_path)).map_err(|err| BuildError::Store {
        path: manifest_path.to_path_buf(),
        err,
    })
}

/// The manifest's view: from its image when one is current, else built,
/// with the image a remount should write once it is live.
pub fn load_or_build(
    m: &Manifest,
    store: &Store,
    manifest_path: &Path,
    dir_mtime: SystemTime,
) -> Result<(View, Option<PendingImage>), BuildError> {
    let lazy = |owner: u32| {
        m.dists
            .get(owner as usize)
            .and_then(|d| lazy_record(m, store, d))
            .unwrap_or_else(|| Lazy::new(Vec::new))
    };
    match image::lookup(store, m, dir_mtime, &lazy) {
        Cached::Hit(view) => Ok((view, None)),
        Cached::Miss(pending) => Ok((from_indexes(m, store, manifest_path, dir_mtime)?, pending)),
    }
}

/// Threads reading dist indexes while a view is built: reading and
/// parsing them costs about 1.5x merging them into the view, so with two
/// readers the merge, on the mount's critical path, never waits.
const LOADERS: usize = 2;

/// Check a manifest against its store and build its view: every problem
/// a mount would hit, found before mounting. `dir_mtime` is what the view
/// serves as directory mtime. Indexes already in `store`'s cache (those
/// `env create` just resolved) are not read again.
pub fn from_indexes(
    m: &Manifest,
    store: &Store,
    manifest_path: &Path,
    dir_mtime: SystemTime,
) -> Result<View, BuildError> {
    std::thread::scope(|scope| {
        // Reading and parsing the dists' indexes costs more than merging
        // them: LOADERS threads read dists round-robin, each in manifest
        // order on its own channel, while this thread merges in order.
        let rxs: Vec<_> = (0..LOADERS)
            .map(|k| {
                let (tx, rx) = std::sync::mpsc::channel();
                let (loader, tag) = (store, &m.python.cache_tag);
                scope.spawn(move || {
                    for d in m.dists.iter().skip(k).step_by(LOADERS) {
                        let index = loader.load(&d.id);
                        let pycs = index.is_ok().then(|| loader.pyc_sizes(tag, &d.id));
                        if tx.send((index, pycs)).is_err() {
                            break;
                        }
                    }
                });
                rx
            })
            .collect();
        let mut seen = HashSet::new();
        let mut builder = ViewBuilder::new(m.policy(), dir_mtime, &m.python.cache_tag);
        let at = Checking {
            m,
            path: manifest_path,
            store,
        };
        for (i, d) in m.dists.iter().enumerate() {
            if !seen.insert(normalize_name(&d.name)) {
                return Err(BuildError::Duplicate {
                    path: manifest_path.to_path_buf(),
                    name: d.name.clone(),
                });
            }
            let loaded = rxs[i % LOADERS]
                .recv()
                .expect("an index loader stops only when told");
            at.add_dist(&mut builder, d, loaded)?;
        }
        Ok(builder.finish())
    })
}

/// What the loader thread found for one dist: its index, then its pyc
/// sizes (`None` when there is no bytecode for the manifest's python).
type IndexRead = (
    Result<Arc<DistIndex>, StoreError>,
    Option<Result<Option<PycSizes>, StoreError>>,
);

/// The manifest being built, for checking its dists and naming it in
/// errors.
struct Checking<'a> {
    m: &'a Manifest,
    path: &'a Path,
    store: &'a Store,
}

impl Checking<'_> {
    fn store_err(&self, err: StoreError) -> BuildError {
        BuildError::Store {
            path: self.path.to_path_buf(),
            err,
        }
    }

    /// Check one loaded dist against the manifest's entry and add it.
    fn add_dist(
        &self,
        builder: &mut ViewBuilder,
        d: &DistRef,
        (index, pycs): IndexRead,
    ) -> Result<(), BuildError> {
        let (m, store) = (self.m, self.store);
        let idx = index.map_err(|e| match e {
            StoreError::NoSuchDist(..) => self.store_err(StoreError::NoSuchDist(
                format!("{} {} ({})", d.name, d.version, d.id),
                store.root().display().to_string(),
            )),
            e => self.store_err(e),
        })?;
        if normalize_name(&idx.meta.name) != normalize_name(&d.name)
            || idx.meta.version != d.version
        {
            return Err(BuildError::Mismatch {
                path: self.path.to_path_buf(),
                id: d.id.clone(),
                found: format!("{} {}", idx.meta.name, idx.meta.version),
                wanted: format!("{} {}", d.name, d.version),
            });
        }
        let pycs = pycs
            .unwrap_or(Ok(None))
            .map_err(|e| self.store_err(e))?
            .ok_or_else(|| BuildError::NoBytecode {
                path: self.path.to_path_buf(),
                dist: format!("{} {} ({})", d.name, d.version, d.id),
                cache_tag: m.python.cache_tag.clone(),
                command: format!(
                    "sitefs store compile --store {} --python PYTHON {}=={}",
                    store.root().display(),
                    d.name,
                    d.version
                ),
            })?;
        let conflict = |conflict| BuildError::Conflict {
            path: self.path.to_path_buf(),
            conflict,
        };
        builder.add_dist(&idx, &pycs).map_err(conflict)?;
        add_install_markers(builder, &idx.meta.dist_info, d.requested).map_err(conflict)?;
        if let Some(record) = lazy_record(m, store, d) {
            builder
                .add_lazy(&format!("{}/RECORD", idx.meta.dist_info), record)
                .map_err(conflict)?;
        }
        Ok(())
    }
}

/// The RECORD of dist `d` installed in the manifest's venv, scripts and
/// data included, rendered when first read (`None` for a manifest without
/// a venv). It reads the dist's index and pyc sizes then, from the store's
/// cache of loaded indexes when the mount built its view, so a view loaded
/// from its image makes it the same way.
fn lazy_record(m: &Manifest, store: &Store, d: &DistRef) -> Option<Arc<Lazy>> {
    let layout = m.env.as_ref()?.layout(&m.python);
    let (store, cache_tag) = (store.clone(), m.python.cache_tag.clone());
    let (id, requested) = (d.id.clone(), d.requested);
    Some(Lazy::new(move || {
        let loaded = store.load(&id).and_then(|idx| {
            let pycs = store.pyc_sizes(&cache_tag, &id)?.unwrap_or_default();
            Ok((idx, pycs))
        });
        let (idx, pycs) = match loaded {
            Ok(l) => l,
            Err(e) => {
                log::error!("RECORD of {id}: {e}");
                return Vec::new();
            }
        };
        let files = env_files(&idx, &layout, &|d| std::fs::read(store.object_path(d)))
            .unwrap_or_else(|e| {
                log::error!("RECORD of {id}: cannot read its scripts from the store: {e}");
                Vec::new()
            });
        let extras = InstalledExtras {
            installer: INSTALLER,
            requested,
            env_files: &files,
            up_to_prefix: "../../../",
        };
        installed_record(&idx, &cache_tag, &pycs, &extras).into_bytes()
    }))
}

/// What `INSTALLER` says: pip shows it and tools use it to tell who
/// manages a dist.
pub const INSTALLER: &[u8] = b"sitefs\n";

/// INSTALLER says who installed the dist (pip shows it in `pip list -v`
/// and refuses to manage dists installed by others); REQUESTED marks dists
/// the user asked for, as pip writes it.
fn add_install_markers(
    b: &mut ViewBuilder,
    dist_info: &str,
    requested: bool,
) -> Result<(), Conflict> {
    b.add_inline(
        &format!("{dist_info}/INSTALLER"),
        Arc::from(INSTALLER),
        false,
    )?;
    if requested {
        b.add_inline(
            &format!("{dist_info}/REQUESTED"),
            Arc::from(&b""[..]),
            false,
        )?;
    }
    Ok(())
}
