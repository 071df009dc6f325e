//! gc roots: what keeps a distribution alive in the store.
//!
//! ```text
//! S/roots/envs/<hash of venv path>     a registered env: its manifest path and dist ids
//! S/roots/mounts/<host>.<pid>          a live mount: its daemon, mountpoint and dist ids
//! S/roots/pins/<name>[==<version>]     `sitefs store pin`
//! ```
//!
//! Env and mount roots carry their own copy of the dist ids, so gc needs
//! no access to the user's manifest (a shared store's owner may not be
//! able to read it) and a mount whose venv was deleted keeps its dists
//! until the daemon exits. `envs/` and `mounts/` are sticky and
//! world-writable, like `/tmp`, so users of a shared store can register
//! what they use while the store's contents stay read-only to them.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::store::layout::{Dir, Layout};
use crate::store::lock::Owner;
use crate::store::{io_at, Store, StoreError};
use crate::wheel::normalize_name;
use std::os::unix::fs::PermissionsExt;

/// The root directories, made by stores older than them on first use.
fn create_dirs(store: &Path) -> Result<(), StoreError> {
    Layout::new(store).create_dirs()
}

/// The content of an env or mount root.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Root {
    pub manifest: Option<PathBuf>,
    pub mountpoint: Option<PathBuf>,
    pub owner: Option<Owner>,
    pub dists: Vec<String>,
}

/// A root on disk: TOML, so any path (a newline in a venv name included)
/// reads back as written.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RootFile {
    version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    manifest: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mountpoint: Option<PathBuf>,
    /// `host pid start`, for mounts: whether the daemon still runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    owner: Option<String>,
    dists: Vec<String>,
}

/// Roots are small; a bigger file is not one of ours and is not read.
const MAX_ROOT_BYTES: u64 = 4 << 20;

impl Root {
    fn render(&self) -> String {
        let file = RootFile {
            version: 1,
            manifest: self.manifest.clone(),
            mountpoint: self.mountpoint.clone(),
            owner: self.owner.as_ref().map(Owner::to_line),
            dists: self.dists.clone(),
        };
        toml::to_string(&file).unwrap_or_default()
    }

    fn parse(text: &str) -> Option<Root> {
        if text.starts_with("# sitefs gc root\n") {
            return Some(Root::parse_v0(text));
        }
        let file: RootFile = toml::from_str(text).ok()?;
        Some(Root {
            manifest: file.manifest,
            mountpoint: file.mountpoint,
            owner: file.owner.as_deref().and_then(Owner::parse),
            dists: file.dists,
        })
    }

    /// The line format of sitefs before roots were TOML, still read so an
    /// upgrade does not let gc drop existing envs' dists.
    fn parse_v0(text: &str) -> Root {
        let mut root = Root::default();
        for line in text.lines() {
            let Some((key, value)) = line.split_once(' ') else {
                continue;
            };
            match key {
                "manifest" => root.manifest = Some(PathBuf::from(value)),
                "mountpoint" => root.mountpoint = Some(PathBuf::from(value)),
                "owner" => root.owner = Owner::parse(value),
                "dist" => root.dists.push(value.to_string()),
                _ => {}
            }
        }
        root
    }

    /// Write atomically and safely in a directory every user can write:
    /// the data goes to a new file under an unpredictable name
    /// (`O_CREAT|O_EXCL`, so nothing planted there is followed or reused),
    /// readable by everyone so the store's owner can run gc, then renamed
    /// onto `path`.
    fn save(&self, path: &Path) -> io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let dir = path.parent().unwrap_or(Path::new("."));
        let tmp = dir.join(format!("{TEMP_PREFIX}{}", Owner::me().unique_name()));
        let written = (|| {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&tmp)?;
            f.set_permissions(fs::Permissions::from_mode(0o644))?;
            f.write_all(self.render().as_bytes())?;
            fs::rename(&tmp, path)
        })();
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written
    }
}

