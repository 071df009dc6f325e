//! Wheel archives (PEP 427, the binary distribution format): file names,
//! `WHEEL`, `METADATA`, `RECORD`, and safe, verified extraction.
//!
//! Nothing here touches the store: [`Wheel::open`] checks the archive's
//! structure and every entry name up front, and [`Wheel::extract`] streams
//! one entry into any writer while checking it against its `RECORD` row.
//! pip skips the `RECORD` check; we must not, because a store entry is
//! shared by every environment that names it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{self, Cursor, Read, Write};

use zip::ZipArchive;

use crate::hashing::{Digest, HashingWriter};

mod metadata;
mod name;
mod record;

use metadata::{check_script_entry_points, parse_wheel_file};
pub use metadata::{first_header, parse_entry_points, parse_metadata};

pub use name::{is_pep508_name, normalize_name, WheelName};
pub use record::{csv_field, parse_record, verify_bytes, RecordHash, RecordRow};
use record::{verify_row, OtherHasher};

/// Why a wheel was rejected. Each message names the offending entry so a
/// user can tell a corrupt download from a broken build.
#[derive(Debug, thiserror::Error)]
pub enum WheelError {
    #[error("invalid wheel file name {0:?}: expected NAME-VERSION[-BUILD]-PYTHON-ABI-PLATFORM.whl (PEP 427)")]
    BadFileName(String),
    #[error("not a readable zip archive: {0}")]
    Zip(String),
    #[error("unsafe path {path:?} in archive: {why}")]
    UnsafePath { path: String, why: &'static str },
    #[error("zip entry {0:?} is a symlink; wheels may not contain symlinks")]
    Symlink(String),
    #[error("duplicate entry names in archive: the same path is stored twice")]
    Duplicate,
    #[error(
        "entry {path:?} declares {size} bytes, over the {limit}-byte per-file limit (zip bomb?)"
    )]
    FileTooLarge { path: String, size: u64, limit: u64 },
    #[error("archive would unpack to {size} bytes, over the {limit}-byte limit (zip bomb?)")]
    TotalTooLarge { size: u64, limit: u64 },
    #[error("entry {path:?} expands {ratio}x from {compressed} compressed bytes (zip bomb?)")]
    RatioTooHigh {
        path: String,
        compressed: u64,
        ratio: u64,
    },
    #[error("archive has {0} entries, over the limit of {1}")]
    TooManyEntries(usize, usize),
    #[error("entry {path:?} declares {declared} bytes but holds {actual}{more}: its declared size is a lie")]
    SizeLie {
        path: String,
        declared: u64,
        actual: u64,
        more: &'static str,
    },
    #[error("entry {path:?} is corrupt: {why}")]
    CorruptEntry { path: String, why: String },
    #[error("no .dist-info directory at the archive root")]
    NoDistInfo,
    #[error("more than one .dist-info directory: {0:?} and {1:?}")]
    TwoDistInfo(String, String),
    #[error(".dist-info directory {found:?} does not match the file name's {expected:?}")]
    DistInfoMismatch { found: String, expected: String },
    #[error("{0}/WHEEL is missing")]
    MissingWheelFile(String),
    #[error("{0}/RECORD is missing")]
    MissingRecord(String),
    #[error("{0}/METADATA is missing")]
    MissingMetadata(String),
    #[error("WHEEL: {0}")]
    BadWheelFile(String),
    #[error("WHEEL: Wheel-Version {0} is not supported (only 1.x)")]
    UnsupportedWheelVersion(String),
    #[error("RECORD line {line}: {why}")]
    BadRecord { line: usize, why: String },
    #[error("RECORD hash mismatch for {path:?}: RECORD says {expected}, content has {actual}")]
    HashMismatch {
        path: String,
        expected: String,
        actual: String,
    },
    #[error(
        "RECORD size mismatch for {path:?}: RECORD says {expected} bytes, content has {actual}"
    )]
    SizeMismatch {
        path: String,
        expected: u64,
        actual: u64,
    },
    #[error("{0:?} is in the archive but not listed in RECORD")]
    NotInRecord(String),
    #[error("{0:?} is in the archive but has no hash in RECORD")]
    NoHashInRecord(String),
    #[error("RECORD lists {0:?} but the archive has no such file")]
    MissingFromArchive(String),
    #[error(
        "{file:?} is both a file and the directory of {inside:?}: the wheel cannot be installed"
    )]
    FileAndDirectory { file: String, inside: String },
    #[error("unknown .data scheme {0:?} (expected purelib, platlib, scripts, headers or data)")]
    BadScheme(String),
    #[error("{0} is not valid UTF-8")]
    NotUtf8(String),
    #[error("METADATA: {0}")]
    BadMetadata(String),
    #[error("entry_points.txt: {0}")]
    BadEntryPoint(String),
    #[error("writing {path:?}: {err}")]
    Write { path: String, err: io::Error },
}

