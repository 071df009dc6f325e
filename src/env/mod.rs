//! Environments: a venv skeleton, a manifest, and a mount.
//!
//! `create` resolves every source first and builds the view in memory, so
//! any error (unsatisfiable requirement, conflict) leaves nothing behind;
//! the venv is assembled in a staging directory beside the target and
//! renamed into place, then mounted. `add`/`remove` rewrite the manifest
//! atomically; the mount's daemon notices and swaps its view without
//! unmounting, so running processes keep working.

pub mod adopt;
pub mod materialize;
pub mod record;
pub mod scripts;
pub mod venv;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, UNIX_EPOCH};

use crate::env::scripts::{env_files, EnvContent, EnvFile, EnvLayout};
use crate::manifest::{build_view, DistRef, EnvSpec, Manifest, ManifestError};
use crate::mount::daemon::{self, MountError, MountOpts, Prepared};
use crate::resolve::interpreter::Interpreter;
use crate::resolve::{self, ResolveError, Sources};
use crate::store::bytecode::CompilerPool;
use crate::store::dist_index::{DistIndex, DistMeta};
use crate::store::ingest;
use crate::store::lock::UseGuard;
use crate::store::roots;
use crate::store::{io_at, Store, StoreError};
use crate::view::image;
use crate::view::View;
use crate::wheel::normalize_name;

/// The manifest's name inside a venv.
pub const MANIFEST_NAME: &str = "sitefs.toml";

/// Why an environment command failed.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    #[error("{0} already exists: choose a new path or remove it with `sitefs env rm {0}`")]
    Exists(String),
    #[error(
        "{0} is not a sitefs environment (no {MANIFEST_NAME}): create one with `sitefs env create`"
    )]
    NotAnEnv(String),
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Mount(#[from] MountError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Other(String),
}

/// A venv's main paths.
#[derive(Debug, Clone)]
pub struct EnvPaths {
    pub venv: PathBuf,
    pub manifest: PathBuf,
}

impl EnvPaths {
    pub fn new(venv: &Path) -> Self {
        let venv = std::path::absolute(venv).unwrap_or(venv.to_path_buf());
        EnvPaths {
            manifest: venv.join(MANIFEST_NAME),
            venv,
        }
    }

    pub fn load(&self) -> Result<Manifest, EnvError> {
        if !self.manifest.is_file() {
            return Err(EnvError::NotAnEnv(self.venv.display().to_string()));
        }
        Ok(Manifest::load(&self.manifest)?)
    }

    /// Where the env's scripts, headers and data go.
    fn layout(&self, m: &Manifest) -> EnvLayout {
        EnvLayout {
            prefix: m
                .env
                .as_ref()
                .map_or(self.venv.clone(), |e| e.prefix.clone()),
            python_version: m.python.version.clone(),
        }
    }

    pub fn site_packages(&self, m: &Manifest) -> PathBuf {
        self.venv
            .join(format!("lib/python{}/site-packages", m.python.version))
    }
}

/// What `env create` was asked for.
pub struct CreateRequest {
    pub venv: PathBuf,
    pub python: String,
    pub store: PathBuf,
    pub sources: Sources,
    pub mount: MountOpts,
    pub quiet: bool,
}

/// A summary for the user.
#[derive(Debug)]
pub struct Created {
    pub venv: PathBuf,
    pub dists: usize,
    pub scripts: usize,
}

