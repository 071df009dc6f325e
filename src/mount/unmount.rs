//! Unmounting: directly as root, through the setuid `fusermount3`
//! otherwise. A mount's daemon notices its mount is gone and exits.

use std::path::Path;
use std::process::{Command, Stdio};

use nix::errno::Errno;
use nix::mount::{umount2, MntFlags};
use nix::unistd::geteuid;

use crate::mount::error::MountError;
use crate::mount::mountinfo::is_mount_point;

/// `sitefs umount`: unmount `p`, refusing while a process still uses it.
pub fn unmount(p: &Path) -> Result<(), MountError> {
    let shown = p.to_path_buf();
    let abs = std::path::absolute(p).unwrap_or(p.to_path_buf());
    if !is_mount_point(&abs) {
        return Err(MountError::NotMounted(shown));
    }
    if !geteuid().is_root() {
        return fusermount_unmount(&abs, p);
    }
    match umount2(&abs, MntFlags::empty()) {
        Ok(()) => Ok(()),
        Err(Errno::EBUSY) => Err(MountError::Busy(shown)),
        Err(Errno::EINVAL) => Err(MountError::NotMounted(shown)),
        Err(err) => Err(MountError::Umount { path: shown, err }),
    }
}

/// Detach `p` now; the kernel ends the session when its last user lets
/// go.
pub(crate) fn lazy_unmount(p: &Path) -> Result<(), Errno> {
    let err = match umount2(p, MntFlags::MNT_DETACH) {
        Ok(()) => return Ok(()),
        Err(Errno::EPERM) => Errno::EPERM,
        Err(e) => return Err(e),
    };
    // Not root: the setuid helper may unmount what this user mounted.
    let status = Command::new("fusermount3")
        .args(["-u", "-z", "--"])
        .arg(p)
        .stderr(Stdio::null())
        .status();
    match status {
        Ok(s) if s.success() => Ok(()),
        _ => Err(err),
    }
}

fn fusermount_unmount(abs: &Path, shown: &Path) -> Result<(), MountError> {
    let out = Command::new("fusermount3")
        .arg("-u")
        .arg(abs)
        .output()
        .map_err(MountError::NoFusermount)?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("busy") {
        return Err(MountError::Busy(shown.to_path_buf()));
    }
    Err(MountError::Fusermount {
        path: shown.to_path_buf(),
        stderr: err.trim().to_string(),
    })
}