/// Read one root file, trusting nothing about it: it must be a regular
/// file (never a link, FIFO or device: opened with `O_NOFOLLOW|O_NONBLOCK`
/// and checked before reading), owned by the uid its name claims, and
/// small.
fn read_root(path: &Path) -> Option<Root> {
    use std::io::Read;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let uid: u32 = path
        .file_name()?
        .to_str()?
        .split('.')
        .next()?
        .parse()
        .ok()?;
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    let m = f.metadata().ok()?;
    if !m.is_file() || m.uid() != uid || m.len() > MAX_ROOT_BYTES {
        return None;
    }
    let mut text = String::new();
    f.take(MAX_ROOT_BYTES).read_to_string(&mut text).ok()?;
    Root::parse(&text)
}

/// Root files are named `<uid>.<rest>`: whose claim it is, checked against
/// the file's owner by every reader.
fn root_name(rest: &str) -> String {
    format!("{}.{rest}", nix::unistd::geteuid().as_raw())
}

fn env_root_path(store: &Store, venv: &Path) -> PathBuf {
    let key = store
        .layout()
        .keyed(Dir::EnvRoots, venv.as_os_str().as_encoded_bytes());
    let hash = key.file_name().unwrap_or_default().to_string_lossy();
    store.path(Dir::EnvRoots).join(root_name(&hash))
}

/// Record (or update) an env as a root of its store.
pub fn register_env(
    store: &Store,
    venv: &Path,
    manifest: &Path,
    dists: &[String],
) -> Result<(), StoreError> {
    create_dirs(store.root())?;
    let path = env_root_path(store, venv);
    let root = Root {
        manifest: Some(manifest.to_path_buf()),
        dists: dists.to_vec(),
        ..Root::default()
    };
    root.save(&path).map_err(io_at(&path))
}

/// Forget an env (it was removed by `sitefs env rm` or materialized).
pub fn deregister_env(store: &Store, venv: &Path) {
    let _ = fs::remove_file(env_root_path(store, venv));
}

/// Every registered env root, as (root file, content).
pub fn env_roots(store: &Store) -> Vec<(PathBuf, Root)> {
    read_roots(&store.path(Dir::EnvRoots))
}

/// Every mount root, as (root file, content).
pub fn mount_roots(store: &Store) -> Vec<(PathBuf, Root)> {
    read_roots(&store.path(Dir::MountRoots))
}

fn read_roots(dir: &Path) -> Vec<(PathBuf, Root)> {
    let Ok(rd) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(PathBuf, Root)> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| !is_temp(p))
        .filter_map(|p| read_root(&p).map(|r| (p, r)))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Temp files of an interrupted atomic write: ours (`.tmp.<unique name>`)
/// and those of earlier sitefs versions (`NAME.tmp.PID`).
pub fn is_temp(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with(TEMP_PREFIX) || n.contains(".tmp."))
}

const TEMP_PREFIX: &str = ".tmp.";

/// A live mount's root, held by its daemon: written once the mount
/// exists, rewritten on every reload, removed when the daemon exits.
#[derive(Debug)]
pub struct MountRoot {
    path: PathBuf,
    root: Root,
}

impl MountRoot {
    pub fn register(
        store: &Store,
        mountpoint: &Path,
        manifest: &Path,
        dists: &[String],
    ) -> Result<MountRoot, StoreError> {
        create_dirs(store.root())?;
        let owner = Owner::me();
        let path = store
            .path(Dir::MountRoots)
            .join(root_name(&owner.unique_name()));
        let root = Root {
            manifest: Some(manifest.to_path_buf()),
            mountpoint: Some(mountpoint.to_path_buf()),
            owner: Some(owner),
            dists: dists.to_vec(),
        };
        root.save(&path).map_err(io_at(&path))?;
        Ok(MountRoot { path, root })
    }

    /// The mount now serves `dists`.
    pub fn update(&mut self, dists: &[String]) -> Result<(), StoreError> {
        self.root.dists = dists.to_vec();
        self.root.save(&self.path).map_err(io_at(&self.path))
    }
}