/// Create, populate and mount a venv.
pub fn create(req: CreateRequest) -> Result<Created, EnvError> {
    let paths = EnvPaths::new(&req.venv);
    if paths.venv.exists() && fs::read_dir(&paths.venv).map_or(true, |mut d| d.next().is_some()) {
        return Err(EnvError::Exists(req.venv.display().to_string()));
    }
    let t0 = Instant::now();
    let store = Store::open_or_create(&req.store)?;
    // Until the env's root is recorded, gc must not run (see crate::store::lock).
    let _use = UseGuard::acquire(store.root());
    let interp = probe(&store, req.python.as_ref())?;
    log::debug!("probed {} at {:.1?}", interp.cache_tag, t0.elapsed());
    let chosen = resolve_sources(&store, &interp, &req.sources, req.quiet)?;
    log::debug!("resolved {} dists at {:.1?}", chosen.len(), t0.elapsed());
    let manifest = new_manifest(&store, &interp, &paths, &chosen);
    let stage = stage_dir(&paths.venv)?;
    let new = NewEnv {
        store: &store,
        interp: &interp,
        paths: &paths,
        manifest: &manifest,
        chosen: &chosen,
    };
    let built = build_env(&stage, &new);
    log::debug!("built the venv at {:.1?}", t0.elapsed());
    let (scripts, view) = match built.and_then(|b| finish_dir(&stage, &paths).map(|()| b)) {
        Ok(b) => b,
        Err(e) => {
            let _ = fs::remove_dir_all(&stage);
            return Err(e);
        }
    };
    let mounted = daemon::check_mountpoint(&paths.site_packages(&manifest))
        .and_then(|mountpoint| {
            let p = Prepared {
                manifest: paths.manifest.clone(),
                store: store.clone(),
                view,
                mountpoint,
                dists: manifest.dists.iter().map(|d| d.id.clone()).collect(),
                guard: None,
                image: None,
            };
            daemon::launch(p, &req.mount, false)
        })
        .map_err(EnvError::from);
    if let Err(e) = mounted {
        let _ = fs::remove_dir_all(&paths.venv);
        return Err(e);
    }
    register(&store, &paths, &manifest)?;
    log::debug!("mounted at {:.1?}", t0.elapsed());
    Ok(Created {
        venv: paths.venv,
        dists: chosen.len(),
        scripts,
    })
}

fn probe(store: &Store, python: &std::ffi::OsStr) -> Result<Interpreter, EnvError> {
    Interpreter::probe_cached(python, &store.root().join("interpreters"))
        .map_err(|e| EnvError::Other(e.to_string()))
}

/// Resolve the sources to store dists, ingesting and compiling only
/// what the store lacks.
fn resolve_sources(
    store: &Store,
    interp: &Interpreter,
    sources: &Sources,
    quiet: bool,
) -> Result<Vec<(DistMeta, bool)>, EnvError> {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let pools = [CompilerPool::lazy(interp, workers)];
    let chosen = resolve::resolve(store, interp, sources, &mut |wheels: &[PathBuf]| {
        if let Err(e) = store.require_writable() {
            return wheels.iter().map(|_| Err(e.to_string().into())).collect();
        }
        let opts = ingest::IngestOptions {
            quiet,
            ..Default::default()
        };
        ingest::add_wheels(store, wheels, &pools, &opts)
            .into_iter()
            .map(|r| {
                r.result
                    .map(|o| o.meta().clone())
                    .map_err(|e| format!("{}: {e}", r.wheel.display()).into())
            })
            .collect()
    })?;
    let missing: Vec<String> = chosen
        .iter()
        .filter(|(m, _)| !store.has_bytecode(&interp.cache_tag, &m.id))
        .map(|(m, _)| m.id.clone())
        .collect();
    if !missing.is_empty() {
        ingest::ensure_bytecode(store, &missing, &pools, quiet)
            .map_err(|e| EnvError::Other(e.to_string()))?;
    }
    Ok(chosen)
}

fn new_manifest(
    store: &Store,
    interp: &Interpreter,
    paths: &EnvPaths,
    chosen: &[(DistMeta, bool)],
) -> Manifest {
    let env = EnvSpec {
        prefix: paths.venv.clone(),
    };
    let dists = chosen
        .iter()
        .map(|(m, requested)| DistRef::of(m, *requested))
        .collect();
    Manifest::new(store.root(), interp, Some(env), dists)
}

/// A staging directory beside the venv, so the final rename is atomic.
fn stage_dir(venv: &Path) -> Result<PathBuf, EnvError> {
    let name = venv
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let parent = venv.parent().unwrap_or(Path::new("/"));
    let stage = parent.join(format!(".{name}.sitefs-{}", std::process::id()));
    fs::create_dir_all(&stage).map_err(io_at(&stage))?;
    Ok(stage)
}

/// What `create` has resolved, for building the env in its stage dir.
struct NewEnv<'a> {
    store: &'a Store,
    interp: &'a Interpreter,
    paths: &'a EnvPaths,
    manifest: &'a Manifest,
    chosen: &'a [(DistMeta, bool)],
}