/// Bounds that keep a hostile archive from filling the disk. The size
/// bounds are far above the largest real wheels (a CUDA torch wheel
/// unpacks to about 4 GiB); the ratio bound stops the cheap bomb, a huge
/// run of one byte that deflates ~1000:1, while real package files stay
/// well under 30:1.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_file: u64,
    pub max_total: u64,
    /// Largest allowed uncompressed/compressed ratio for entries above
    /// `ratio_floor` bytes.
    pub max_ratio: u64,
    pub ratio_floor: u64,
    pub max_entries: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_file: 4 << 30,
            max_total: 16 << 30,
            max_ratio: 100,
            ratio_floor: 8 << 20,
            max_entries: 500_000,
        }
    }
}

/// Where an installed file lands (the install schemes of the wheel spec).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scheme {
    Purelib,
    Platlib,
    Scripts,
    Headers,
    Data,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Purelib => "purelib",
            Scheme::Platlib => "platlib",
            Scheme::Scripts => "scripts",
            Scheme::Headers => "headers",
            Scheme::Data => "data",
        }
    }

    /// A one-byte code for binary indexes, fixed here rather than taken
    /// from the declaration order, which files on disk must not depend on.
    pub fn code(self) -> u8 {
        match self {
            Scheme::Purelib => 0,
            Scheme::Platlib => 1,
            Scheme::Scripts => 2,
            Scheme::Headers => 3,
            Scheme::Data => 4,
        }
    }

    pub fn from_code(c: u8) -> Option<Scheme> {
        Some(match c {
            0 => Scheme::Purelib,
            1 => Scheme::Platlib,
            2 => Scheme::Scripts,
            3 => Scheme::Headers,
            4 => Scheme::Data,
            _ => return None,
        })
    }

    pub fn parse(s: &str) -> Option<Scheme> {
        Some(match s {
            "purelib" => Scheme::Purelib,
            "platlib" => Scheme::Platlib,
            "scripts" => Scheme::Scripts,
            "headers" => Scheme::Headers,
            "data" => Scheme::Data,
            _ => return None,
        })
    }

    /// purelib and platlib are one directory in a venv: site-packages.
    pub fn in_site_packages(self) -> bool {
        matches!(self, Scheme::Purelib | Scheme::Platlib)
    }
}

/// One regular file of the wheel, with where it installs.
#[derive(Debug, Clone)]
pub struct Entry {
    pub zip_index: usize,
    /// The name inside the archive, as RECORD lists it.
    pub archive_path: String,
    pub scheme: Scheme,
    /// The path relative to the scheme's directory.
    pub path: String,
    pub executable: bool,
    pub declared_size: u64,
}

/// A wheel whose structure has been checked: names are safe, sizes are
/// bounded, `WHEEL`, `METADATA` and `RECORD` parse. Contents are verified
/// entry by entry during [`Wheel::extract`].
pub struct Wheel<'a> {
    pub file_name: WheelName,
    pub dist_info: String,
    /// `Name` and `Version` from METADATA: the spelling pip shows.
    pub name: String,
    pub version: String,
    pub root_is_purelib: bool,
    pub entries: Vec<Entry>,
    /// Parsed `entry_points.txt`: group -> name -> value.
    pub entry_points: BTreeMap<String, BTreeMap<String, String>>,
    record: HashMap<String, RecordRow>,
    zip: ZipArchive<Cursor<&'a [u8]>>,
}