impl MountRoot {
    /// The mount is gone: so is its claim on the store.
    pub fn remove(&self) {
        let _ = fs::remove_file(&self.path);
    }
}

impl Drop for MountRoot {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Keep every build of NAME (or of NAME==VERSION) through gc.
pub fn pin(store: &Store, spec: &str) -> Result<Vec<String>, StoreError> {
    let found = store.find(spec)?;
    create_dirs(store.root())?;
    let path = store.path(Dir::Pins).join(pin_file(spec));
    fs::write(&path, format!("{}\n", spec.trim())).map_err(io_at(&path))?;
    Ok(found.into_iter().map(|m| m.id).collect())
}

/// Remove a pin; false if there was none.
pub fn unpin(store: &Store, spec: &str) -> Result<bool, StoreError> {
    let path = store.path(Dir::Pins).join(pin_file(spec));
    match fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_at(&path)(e)),
    }
}

/// The pins, as the specs the user gave.
pub fn pins(store: &Store) -> Vec<String> {
    let Ok(rd) = fs::read_dir(store.path(Dir::Pins)) else {
        return Vec::new();
    };
    let mut out: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| fs::read_to_string(e.path()).ok())
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect();
    out.sort();
    out
}

/// `numpy==2.1` -> `numpy==2.1`, with the name normalized so `NumPy` and
/// `numpy` pin the same thing; never a path.
fn pin_file(spec: &str) -> String {
    let (name, version) = match spec.split_once("==") {
        Some((n, v)) => (n.trim(), Some(v.trim())),
        None => (spec.trim(), None),
    };
    let safe = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || ".+-_".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    match version {
        Some(v) => format!("{}=={}", safe(&normalize_name(name)), safe(v)),
        None => safe(&normalize_name(name)),
    }
}

/// Why a root was dropped or could not be checked.
#[derive(Debug, Clone)]
pub struct RootNote {
    pub file: PathBuf,
    pub message: String,
    /// The root file is dead and gc deletes it.
    pub drop: bool,
}

/// Everything the roots keep alive.
#[derive(Debug, Default)]
pub struct Live {
    pub dists: BTreeSet<String>,
    pub notes: Vec<RootNote>,
    pub env_roots: usize,
    pub mount_roots: usize,
    pub pins: usize,
}

/// Collect the live dist ids from every kind of root.
pub fn live(store: &Store) -> Live {
    let mut live = Live::default();
    for (file, root) in env_roots(store) {
        live.env_roots += 1;
        add_env_root(&mut live, file, root);
    }
    for (file, root) in mount_roots(store) {
        add_mount_root(&mut live, file, root);
    }
    for spec in pins(store) {
        live.pins += 1;
        if let Ok(found) = store.find(&spec) {
            live.dists.extend(found.into_iter().map(|m| m.id));
        }
    }
    live
}

fn add_env_root(live: &mut Live, file: PathBuf, root: Root) {
    let Some(manifest) = root.manifest.clone() else {
        live.dists.extend(root.dists);
        return;
    };
    // Only a stat: gc never opens files a root names (a FIFO there would
    // hang it, /dev/zero would fill its memory), and the dists to keep are
    // the root's own copy, which env create, add and remove keep current.
    match fs::symlink_metadata(&manifest) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            live.notes.push(RootNote {
                message: format!(
                    "env {} is gone (no {}): dropping its root",
                    manifest.parent().unwrap_or(&manifest).display(),
                    manifest.display()
                ),
                file,
                drop: true,
            });
        }
        _ => live.dists.extend(root.dists),
    }
}

