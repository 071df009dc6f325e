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
pub mod venv;

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, UNIX_EPOCH};

use crate::env::adopt::AdoptError;
use crate::install::scripts::{env_files, EnvContent, EnvFile, EnvLayout};
use crate::interpreter::{Interpreter, InterpreterError};
use crate::manifest::{DistRef, EnvSpec, Manifest, ManifestError};
use crate::mount::daemon::{self, Prepared};
use crate::mount::error::MountError;
use crate::mount::mountinfo::{check_mountpoint, is_mount_point};
use crate::mount::options::MountOpts;
use crate::mount::unmount::unmount;
use crate::resolve::{self, ResolveError, Sources};
use crate::store::bytecode::CompilerPool;
use crate::store::dist_index::{DistIndex, DistMeta};
use crate::store::ingest::{self, IngestError};
use crate::store::layout::Dir;
use crate::store::lock::{Owner, UseGuard};
use crate::store::roots;
use crate::store::{io_at, Store, StoreError};
use crate::view::build::{self, BuildError};
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
    View(#[from] BuildError),
    #[error(transparent)]
    Mount(#[from] MountError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error(transparent)]
    Interpreter(#[from] InterpreterError),
    #[error(transparent)]
    Adopt(Box<AdoptError>),
    #[error(
        "file conflict: {path} is provided by both {first} and {second} with different content"
    )]
    FileConflict {
        path: String,
        first: String,
        second: String,
    },
    #[error("{dist} installs {path}, which is the venv's own {own}: refusing it (a wheel may not replace the venv's interpreter links, pyvenv.cfg, activate scripts or manifest)")]
    Skeleton {
        dist: String,
        path: String,
        own: String,
    },
    #[error("{} would be written outside the venv {} (through a symlink): refusing it", path.display(), venv.display())]
    Escapes { path: PathBuf, venv: PathBuf },
    #[error("not in {venv}: {names}")]
    NotInEnv { venv: PathBuf, names: String },
    #[error("the mount at {0} did not pick up the new manifest within 10 s (is its daemon running? try `sitefs env umount` and `sitefs env mount`)")]
    ReloadTimeout(PathBuf),
    #[error("copying {from}: {source}")]
    Copy {
        from: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{program}: {source}")]
    Run {
        program: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("compileall failed in {dir}: {stderr}")]
    Compileall { dir: PathBuf, stderr: String },
}

impl From<AdoptError> for EnvError {
    fn from(e: AdoptError) -> Self {
        EnvError::Adopt(Box::new(e))
    }
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
        self.venv.join(venv::site_packages(&m.python.version))
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
    // The root goes first, while our use mark keeps gc out: whenever this
    // process is killed from here on, the env is either absent (the root
    // names a manifest that never appeared, and gc drops it) or complete
    // and registered, never a working env whose dists gc may delete.
    register(&store, &paths, &manifest)?;
    let created = populate_and_mount(&req, &store, &interp, &paths, &manifest, &chosen);
    if created.is_err() {
        roots::deregister_env(&store, &paths.venv);
    }
    log::debug!("mounted at {:.1?}", t0.elapsed());
    Ok(Created {
        venv: paths.venv,
        dists: chosen.len(),
        scripts: created?,
    })
}

/// Write the venv in a stage, rename it into place and mount it. Returns
/// the number of scripts; on error nothing is left at the venv's path.
fn populate_and_mount(
    req: &CreateRequest,
    store: &Store,
    interp: &Interpreter,
    paths: &EnvPaths,
    manifest: &Manifest,
    chosen: &[(DistMeta, bool)],
) -> Result<usize, EnvError> {
    let stage = stage_dir(&paths.venv)?;
    let new = NewEnv {
        store,
        interp,
        paths,
        manifest,
        chosen,
    };
    let built = build_env(&stage, &new);
    let (scripts, view) = match built.and_then(|b| finish_dir(&stage, paths).map(|()| b)) {
        Ok(b) => b,
        Err(e) => {
            let _ = fs::remove_dir_all(&stage);
            return Err(e);
        }
    };
    let mounted = check_mountpoint(&paths.site_packages(manifest))
        .and_then(|mountpoint| {
            let p = Prepared::of_view(&paths.manifest, manifest, store.clone(), view, mountpoint);
            daemon::launch(p, &req.mount, false)
        })
        .map_err(EnvError::from);
    if let Err(e) = mounted {
        let _ = fs::remove_dir_all(&paths.venv);
        return Err(e);
    }
    Ok(scripts)
}

fn probe(store: &Store, python: &std::ffi::OsStr) -> Result<Interpreter, EnvError> {
    Ok(Interpreter::probe_cached(
        python,
        &store.path(Dir::Interpreters),
    )?)
}

/// The interpreter an existing env was made with (`pythonX.Y` on PATH for
/// manifests that do not say).
fn env_python(m: &Manifest) -> PathBuf {
    m.python
        .executable
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("python{}", m.python.version)))
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
            // A store we may not write (a shared one) still serves the
            // wheels it already holds.
            let tags = [interp.cache_tag.as_str()];
            return wheels
                .iter()
                .map(|w| ingest::stored_wheel(store, w, &tags).ok_or_else(|| e.to_string().into()))
                .collect();
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
        ingest::ensure_bytecode(store, &missing, &pools, quiet)?;
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
///
/// Made fresh (`mkdir`, which fails on anything already there, with a
/// name nobody can predict): the parent may be writable by others, as
/// `/tmp` is, and a directory someone else prepared would hand them the
/// venv. Its name carries the creating process, so stages of creates that
/// were killed are removed by the next create beside them.
fn stage_dir(venv: &Path) -> Result<PathBuf, EnvError> {
    let name = venv
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let parent = venv.parent().unwrap_or(Path::new("/"));
    remove_dead_stages(parent);
    let stage = parent.join(format!(".{name}{STAGE_MARK}{}", Owner::me().unique_name()));
    fs::create_dir(&stage).map_err(io_at(&stage))?;
    Ok(stage)
}