impl<'a> Wheel<'a> {
    /// Check the archive's structure and entry names. `bytes` is the whole
    /// wheel; keeping it in memory lets many threads extract at once.
    pub fn open(file_name: &str, bytes: &'a [u8], limits: &Limits) -> Result<Self, WheelError> {
        let name = WheelName::parse(file_name)?;
        let mut zip =
            ZipArchive::new(Cursor::new(bytes)).map_err(|e| WheelError::Zip(e.to_string()))?;
        let entries = scan_entries(&mut zip, limits)?;
        let dist_info = find_dist_info(&entries, &name)?;
        let mut small = |p: &str, missing: fn(String) -> WheelError| {
            read_small(&mut zip, &entries, &format!("{dist_info}/{p}"), limits)?
                .ok_or_else(|| missing(dist_info.clone()))
        };
        let wheel_text = small("WHEEL", WheelError::MissingWheelFile)?;
        let metadata_text = small("METADATA", WheelError::MissingMetadata)?;
        let record_text = small("RECORD", WheelError::MissingRecord)?;
        let root_is_purelib = parse_wheel_file(&wheel_text)?;
        let (meta_name, version) = parse_metadata(&metadata_text)?;
        if !is_pep508_name(&meta_name) {
            return Err(WheelError::BadMetadata(format!(
                "Name {meta_name:?} is not a valid distribution name"
            )));
        }
        if normalize_name(&meta_name) != normalize_name(&name.distribution) {
            return Err(WheelError::BadMetadata(format!(
                "Name {meta_name:?} does not match the file name's {:?}",
                name.distribution
            )));
        }
        let entry_points = match read_small(
            &mut zip,
            &entries,
            &format!("{dist_info}/entry_points.txt"),
            limits,
        )? {
            Some(t) => parse_entry_points(&t),
            None => BTreeMap::new(),
        };
        check_script_entry_points(&entry_points)?;
        let record = parse_record(&record_text)?;
        let entries = assign_schemes(entries, &dist_info, root_is_purelib)?;
        check_tree_shape(&entries)?;
        check_record_coverage(&entries, &record, &dist_info)?;
        Ok(Wheel {
            file_name: name,
            dist_info,
            name: meta_name,
            version,
            root_is_purelib,
            entries,
            entry_points,
            record,
            zip,
        })
    }

    /// Stream one entry into `out`, checking its size against the
    /// declared one and its hash and size against RECORD. Returns the
    /// sha256 and length of the content. Takes `&self` so threads can
    /// extract different entries concurrently.
    pub fn extract<W: Write>(&self, entry: &Entry, out: W) -> Result<(Digest, u64), WheelError> {
        let mut zip = self.zip.clone();
        let path = &entry.archive_path;
        let corrupt = |e: &dyn std::fmt::Display| WheelError::CorruptEntry {
            path: path.clone(),
            why: e.to_string(),
        };
        let file = zip.by_index(entry.zip_index).map_err(|e| corrupt(&e))?;
        let row = self.record.get(path);
        let mut extra = row
            .and_then(|r| r.hash.as_ref())
            .and_then(|h| OtherHasher::new(&h.algorithm));
        let mut writer = HashingWriter::new(TeeHash {
            inner: out,
            other: extra.as_mut(),
        });
        let mut limited = file.take(entry.declared_size + 1);
        // Flush before finishing: a buffered writer dropped unflushed would
        // swallow a full disk and leave a truncated file behind.
        let copied = io::copy(&mut limited, &mut writer).and_then(|n| writer.flush().map(|()| n));
        let (digest, n, _) = writer.finish();
        match copied {
            Ok(_) => {}
            Err(e)
                if e.kind() == io::ErrorKind::Other || e.kind() == io::ErrorKind::InvalidData =>
            {
                return Err(corrupt(&e))
            }
            Err(e) => {
                return Err(WheelError::Write {
                    path: path.clone(),
                    err: e,
                })
            }
        }
        if n != entry.declared_size {
            return Err(WheelError::SizeLie {
                path: path.clone(),
                declared: entry.declared_size,
                actual: n.min(entry.declared_size + 1),
                more: if n > entry.declared_size {
                    " or more"
                } else {
                    ""
                },
            });
        }
        if let Some(row) = row {
            verify_row(path, row, &digest, n, extra)?;
        }
        Ok((digest, n))
    }

    /// The RECORD rows, for tools that report what a wheel claims.
    pub fn record(&self) -> &HashMap<String, RecordRow> {
        &self.record
    }
}

struct TeeHash<'h, W> {
    inner: W,
    other: Option<&'h mut OtherHasher>,
}