/// Write the venv skeleton, the manifest and every dist's env files
/// into `stage`, and build the view the mount will serve. Returns the
/// number of files written to `bin/` and the view.
///
/// The view is merged (or loaded from an image another env of the same
/// dists left) on a second thread while this one writes the venv: one is
/// CPU, the other waits on the filesystem's metadata updates, so the
/// create costs the longer of the two, not their sum. Either failing
/// leaves only `stage`, which the caller removes; a view error (a
/// conflict, store damage) is reported first, as the more fundamental.
/// No image is written here: one costs ~3 MB per set of dists, which
/// pays off for envs that are mounted again (see `crate::view::image`),
/// not for every env created.
fn build_env(stage: &Path, new: &NewEnv) -> Result<(usize, View), EnvError> {
    let (store, paths, manifest) = (new.store, new.paths, new.manifest);
    // The staged manifest's mtime survives the rename, so the view's
    // directory mtime is the one a later remount will serve.
    let staged_manifest = stage.join(MANIFEST_NAME);
    manifest.save(&staged_manifest).map_err(io_at(stage))?;
    let mtime = fs::metadata(&staged_manifest)
        .and_then(|m| m.modified())
        .map_err(io_at(stage))?;
    let (view, scripts) = std::thread::scope(|scope| {
        let view = scope.spawn(|| {
            let t0 = Instant::now();
            let built = image::load_or_build(manifest, store, &paths.manifest, mtime);
            log::debug!("view ready in {:.1?}", t0.elapsed());
            built
        });
        let scripts = write_venv(stage, new);
        let view = view.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
        (view, scripts)
    });
    let (view, _no_image) = view?;
    Ok((scripts?, view))
}

/// The venv around the mount: skeleton and every dist's env files.
/// Returns the number of files written to `bin/`.
fn write_venv(stage: &Path, new: &NewEnv) -> Result<usize, EnvError> {
    let store = new.store;
    let layout = new.paths.layout(new.manifest);
    let ids: Vec<&str> = new.chosen.iter().map(|(m, _)| m.id.as_str()).collect();
    let files = all_env_files(store, &layout, &ids)?;
    check_env_file_conflicts(&files)?;
    venv::create_skeleton(stage, &new.paths.venv, new.interp).map_err(io_at(stage))?;
    let mut scripts = 0;
    for (_, dist_files) in &files {
        write_env_files(stage, store, dist_files)?;
        scripts += dist_files
            .iter()
            .filter(|f| f.path.starts_with("bin/"))
            .count();
    }
    Ok(scripts)
}

/// The env files (scripts, headers, data) of each dist, by dist id.
fn all_env_files(
    store: &Store,
    layout: &EnvLayout,
    ids: &[&str],
) -> Result<Vec<(String, Vec<EnvFile>)>, EnvError> {
    ids.iter()
        .map(|id| {
            Ok((
                id.to_string(),
                dist_env_files(store, &*store.load(id)?, layout)?,
            ))
        })
        .collect()
}

fn dist_env_files(
    store: &Store,
    idx: &DistIndex,
    layout: &EnvLayout,
) -> Result<Vec<EnvFile>, EnvError> {
    Ok(env_files(idx, layout, &|d| fs::read(store.object_path(d))).map_err(io_at(store.root()))?)
}

/// Two dists writing different bytes to one path outside site-packages
/// (a script, header or data file) conflict, as they do inside it.
fn check_env_file_conflicts(files: &[(String, Vec<EnvFile>)]) -> Result<(), EnvError> {
    let mut seen: std::collections::HashMap<&str, (&str, crate::hashing::Digest)> =
        Default::default();
    for (id, dist_files) in files {
        for f in dist_files {
            match seen.get(f.path.as_str()) {
                Some((first, digest)) if *digest != f.sha256 => {
                    return Err(EnvError::Other(format!(
                        "file conflict: {} is provided by both {first} and {id} with different content",
                        f.path
                    )))
                }
                Some(_) => {}
                None => {
                    seen.insert(&f.path, (id, f.sha256));
                }
            }
        }
    }
    Ok(())
}