/// What makes `.<venv name>.sitefs.<owner>` a stage.
const STAGE_MARK: &str = ".sitefs.";

/// Remove the stages that killed creates left in `parent`: ours (same
/// uid), made on this host by a process that is gone. Every create runs
/// this, so litter lasts only until the next create beside it.
fn remove_dead_stages(parent: &Path) {
    use std::os::unix::fs::MetadataExt;
    let uid = nix::unistd::geteuid().as_raw();
    for e in fs::read_dir(parent).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let owner = name
            .strip_prefix('.')
            .and_then(|n| n.split_once(STAGE_MARK))
            .and_then(|(_, unique)| Owner::of_unique_name(unique));
        let Some(owner) = owner else { continue };
        let ours = e
            .path()
            .symlink_metadata()
            .is_ok_and(|m| m.is_dir() && m.uid() == uid);
        if ours && owner.alive_here() == Some(false) {
            log::debug!(
                "removing the stage of a killed env create: {}",
                e.path().display()
            );
            let _ = fs::remove_dir_all(e.path());
        }
    }
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
            let built = build::load_or_build(manifest, store, &paths.manifest, mtime);
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
    check_env_files(&files, new.interp)?;
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
/// Refuse env files that two dists write differently, and any that would
/// replace part of the venv itself ([`venv::skeleton_paths`]).
fn check_env_files(files: &[(String, Vec<EnvFile>)], interp: &Interpreter) -> Result<(), EnvError> {
    let skeleton = venv::skeleton_paths(interp);
    let mut seen: std::collections::HashMap<&str, (&str, crate::hashing::Digest)> =
        Default::default();
    for (id, dist_files) in files {
        for f in dist_files {
            if let Some(own) = venv::claims(&skeleton, &f.path) {
                return Err(EnvError::Skeleton {
                    dist: id.clone(),
                    path: f.path.clone(),
                    own: own.to_string(),
                });
            }
            match seen.get(f.path.as_str()) {
                Some((first, digest)) if *digest != f.sha256 => {
                    return Err(EnvError::FileConflict {
                        path: f.path.clone(),
                        first: first.to_string(),
                        second: id.to_string(),
                    })
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
///
/// No write follows a link or leaves the venv: each file is written to a
/// fresh temporary name (`O_CREAT|O_EXCL`, which never follows a link) and
/// renamed over the destination, which replaces a link instead of writing
/// through it, and its directory must resolve to inside the venv.
fn write_env_files(root: &Path, store: &Store, files: &[EnvFile]) -> Result<(), EnvError> {
    let real_root = fs::canonicalize(root).map_err(io_at(root))?;
    let mut checked: std::collections::HashSet<&Path> = Default::default();
    for f in files {
        let dest = root.join(&f.path);
        let dir = Path::new(&f.path).parent().unwrap_or(Path::new(""));
        if checked.insert(dir) {
            let full = root.join(dir);
            fs::create_dir_all(&full).map_err(io_at(&full))?;
            let real_dir = fs::canonicalize(&full).map_err(io_at(&full))?;
            if !real_dir.starts_with(&real_root) {
                return Err(EnvError::Escapes {
                    path: dest,
                    venv: root.to_path_buf(),
                });
            }
        }
        write_replacing(&dest, f, store).map_err(io_at(&dest))?;
    }
    Ok(())
}

/// Write one env file to a new temporary file beside `dest`, then rename
/// it into place.
fn write_replacing(dest: &Path, f: &EnvFile, store: &Store) -> io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let dir = dest.parent().unwrap_or(Path::new("."));
    let name = dest.file_name().unwrap_or_default().to_string_lossy();
    let (tmp, mut file) = (0..100)
        .find_map(|n| {
            let tmp = dir.join(format!(".{name}.sitefs-{}-{n}", std::process::id()));
            let opened = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp);
            match opened {
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => None,
                other => Some(other.map(|file| (tmp, file))),
            }
        })
        .unwrap_or_else(|| Err(io::ErrorKind::AlreadyExists.into()))?;
    let written = (|| {
        match &f.content {
            EnvContent::Object(d) => {
                io::copy(&mut fs::File::open(store.object_path(d))?, &mut file)?;
            }
            EnvContent::Generated(bytes) => io::Write::write_all(&mut file, bytes)?,
        }
        let mode = if f.executable { 0o755 } else { 0o644 };
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        fs::rename(&tmp, dest)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
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
                .is_some_and(|m| is_mount_point(&EnvPaths::new(&venv).site_packages(m)));
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
    unmount(&paths.site_packages(&m))?;
    Ok(())
}

/// Unmount, delete and deregister an env.
pub fn remove_env(venv: &Path) -> Result<(), EnvError> {
    let paths = EnvPaths::new(venv);
    let m = paths.load()?;
    let sp = paths.site_packages(&m);
    if is_mount_point(&sp) {
        unmount(&sp)?;
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
    let interp = probe(&store, env_python(&m).as_os_str())?;
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
    build::from_indexes(&m, &store, &paths.manifest, UNIX_EPOCH)?;
    let ids: Vec<&str> = m.dists.iter().map(|d| d.id.as_str()).collect();
    let files = all_env_files(&store, &layout, &ids)?;
    check_env_files(&files, &interp)?;
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
    let interp = probe(&store, env_python(&m).as_os_str())?;
    let files = m
        .dists
        .iter()
        .map(|d| {
            Ok((
                d.id.clone(),
                dist_env_files(&store, &*store.load(&d.id)?, &layout)?,
            ))
        })
        .collect::<Result<Vec<_>, EnvError>>()?;
    check_env_files(&files, &interp)?;
    let mut written = 0;
    for (_, dist_files) in &files {
        write_env_files(&paths.venv, &store, dist_files)?;
        written += dist_files.len();
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
        return Err(EnvError::NotInEnv {
            venv: paths.venv.clone(),
            names: list.join(", "),
        });
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
    if !is_mount_point(&sp) {
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
    Err(EnvError::ReloadTimeout(sp.to_path_buf()))
}