impl<W: Write> Write for TeeHash<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        if let Some(h) = self.other.as_mut() {
            h.update(&buf[..n]);
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A raw entry before schemes are assigned.
struct RawEntry {
    index: usize,
    name: String,
    executable: bool,
    size: u64,
}

/// Validate every central-directory entry: safe names, no symlinks, no
/// duplicates, bounded sizes. Directory entries are dropped.
fn scan_entries(
    zip: &mut ZipArchive<Cursor<&[u8]>>,
    limits: &Limits,
) -> Result<Vec<RawEntry>, WheelError> {
    if zip.has_duplicate_names() {
        return Err(WheelError::Duplicate);
    }
    if zip.len() > limits.max_entries {
        return Err(WheelError::TooManyEntries(zip.len(), limits.max_entries));
    }
    let mut out = Vec::with_capacity(zip.len());
    let mut total: u64 = 0;
    for index in 0..zip.len() {
        let f = zip
            .by_index_raw(index)
            .map_err(|e| WheelError::Zip(e.to_string()))?;
        let name = String::from_utf8(f.name_raw().to_vec()).map_err(|_| {
            WheelError::NotUtf8(format!(
                "entry name {:?}",
                String::from_utf8_lossy(f.name_raw())
            ))
        })?;
        check_safe_path(&name)?;
        let mode = f.unix_mode().unwrap_or(0);
        if f.is_symlink() || mode & 0o170000 == 0o120000 {
            return Err(WheelError::Symlink(name));
        }
        if name.ends_with('/') {
            continue;
        }
        check_size(&name, f.size(), f.compressed_size(), limits)?;
        total += f.size();
        if total > limits.max_total {
            return Err(WheelError::TotalTooLarge {
                size: total,
                limit: limits.max_total,
            });
        }
        out.push(RawEntry {
            index,
            executable: mode & 0o111 != 0,
            size: f.size(),
            name,
        });
    }
    Ok(out)
}

fn check_size(name: &str, size: u64, compressed: u64, limits: &Limits) -> Result<(), WheelError> {
    if size > limits.max_file {
        return Err(WheelError::FileTooLarge {
            path: name.to_string(),
            size,
            limit: limits.max_file,
        });
    }
    if size > limits.ratio_floor && size / compressed.max(1) > limits.max_ratio {
        return Err(WheelError::RatioTooHigh {
            path: name.to_string(),
            compressed,
            ratio: size / compressed.max(1),
        });
    }
    Ok(())
}

/// Refuse names that could write outside the install directory or that
/// no real wheel uses (backslashes, control characters, empty segments).
pub fn check_safe_path(name: &str) -> Result<(), WheelError> {
    let unsafe_path = |why| WheelError::UnsafePath {
        path: name.to_string(),
        why,
    };
    if name.starts_with('/') {
        return Err(unsafe_path("absolute path"));
    }
    if name.contains('\\') {
        return Err(unsafe_path("backslash in path"));
    }
    if name.chars().any(|c| c.is_control()) {
        return Err(unsafe_path("control character in path"));
    }
    let trimmed = name.strip_suffix('/').unwrap_or(name);
    for part in trimmed.split('/') {
        match part {
            ".." => return Err(unsafe_path("escapes the install directory (..)")),
            "" | "." => return Err(unsafe_path("empty or '.' path segment")),
            p if p.len() >= 2 && p.as_bytes()[1] == b':' => {
                return Err(unsafe_path("drive letter"))
            }
            _ => {}
        }
    }
    Ok(())
}

/// Find the one `*.dist-info` directory at the archive root.
fn find_dist_info(entries: &[RawEntry], name: &WheelName) -> Result<String, WheelError> {
    let mut found: Vec<&str> = entries
        .iter()
        .filter_map(|e| e.name.split_once('/').map(|(top, _)| top))
        .filter(|top| top.ends_with(".dist-info"))
        .collect();
    found.sort_unstable();
    found.dedup();
    match found.as_slice() {
        [] => Err(WheelError::NoDistInfo),
        [one] => {
            let stem = one.trim_end_matches(".dist-info");
            let dist = stem.rsplit_once('-').map_or(stem, |(n, _)| n);
            if normalize_name(dist) != normalize_name(&name.distribution) {
                return Err(WheelError::DistInfoMismatch {
                    found: one.to_string(),
                    expected: name.distribution.clone(),
                });
            }
            Ok(one.to_string())
        }
        [a, b, ..] => Err(WheelError::TwoDistInfo(a.to_string(), b.to_string())),
    }
}

/// Read a small metadata file fully (bounded: these are text files).
fn read_small(
    zip: &mut ZipArchive<Cursor<&[u8]>>,
    entries: &[RawEntry],
    path: &str,
    limits: &Limits,
) -> Result<Option<String>, WheelError> {
    let Some(e) = entries.iter().find(|e| e.name == path) else {
        return Ok(None);
    };
    let corrupt = |why: String| WheelError::CorruptEntry {
        path: path.to_string(),
        why,
    };
    let f = zip
        .by_index(e.index)
        .map_err(|err| corrupt(err.to_string()))?;
    let mut buf = Vec::new();
    f.take(limits.max_file.min(256 << 20))
        .read_to_end(&mut buf)
        .map_err(|err| corrupt(err.to_string()))?;
    String::from_utf8(buf)
        .map(Some)
        .map_err(|_| WheelError::NotUtf8(path.to_string()))
}

/// A path that is a file may not also be a directory of other files once
/// installed (purelib and platlib are one directory, site-packages): no
/// installer could lay such a wheel out, and no mount could serve it.
fn check_tree_shape(entries: &[Entry]) -> Result<(), WheelError> {
    fn place(e: &Entry) -> (Scheme, &str) {
        let scheme = if e.scheme.in_site_packages() {
            Scheme::Purelib
        } else {
            e.scheme
        };
        (scheme, e.path.as_str())
    }
    let files: HashSet<(Scheme, &str)> = entries.iter().map(place).collect();
    for e in entries {
        let (scheme, path) = place(e);
        let mut ancestors = path.match_indices('/').map(|(i, _)| &path[..i]);
        if let Some(dir) = ancestors.find(|a| files.contains(&(scheme, *a))) {
            return Err(WheelError::FileAndDirectory {
                file: dir.to_string(),
                inside: path.to_string(),
            });
        }
    }
    Ok(())
}

/// Map archive names to install schemes: `X.data/<scheme>/...` goes to
/// that scheme, everything else to purelib or platlib per `WHEEL`.
fn assign_schemes(
    raw: Vec<RawEntry>,
    dist_info: &str,
    root_is_purelib: bool,
) -> Result<Vec<Entry>, WheelError> {
    let data_dir = format!("{}.data/", dist_info.trim_end_matches(".dist-info"));
    let root = if root_is_purelib {
        Scheme::Purelib
    } else {
        Scheme::Platlib
    };
    raw.into_iter()
        .map(|e| {
            let (scheme, path) = match e.name.strip_prefix(&data_dir) {
                Some(rest) => {
                    let (scheme, path) = rest
                        .split_once('/')
                        .ok_or_else(|| WheelError::BadScheme(rest.to_string()))?;
                    let scheme = Scheme::parse(scheme)
                        .ok_or_else(|| WheelError::BadScheme(scheme.to_string()))?;
                    (scheme, path.to_string())
                }
                None if e
                    .name
                    .split('/')
                    .next()
                    .is_some_and(|t| t.ends_with(".data")) =>
                {
                    return Err(WheelError::UnsafePath {
                        path: e.name,
                        why: ".data directory does not match the .dist-info name",
                    })
                }
                None => (root, e.name.clone()),
            };
            Ok(Entry {
                zip_index: e.index,
                archive_path: e.name,
                scheme,
                path,
                executable: e.executable,
                declared_size: e.size,
            })
        })
        .collect()
}

/// Every file must be in RECORD with a hash (except RECORD itself and its
/// signatures), and every RECORD row must name a file in the archive.
fn check_record_coverage(
    entries: &[Entry],
    record: &HashMap<String, RecordRow>,
    dist_info: &str,
) -> Result<(), WheelError> {
    let own = format!("{dist_info}/RECORD");
    let unhashed_ok = [own.clone(), format!("{own}.jws"), format!("{own}.p7s")];
    let mut present = HashSet::with_capacity(entries.len());
    for e in entries {
        present.insert(e.archive_path.as_str());
        let exempt = unhashed_ok.contains(&e.archive_path);
        match record.get(&e.archive_path) {
            None if exempt => {}
            None => return Err(WheelError::NotInRecord(e.archive_path.clone())),
            Some(row) if row.hash.is_none() && !exempt => {
                return Err(WheelError::NoHashInRecord(e.archive_path.clone()))
            }
            Some(_) => {}
        }
    }
    let mut missing: Vec<&String> = record
        .keys()
        .filter(|p| !present.contains(p.as_str()) && !p.ends_with('/'))
        .collect();
    missing.sort();
    match missing.first() {
        Some(p) => Err(WheelError::MissingFromArchive(p.to_string())),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_file_names() {
        let n = WheelName::parse(
            "numpy-2.4.6-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        )
        .unwrap();
        assert_eq!(n.distribution, "numpy");
        assert_eq!(n.version, "2.4.6");
        assert_eq!(n.platform.len(), 2);
        assert_eq!(n.tags().len(), 2);
        let b = WheelName::parse("pkg-1.0-2-py3-none-any.whl").unwrap();
        assert_eq!(b.build.as_deref(), Some("2"));
        for bad in [
            "pkg-1.0.whl",
            "pkg-1.0-py3-none-any.zip",
            "p kg-1-py3-none-any.whl",
            "-1-py3-none-any.whl",
        ] {
            assert!(WheelName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn normalizes_names() {
        assert_eq!(normalize_name("Foo.Bar__baz-Qux"), "foo-bar-baz-qux");
        assert_eq!(normalize_name("typing_extensions"), "typing-extensions");
    }

    #[test]
    fn rejects_unsafe_paths() {
        for (p, why) in [
            ("/etc/passwd", "absolute"),
            ("../x", ".."),
            ("a/../../x", ".."),
            ("a\\b", "backslash"),
            ("a//b", "empty"),
            ("C:/x", "drive"),
            ("a\nb", "control"),
        ] {
            let e = check_safe_path(p).unwrap_err().to_string();
            assert!(e.contains(why), "{p}: {e}");
        }
        check_safe_path("pkg/sub/mod.py").unwrap();
        check_safe_path("pkg/").unwrap();
    }

    #[test]
    fn parses_record_with_quotes() {
        let r = parse_record(
            "a.py,sha256=LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564,3\n\"we,ird.py\",,\nx.dist-info/RECORD,,\n",
        )
        .unwrap();
        assert_eq!(r["a.py"].size, Some(3));
        assert_eq!(
            r["a.py"].hash.as_ref().unwrap().digest,
            Digest::of(b"foo").0.to_vec()
        );
        assert!(r.contains_key("we,ird.py"));
        assert!(parse_record("a.py,md5=abc,3").is_err());
        assert!(parse_record("a.py,,x").is_err());
        assert!(parse_record("a.py,,\na.py,,").is_err());
        assert_eq!(csv_field("we,ird"), "\"we,ird\"");
    }

    #[test]
    fn parses_entry_points() {
        let ep = parse_entry_points(
            "[console_scripts]\nfoo = pkg.cli:main\n# c\n[gui_scripts]\nbar=pkg:gui [extra]\n",
        );
        assert_eq!(ep["console_scripts"]["foo"], "pkg.cli:main");
        assert_eq!(ep["gui_scripts"]["bar"], "pkg:gui [extra]");
    }

    #[test]
    fn script_entry_points_stay_in_bin() {
        for bad in [
            "[console_scripts]\n../../.bashrc = pkg:main\n",
            "[gui_scripts]\nsub/tool = pkg:main\n",
            "[console_scripts]\n.. = pkg:main\n",
            "[console_scripts]\n= pkg:main\n",
            "[console_scripts]\ntool = os\rimport evil:main\n",
        ] {
            let e = check_script_entry_points(&parse_entry_points(bad)).unwrap_err();
            assert!(e.to_string().starts_with("entry_points.txt: ["), "{e}");
        }
        let other_group = parse_entry_points("[pytest11]\na/b = pkg.plugin\n");
        check_script_entry_points(&other_group).unwrap();
    }

    #[test]
    fn metadata_names_follow_pep508() {
        for good in ["pkg", "Foo.Bar_baz-2", "x"] {
            assert!(is_pep508_name(good), "{good}");
        }
        for bad in ["", "..", ".", "_", "-pkg", "pkg.", "a/b", "p kg"] {
            assert!(!is_pep508_name(bad), "{bad}");
        }
    }

    #[test]
    fn wheel_file_versions() {
        assert!(parse_wheel_file("Wheel-Version: 1.0\nRoot-Is-Purelib: true\n").unwrap());
        assert!(!parse_wheel_file("Wheel-Version: 1.0\nRoot-Is-Purelib: false\n").unwrap());
        assert!(matches!(
            parse_wheel_file("Wheel-Version: 2.0\nRoot-Is-Purelib: true\n"),
            Err(WheelError::UnsupportedWheelVersion(_))
        ));
    }
}
