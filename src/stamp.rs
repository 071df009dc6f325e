//! What identifies one version of a file without reading it.
//!
//! Several caches are valid only while a file is unchanged: the binary
//! copy of a dist's `files.tsv`, the store's memory of wheel files already
//! added, interpreter probes, view images. Each compares a [`FileStamp`]
//! taken when the cache was written with one taken now; a replaced or
//! rewritten file changes its inode, size or mtime.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Device, inode, size and modification time (nanoseconds) of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileStamp {
    pub dev: u64,
    pub ino: u64,
    pub len: u64,
    pub mtime_ns: i64,
}

impl FileStamp {
    pub fn of(m: &std::fs::Metadata) -> FileStamp {
        FileStamp {
            dev: m.dev(),
            ino: m.ino(),
            len: m.size(),
            mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
        }
    }

    /// The stamp of `path` (following symlinks), if it exists.
    pub fn read(path: &Path) -> Option<FileStamp> {
        std::fs::metadata(path).ok().map(|m| FileStamp::of(&m))
    }

    /// `dev:ino:len:secs.nanos`, the text form caches on disk store (and
    /// have stored since before this type existed, so keys stay valid).
    pub fn key(&self) -> String {
        let secs = self.mtime_ns.div_euclid(1_000_000_000);
        let nanos = self.mtime_ns.rem_euclid(1_000_000_000);
        format!("{}:{}:{}:{secs}.{nanos}", self.dev, self.ino, self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rewritten_file_has_another_stamp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, "one").unwrap();
        let a = FileStamp::read(&p).unwrap();
        assert_eq!(FileStamp::read(&p), Some(a));
        let f = std::fs::File::options().write(true).open(&p).unwrap();
        f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::new(5, 7))
            .unwrap();
        let b = FileStamp::read(&p).unwrap();
        assert_ne!(a, b);
        assert_eq!(b.mtime_ns, 5_000_000_007);
        assert!(b.key().ends_with(":3:5.7"), "{}", b.key());
        assert_eq!(FileStamp::read(&dir.path().join("missing")), None);
    }
}
