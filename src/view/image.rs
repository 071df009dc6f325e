//! View images: a mount of a manifest that was mounted before loads its
//! merged view from `STORE/views/` instead of reading and merging every
//! dist's index again, which is most of what `sitefs mount` costs.
//!
//! An image is a cache, never authoritative. Its name is a hash of what
//! the view depends on (the manifest's dists, interpreter and conflict
//! policy) and of this sitefs version, so every env of the same dists
//! shares one. The env's own parts (its path, its manifest's mtime) are
//! applied at load: they shape only the RECORDs rendered at read time and
//! the mtime served for `Mtime::Env`. An image records the identity
//! (inode, size, mtime) of every store file the view depends on: each
//! dist's directory and its bytecode marker. A mount uses an image only
//! when those all still match and its checksum holds; otherwise it builds
//! the view.
//!
//! Only a mount of an existing manifest (`sitefs mount`, `env mount`,
//! fstab, autofs, a container start) writes an image, once it is live:
//! an image costs ~3 MB for a 50-dist env, which pays off for what is
//! mounted again, while most manifests `env create` or `env add` writes
//! are mounted once. `env create` still loads an image when one exists,
//! such as one a remount of another env of the same dists wrote.
//! A store this user may not write just gets no images; `sitefs gc`
//! clears them all, and the next remount of each set writes its own.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use memmap2::{Mmap, MmapOptions};

use crate::hashing::Digest;
use crate::manifest::{EnvSpec, Manifest, PythonSpec};
use crate::stamp::FileStamp;
use crate::store::layout::Dir;
use crate::store::{is_valid_id, Store};
use crate::view::{Lazy, View};

/// An image to write once the mount is live, for a view built from scratch.
#[derive(Debug)]
pub struct PendingImage {
    store: Store,
    path: PathBuf,
    stamps: Vec<u8>,
}

impl PendingImage {
    /// Write `view`'s image. Best effort: a failure costs the next mount
    /// a build, nothing else.
    pub fn save(self, view: &View) {
        if let Err(e) = self.write(view) {
            log::debug!("no view image at {}: {e}", self.path.display());
        }
    }

    fn write(&self, view: &View) -> std::io::Result<()> {
        let image = view.to_image();
        std::fs::create_dir_all(self.store.path(Dir::Views))?;
        let tmp = self.store.tmp_dir().join(format!(
            "view.{}.{}",
            std::process::id(),
            self.path.file_name().unwrap_or_default().to_string_lossy()
        ));
        let mut f = std::fs::File::create(&tmp)?;
        let written = f
            .write_all(&(self.stamps.len() as u32).to_le_bytes())
            .and_then(|()| f.write_all(&self.stamps))
            .and_then(|()| f.write_all(&image))
            .and_then(|()| std::fs::rename(&tmp, &self.path));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }
}

/// What the store's image cache holds for a manifest.
pub enum Cached {
    /// A current image, loaded.
    Hit(View),
    /// None current: the caller builds the view, then writes this image
    /// (`None` when the manifest's dists cannot be stamped, i.e. the build
    /// is about to report a missing one).
    Miss(Option<PendingImage>),
}

/// The manifest's view from its image, when one is current; each lazy
/// file is made again by `lazy(owner)`.
pub fn lookup(
    store: &Store,
    m: &Manifest,
    dir_mtime: SystemTime,
    lazy: &dyn Fn(u32) -> Arc<Lazy>,
) -> Cached {
    let (Some(path), Some(stamps)) = (image_path(store, m), stamps(store, m)) else {
        return Cached::Miss(None);
    };
    if let Some(view) = load(dir_mtime, &path, &stamps, lazy) {
        log::info!(
            "view of {} nodes loaded from {}",
            view.len(),
            path.display()
        );
        return Cached::Hit(view);
    }
    Cached::Miss(Some(PendingImage {
        store: store.clone(),
        path,
        stamps,
    }))
}

fn load(
    dir_mtime: SystemTime,
    path: &Path,
    stamps: &[u8],
    lazy: &dyn Fn(u32) -> Arc<Lazy>,
) -> Option<View> {
    let map = map(path)?;
    let (len, rest) = map.split_first_chunk::<4>()?;
    let (recorded, image) = rest.split_at_checked(u32::from_le_bytes(*len) as usize)?;
    if recorded != stamps {
        return None;
    }
    View::from_image(image, dir_mtime, lazy)
}

/// `STORE/views/<hash>`: one name per view content and sitefs version.
/// The key is the manifest without the parts that do not shape the view
/// (the store's path, the interpreter's path, the env's prefix), so any
/// part added to manifests later keys images until shown harmless here.
fn image_path(store: &Store, m: &Manifest) -> Option<PathBuf> {
    let shared = Manifest {
        store: PathBuf::new(),
        python: PythonSpec {
            executable: None,
            ..m.python.clone()
        },
        env: m.env.as_ref().map(|_| EnvSpec {
            prefix: PathBuf::new(),
        }),
        ..m.clone()
    };
    let key = format!(
        "sitefs {}\n{}",
        env!("CARGO_PKG_VERSION"),
        toml::to_string(&shared).ok()?
    );
    let name = Digest::of(key.as_bytes()).to_hex();
    Some(store.layout().view_image(&name))
}

/// The identity of every store file the view depends on, in manifest
/// order; `None` when one is missing (the build then reports it).
fn stamps(store: &Store, m: &Manifest) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(m.dists.len() * 64);
    for d in &m.dists {
        let dir = is_valid_id(&d.id).then(|| store.dist_dir(&d.id))?;
        for p in [dir, store.bytecode_marker(&m.python.cache_tag, &d.id)] {
            let s = FileStamp::read(&p)?;
            for v in [s.ino, s.len, s.mtime_ns as u64] {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
    }
    Some(out)
}

/// A read-only private mapping of a whole file. An image is read once, at
/// mount time, where every freshly touched page of the daemon's own memory
/// costs (a few microseconds each on a VM); a mapping of the page-cached
/// file costs no copy and no new pages.
fn map(path: &Path) -> Option<Mmap> {
    let file = std::fs::File::open(path).ok()?;
    if file.metadata().ok()?.len() == 0 {
        return None;
    }
    // SAFETY: memmap2 cannot rule out the file changing under the mapping.
    // Images are replaced by rename, never written in place, so the mapped
    // bytes cannot change under the reader; and `View::from_image` checks
    // every byte it uses, so even a damaged file cannot make it misbehave.
    unsafe { MmapOptions::new().populate().map_copy_read_only(&file) }.ok()
}
