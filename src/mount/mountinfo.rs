//! Mount points as the kernel lists them in `/proc/self/mountinfo`, and
//! the checks a path passes before sitefs mounts on it. Reading mountinfo
//! sends no request to any filesystem, so it is safe on a dead mount and
//! never triggers an automount.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use crate::mount::connection_gone;
use crate::mount::error::MountError;

/// The mountpoint must be an existing directory that is not already a
/// mount point (mounting over one would hide it, confusingly).
pub fn check_mountpoint(p: &Path) -> Result<PathBuf, MountError> {
    let shown = p.to_path_buf();
    match std::fs::metadata(p) {
        Err(e)
            if e.raw_os_error()
                .is_some_and(|n| connection_gone(Errno::from_raw(n))) =>
        {
            return Err(MountError::DeadMount(shown))
        }
        Err(_) => return Err(MountError::NoMountpoint(shown)),
        Ok(m) if !m.is_dir() => return Err(MountError::NotADir(shown)),
        Ok(_) => {}
    }
    let abs = p.canonicalize().map_err(|err| MountError::Canonicalize {
        path: p.to_path_buf(),
        err,
    })?;
    if is_mount_point(&abs) {
        return Err(MountError::AlreadyMounted(shown));
    }
    Ok(abs)
}

/// Whether `/proc/self/mountinfo` lists `p` as a mount point.
pub fn is_mount_point(p: &Path) -> bool {
    mount_device(p).is_some()
}

/// The `major:minor` device of the topmost mount on `p`, from mountinfo
/// (no request reaches the filesystem). Every FUSE connection has its own
/// device, so this tells one mount at a path from a later one.
pub(crate) fn mount_device(p: &Path) -> Option<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let want = p.as_os_str().as_bytes();
    info.lines()
        .map(|l| l.split(' ').collect::<Vec<_>>())
        .rfind(|f| f.len() > 4 && unescape_mountinfo(f[4]).as_slice() == want)
        .map(|f| f[2].to_string())
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            if let Some(v) = std::str::from_utf8(&b[i + 1..i + 4])
                .ok()
                .and_then(|o| u8::from_str_radix(o, 8).ok())
            {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_mountinfo_paths() {
        assert_eq!(unescape_mountinfo("/a\\040b"), b"/a b");
        assert_eq!(unescape_mountinfo("/plain"), b"/plain");
    }

    #[test]
    fn mountpoint_checks() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        assert!(matches!(
            check_mountpoint(&missing),
            Err(MountError::NoMountpoint(_))
        ));
        let file = dir.path().join("f");
        std::fs::write(&file, "").unwrap();
        assert!(matches!(
            check_mountpoint(&file),
            Err(MountError::NotADir(_))
        ));
        assert!(matches!(
            check_mountpoint(Path::new("/proc")),
            Err(MountError::AlreadyMounted(_))
        ));
        assert!(check_mountpoint(dir.path()).is_ok());
    }
}