/// Copy a dist's scripts, headers and data into the venv. Copies, not
/// links: editing a file in one venv must never change the store.
fn write_env_files(root: &Path, store: &Store, files: &[EnvFile]) -> Result<(), EnvError> {
    for f in files {
        let dest = root.join(&f.path);
        if let Some(dir) = dest.parent() {
            fs::create_dir_all(dir).map_err(io_at(dir))?;
        }
        match &f.content {
            EnvContent::Object(d) => fs::copy(store.object_path(d), &dest).map(|_| ()),
            EnvContent::Generated(bytes) => fs::write(&dest, bytes),
        }
        .map_err(io_at(&dest))?;
        let mode = if f.executable { 0o755 } else { 0o644 };
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&dest, fs::Permissions::from_mode(mode)).map_err(io_at(&dest))?;
    }
    Ok(())
}

fn finish_dir(stage: &Path, paths: &EnvPaths) -> Result<(), EnvError> {
    if paths.venv.exists() {
        fs::remove_dir(&paths.venv).map_err(io_at(&paths.venv))?;
    }
    fs::rename(stage, &paths.venv).map_err(io_at(&paths.venv))?;
    Ok(())
}

fn prepare_mount(paths: &EnvPaths, m: &Manifest) -> Result<Prepared, EnvError> {
    Ok(daemon::prepare(&paths.manifest, &paths.site_packages(m))?)
}

/// Record the env (and the dists it names) as a gc root of its store.
fn register(store: &Store, paths: &EnvPaths, m: &Manifest) -> Result<(), EnvError> {
    let ids: Vec<String> = m.dists.iter().map(|d| d.id.clone()).collect();
    Ok(roots::register_env(
        store,
        &paths.venv,
        &paths.manifest,
        &ids,
    )?)
}

/// One registered environment, for `env ls`.
#[derive(Debug)]
pub struct EnvStatus {
    pub venv: PathBuf,
    pub mounted: bool,
    /// None when the manifest is gone or unreadable.
    pub dists: Option<usize>,
}

/// The environments registered in a store.
pub fn list(store: &Store) -> Vec<EnvStatus> {
    let mut out: Vec<EnvStatus> = roots::env_roots(store)
        .into_iter()
        .filter_map(|(_, root)| root.manifest)
        .map(|manifest| {
            let venv = manifest.parent().unwrap_or(Path::new("/")).to_path_buf();
            let loaded = Manifest::load(&manifest).ok();
            let mounted = loaded
                .as_ref()
                .is_some_and(|m| daemon::is_mount_point(&EnvPaths::new(&venv).site_packages(m)));
            EnvStatus {
                venv,
                mounted,
                dists: loaded.map(|m| m.dists.len()),
            }
        })
        .collect();
    out.sort_by(|a, b| a.venv.cmp(&b.venv));
    out
}

/// Mount an existing env from its own manifest (after a reboot).
pub fn mount(venv: &Path, opts: &MountOpts) -> Result<(), EnvError> {
    let paths = EnvPaths::new(venv);
    let m = paths.load()?;
    daemon::launch(prepare_mount(&paths, &m)?, opts, false)?;
    Ok(())
}

/// Unmount an env.
pub fn umount(venv: &Path) -> Result<(), EnvError> {
    let paths = EnvPaths::new(venv);
    let m = paths.load()?;
    daemon::unmount(&paths.site_packages(&m))?;
    Ok(())
}

/// Unmount, delete and deregister an env.
pub fn remove_env(venv: &Path) -> Result<(), EnvError> {
    let paths = EnvPaths::new(venv);
    let m = paths.load()?;
    let sp = paths.site_packages(&m);
    if daemon::is_mount_point(&sp) {
        daemon::unmount(&sp)?;
    }
    fs::remove_dir_all(&paths.venv).map_err(io_at(&paths.venv))?;
    if let Ok(store) = Store::open(&m.store_path(&paths.manifest)) {
        roots::deregister_env(&store, &paths.venv);
    }
    Ok(())
}

