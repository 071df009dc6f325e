//! Live reload: the daemon watches its manifest and swaps in the new view
//! when the manifest is replaced, without unmounting, so running
//! processes keep working.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use log::{error, info};
use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

use crate::mount::fs::invalidate;
use crate::store::roots::MountRoot;
use crate::view::build;
use crate::view::live::ViewState;

/// What a reload changes: the view served, the kernel's caches of it, and
/// the mount's gc root.
pub(crate) struct Reloader {
    pub manifest: PathBuf,
    pub state: Arc<ViewState>,
    pub notifier: fuser::Notifier,
    pub root: Arc<Mutex<MountRoot>>,
}

/// Watch the manifest's directory; when the manifest is replaced (as
/// `Manifest::save` does, by rename), rebuild the view and swap it in.
/// A manifest that fails to load leaves the old view serving.
pub(crate) fn watch_manifest(r: Reloader) -> std::io::Result<()> {
    let dir = r.manifest.parent().unwrap_or(Path::new("/")).to_path_buf();
    let name = r.manifest.file_name().map(|n| n.to_os_string());
    let inotify = Inotify::init(InitFlags::IN_CLOEXEC)?;
    inotify.add_watch(
        &dir,
        AddWatchFlags::IN_MOVED_TO | AddWatchFlags::IN_CLOSE_WRITE,
    )?;
    std::thread::Builder::new()
        .name("manifest-watch".into())
        .spawn(move || loop {
            match inotify.read_events() {
                Ok(events) if events.iter().any(|e| e.name == name) => r.reload(),
                Ok(_) | Err(Errno::EINTR) => {}
                Err(_) => break,
            }
        })
        .map(drop)
}

impl Reloader {
    fn reload(&self) {
        // No image: the manifest was just rewritten, like a new env's (see
        // `env::build_env`); the next mount of it writes one. The guard
        // keeps gc out until the new view's root is recorded.
        let (_use, loaded) = match build::load_for_mount(&self.manifest) {
            Ok(l) => l,
            Err(e) => return error!("not reloading: {e}"),
        };
        let recorded = self
            .root
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .update(&loaded.dists);
        if let Err(e) = recorded {
            return error!("not reloading: cannot record the mount's gc root: {e}");
        }
        let changes = self.state.replace(loaded.view);
        invalidate(&self.notifier, &changes);
        info!(
            "reloaded {} ({} directories changed)",
            self.manifest.display(),
            changes.len()
        );
    }
}
