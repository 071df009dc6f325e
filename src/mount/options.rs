//! Mount options: what `-o` may say, as mount(8), fstab and
//! mount.fuse3 pass it, and the fuser configuration it makes.

use fuser::{Config, MountOption, SessionACL};

use crate::mount::error::MountError;
use crate::mount::fs::{OpenMode, PycMode};
use crate::mount::uring::UringMode;

/// Options given with `-o`, as mount(8) and fstab pass them.
#[derive(Debug, Clone, PartialEq)]
pub struct MountOpts {
    pub acl: SessionACL,
    pub open: OpenMode,
    pub uring: UringMode,
    pub pycs: PycMode,
    pub threads: usize,
    pub fsname: Option<String>,
    /// How long the daemon may sit on a request without running at all
    /// before its watchdog ends it and clears the mount (`-o stuck=SECS`).
    pub stuck_after: std::time::Duration,
}

impl Default for MountOpts {
    fn default() -> Self {
        MountOpts {
            acl: SessionACL::Owner,
            open: OpenMode::Cached,
            uring: UringMode::Auto,
            pycs: PycMode::Link,
            threads: 4,
            fsname: None,
            stuck_after: std::time::Duration::from_secs(30),
        }
    }
}

/// Options mount(8), fstab and mount.fuse3 pass that mean nothing more
/// for a read-only, nosuid, nodev mount; accepted and ignored.
const IGNORED: [&str; 20] = [
    "ro",
    "defaults",
    "dev",
    "suid",
    "nodev",
    "nosuid",
    "noatime",
    "relatime",
    "atime",
    "exec",
    "auto",
    "noauto",
    "user",
    "nouser",
    "users",
    "owner",
    "nofail",
    "_netdev",
    "default_permissions",
    "auto_unmount",
];

/// The value of `opt`, one of the option's `words`.
fn word<T: Copy>(opt: &str, value: &str, words: &[(&str, T)]) -> Result<T, MountError> {
    words
        .iter()
        .find(|(w, _)| *w == value)
        .map(|&(_, t)| t)
        .ok_or_else(|| MountError::UnknownOption(opt.into()))
}

impl MountOpts {
    /// Parse comma-separated options (several `-o` may be joined by `,`).
    pub fn parse(list: &str) -> Result<Self, MountError> {
        let mut o = MountOpts::default();
        for opt in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (key, value) = opt
                .split_once('=')
                .map_or((opt, None), |(k, v)| (k, Some(v)));
            match (key, value) {
                ("allow_other", None) => o.acl = SessionACL::All,
                ("allow_root", None) => o.acl = SessionACL::RootAndOwner,
                ("open", Some(v)) => o.open = word(opt, v, OpenMode::WORDS)?,
                ("uring", Some(v)) => o.uring = word(opt, v, UringMode::WORDS)?,
                ("pyc", Some(v)) => o.pycs = word(opt, v, PycMode::WORDS)?,
                ("threads", Some(v)) => {
                    o.threads =
                        v.parse()
                            .ok()
                            .filter(|n| (1..=64).contains(n))
                            .ok_or_else(|| {
                                MountError::BadOption(
                                    opt.into(),
                                    "threads must be between 1 and 64",
                                )
                            })?
                }
                ("fsname", Some(v)) => o.fsname = Some(v.to_string()),
                ("stuck", Some(v)) => {
                    let secs: u64 = v
                        .parse()
                        .ok()
                        .filter(|n| (1..=86400).contains(n))
                        .ok_or_else(|| {
                            MountError::BadOption(
                                opt.into(),
                                "stuck must be a number of seconds from 1 to 86400",
                            )
                        })?;
                    o.stuck_after = std::time::Duration::from_secs(secs);
                }
                ("rw", None) => {
                    return Err(MountError::BadOption(
                        opt.into(),
                        "sitefs mounts are read-only",
                    ))
                }
                ("noexec", None) => {
                    return Err(MountError::BadOption(
                        opt.into(),
                        "extension modules are mmapped executable and would fail to load",
                    ))
                }
                (k, _)
                    if IGNORED.contains(&k)
                        || k.starts_with("x-")
                        || k == "comment"
                        || k == "subtype" => {}
                _ => return Err(MountError::UnknownOption(opt.into())),
            }
        }
        Ok(o)
    }
}

/// The session configuration for these options; `fsname` is what
/// mountinfo shows as the source.
pub(crate) fn fuse_config(opts: &MountOpts, fsname: &str) -> Config {
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::RO,
        MountOption::NoAtime,
        MountOption::NoSuid,
        MountOption::NoDev,
        MountOption::DefaultPermissions,
        MountOption::FSName(fsname.to_string()),
        MountOption::Subtype("sitefs".into()),
    ];
    config.acl = opts.acl;
    config.n_threads = Some(opts.threads);
    config.clone_fd = true;
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mount_options() {
        let o = MountOpts::parse(
            "ro,nosuid,nodev,allow_other,nofail,open=passthrough,uring=off,pyc=file,threads=2,x-systemd.automount",
        )
        .unwrap();
        assert_eq!(o.acl, SessionACL::All);
        assert_eq!(o.open, OpenMode::Passthrough);
        assert_eq!(o.uring, UringMode::Off);
        assert_eq!(o.pycs, PycMode::File);
        assert_eq!(MountOpts::parse("uring=yes").unwrap().uring, UringMode::On);
        assert_eq!(MountOpts::default().pycs, PycMode::Link);
        assert!(MountOpts::parse("pyc=copy").is_err());
        assert_eq!(o.threads, 2);
        assert_eq!(MountOpts::default().uring, UringMode::Auto);
        assert!(MountOpts::parse("uring=maybe").is_err());
        assert_eq!(MountOpts::parse("").unwrap(), MountOpts::default());
        let e = MountOpts::parse("ro,bogus").unwrap_err().to_string();
        assert!(e.contains("unknown mount option \"bogus\""), "{e}");
        assert!(MountOpts::parse("rw")
            .unwrap_err()
            .to_string()
            .contains("read-only"));
        assert!(MountOpts::parse("noexec").is_err());
        assert!(MountOpts::parse("open=fast").is_err());
        assert!(MountOpts::parse("threads=0").is_err());
    }
}