fn add_mount_root(live: &mut Live, file: PathBuf, root: Root) {
    let alive = root.owner.as_ref().and_then(Owner::alive_here);
    let shown = root
        .mountpoint
        .as_ref()
        .map_or_else(|| file.display().to_string(), |m| m.display().to_string());
    match alive {
        Some(false) => live.notes.push(RootNote {
            message: format!("mount of {shown} has no daemon any more: dropping its root"),
            file,
            drop: true,
        }),
        Some(true) => {
            live.mount_roots += 1;
            live.dists.extend(root.dists);
        }
        None => {
            live.mount_roots += 1;
            live.notes.push(RootNote {
                message: format!(
                    "kept the mount of {shown} on host {} (cannot check it from here; delete {} if that host is gone)",
                    root.owner.as_ref().map_or("?", |o| o.host.as_str()),
                    file.display()
                ),
                file,
                drop: false,
            });
            live.dists.extend(root.dists);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_round_trip() {
        let r = Root {
            manifest: Some("/v/sitefs.toml".into()),
            mountpoint: Some("/v/lib/python3.11/site-packages".into()),
            owner: Some(Owner::me()),
            dists: vec!["a-1-0123456789abcdef".into(), "b-2-0123456789abcdef".into()],
        };
        assert_eq!(Root::parse(&r.render()), Some(r.clone()));
        // A newline in a venv path reads back as the same path, not as a
        // second key (the line format read `/v\ndist x` as two rows).
        let odd = Root {
            manifest: Some("/tmp/a\nmanifest /elsewhere/sitefs.toml".into()),
            ..r.clone()
        };
        assert_eq!(Root::parse(&odd.render()), Some(odd));
        // Roots written by sitefs before TOML still count.
        let v0 = "# sitefs gc root\nmanifest /v/sitefs.toml\ndist a-1-0123456789abcdef\n";
        let old = Root::parse(v0).unwrap();
        assert_eq!(old.manifest, Some("/v/sitefs.toml".into()));
        assert_eq!(old.dists, vec!["a-1-0123456789abcdef".to_string()]);
    }

    #[test]
    fn only_regular_files_of_the_uid_they_name_are_read() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let me = nix::unistd::geteuid().as_raw();
        let r = Root {
            dists: vec!["a-1-0123456789abcdef".into()],
            ..Root::default()
        };
        let good = dir.path().join(format!("{me}.x"));
        r.save(&good).unwrap();
        assert_eq!(read_root(&good), Some(r.clone()));
        // Claiming another uid than the file's owner: ignored.
        let liar = dir.path().join(format!("{}.x", me + 1));
        fs::copy(&good, &liar).unwrap();
        assert_eq!(read_root(&liar), None);
        // A link to a root, a FIFO (would block a reader) and /dev/zero
        // (endless): none is read, none blocks.
        let link = dir.path().join(format!("{me}.link"));
        symlink(&good, &link).unwrap();
        assert_eq!(read_root(&link), None);
        let fifo = dir.path().join(format!("{me}.fifo"));
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert_eq!(read_root(&fifo), None);
        let zero = dir.path().join(format!("{me}.zero"));
        symlink("/dev/zero", &zero).unwrap();
        assert_eq!(read_root(&zero), None);
        assert_eq!(read_roots(dir.path()).len(), 1);
    }

    #[test]
    fn saving_never_follows_or_reuses_a_planted_temp_file() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, "secret").unwrap();
        fs::set_permissions(&victim, fs::Permissions::from_mode(0o600)).unwrap();
        // Every name the old code could have used for its temp file.
        let path = dir.path().join("0.root");
        symlink(
            &victim,
            path.with_extension(format!("tmp.{}", std::process::id())),
        )
        .unwrap();
        Root::default().save(&path).unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "secret");
        assert_eq!(
            fs::metadata(&victim).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(fs::symlink_metadata(&path).unwrap().is_file());
    }

    #[test]
    fn pin_files_are_plain_names() {
        assert_eq!(pin_file("NumPy == 2.1.0"), "numpy==2.1.0");
        let evil = pin_file("../../etc");
        assert!(!evil.contains('/') && !evil.starts_with('.'), "{evil}");
        assert_eq!(pin_file("Foo.Bar"), "foo-bar");
    }
}