/// Add sources to a live env: resolve, write new env files, replace the
/// manifest, and wait until the mount serves it.
pub fn add(venv: &Path, sources: &Sources, quiet: bool) -> Result<usize, EnvError> {
    let paths = EnvPaths::new(venv);
    let mut m = paths.load()?;
    let store = Store::open(&m.store_path(&paths.manifest))?;
    let _use = UseGuard::acquire(store.root());
    let python = m
        .python
        .executable
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("python{}", m.python.version)));
    let interp = probe(&store, python.as_os_str())?;
    let chosen = resolve_sources(&store, &interp, sources, quiet)?;
    let names: BTreeMap<String, usize> = m
        .dists
        .iter()
        .enumerate()
        .map(|(i, d)| (normalize_name(&d.name), i))
        .collect();
    let mut added = Vec::new();
    for (meta, requested) in chosen {
        let r = DistRef::of(&meta, requested);
        match names.get(&normalize_name(&meta.name)) {
            Some(&i) => m.dists[i] = r,
            None => m.dists.push(r),
        }
        added.push(meta);
    }
    let layout = paths.layout(&m);
    build_view(&m, &store, &paths.manifest, UNIX_EPOCH)?;
    let ids: Vec<&str> = m.dists.iter().map(|d| d.id.as_str()).collect();
    let files = all_env_files(&store, &layout, &ids)?;
    check_env_file_conflicts(&files)?;
    for (_, dist_files) in files
        .iter()
        .filter(|(id, _)| added.iter().any(|a| &a.id == id))
    {
        write_env_files(&paths.venv, &store, dist_files)?;
    }
    replace_manifest(&store, &paths, &m)?;
    Ok(added.len())
}

/// Rewrite every dist's scripts, headers and data files in the venv from
/// the store (what pip up to 23.2 leaves moved aside after a failed
/// `pip uninstall`, or what a user deleted). Returns the files written.
pub fn repair(venv: &Path) -> Result<usize, EnvError> {
    let paths = EnvPaths::new(venv);
    let m = paths.load()?;
    let store = Store::open(&m.store_path(&paths.manifest))?;
    let layout = paths.layout(&m);
    let mut written = 0;
    for d in &m.dists {
        let files = dist_env_files(&store, &*store.load(&d.id)?, &layout)?;
        write_env_files(&paths.venv, &store, &files)?;
        written += files.len();
    }
    Ok(written)
}

/// Remove dists (by name) from a live env, and their bin/ scripts.
pub fn remove(venv: &Path, names: &[String]) -> Result<usize, EnvError> {
    let paths = EnvPaths::new(venv);
    let mut m = paths.load()?;
    let store = Store::open(&m.store_path(&paths.manifest))?;
    let _use = UseGuard::acquire(store.root());
    let wanted: Vec<String> = names.iter().map(|n| normalize_name(n)).collect();
    let missing: Vec<&String> = names
        .iter()
        .zip(&wanted)
        .filter(|(_, w)| !m.dists.iter().any(|d| normalize_name(&d.name) == **w))
        .map(|(n, _)| n)
        .collect();
    if !missing.is_empty() {
        let list: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
        return Err(EnvError::Other(format!(
            "not in {}: {}",
            paths.venv.display(),
            list.join(", ")
        )));
    }
    let (gone, kept): (Vec<DistRef>, Vec<DistRef>) = m
        .dists
        .drain(..)
        .partition(|d| wanted.contains(&normalize_name(&d.name)));
    m.dists = kept;
    replace_manifest(&store, &paths, &m)?;
    let layout = paths.layout(&m);
    for d in &gone {
        let files = store
            .load(&d.id)
            .map_err(EnvError::from)
            .and_then(|idx| dist_env_files(&store, &idx, &layout));
        for f in files.unwrap_or_default() {
            let _ = fs::remove_file(paths.venv.join(&f.path));
        }
    }
    Ok(gone.len())
}

/// Write the manifest and its gc root and, if the env is mounted, wait
/// until its daemon serves the new view (the mount root's mtime follows
/// the manifest's; the daemon records its own root before that).
fn replace_manifest(store: &Store, paths: &EnvPaths, m: &Manifest) -> Result<(), EnvError> {
    m.save(&paths.manifest).map_err(io_at(&paths.manifest))?;
    register(store, paths, m)?;
    let sp = paths.site_packages(m);
    if !daemon::is_mount_point(&sp) {
        return Ok(());
    }
    let want = fs::metadata(&paths.manifest)
        .and_then(|x| x.modified())
        .map_err(io_at(&paths.manifest))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if fs::metadata(&sp)
            .and_then(|x| x.modified())
            .is_ok_and(|t| t == want)
        {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Err(EnvError::Other(format!(
        "the mount at {} did not pick up the new manifest within 10 s (is its daemon running? try `sitefs env umount` and `sitefs env mount`)",
        sp.display()
    )))
}
