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

use base64::Engine as _;
use sha2::{Digest as _, Sha256, Sha384, Sha512};
use zip::ZipArchive;

use crate::hashing::{Digest, HashingWriter};

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

/// The PEP 427 file name fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WheelName {
    pub distribution: String,
    pub version: String,
    pub build: Option<String>,
    pub python: Vec<String>,
    pub abi: Vec<String>,
    pub platform: Vec<String>,
}

impl WheelName {
    /// Parse `NAME-VERSION[-BUILD]-PY-ABI-PLAT.whl`.
    pub fn parse(file_name: &str) -> Result<Self, WheelError> {
        let bad = || WheelError::BadFileName(file_name.to_string());
        let stem = file_name.strip_suffix(".whl").ok_or_else(bad)?;
        let parts: Vec<&str> = stem.split('-').collect();
        let (build, rest) = match parts.len() {
            5 => (None, &parts[2..]),
            6 => (Some(parts[2].to_string()), &parts[3..]),
            _ => return Err(bad()),
        };
        if parts.iter().any(|p| p.is_empty()) || !is_valid_name(parts[0]) {
            return Err(bad());
        }
        let split = |s: &str| s.split('.').map(str::to_string).collect::<Vec<_>>();
        Ok(WheelName {
            distribution: parts[0].to_string(),
            version: parts[1].to_string(),
            build,
            python: split(rest[0]),
            abi: split(rest[1]),
            platform: split(rest[2]),
        })
    }

    /// Every `python-abi-platform` triple this wheel is compatible with.
    pub fn tags(&self) -> Vec<String> {
        let mut out = Vec::new();
        for py in &self.python {
            for abi in &self.abi {
                for plat in &self.platform {
                    out.push(format!("{py}-{abi}-{plat}"));
                }
            }
        }
        out
    }

    /// The compressed tag set as written in the file name.
    pub fn tag_string(&self) -> String {
        format!(
            "{}-{}-{}",
            self.python.join("."),
            self.abi.join("."),
            self.platform.join(".")
        )
    }
}

fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// A PEP 508 name: ASCII letters and digits, with `.`, `_` and `-` only
/// inside. METADATA's `Name` names the headers directory of a venv, so a
/// name like `..` must not get through.
pub fn is_pep508_name(name: &str) -> bool {
    let b = name.as_bytes();
    b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

/// PEP 503 normalization: lowercase, runs of `-_.` become one `-`. Used to
/// compare names from file names, METADATA and requirements.
pub fn normalize_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut sep = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            sep = true;
        } else {
            if sep && !out.is_empty() {
                out.push('-');
            }
            sep = false;
            out.push(c.to_ascii_lowercase());
        }
    }
    out
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

/// One RECORD hash: the algorithm and the raw digest bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordHash {
    pub algorithm: String,
    pub digest: Vec<u8>,
}

impl RecordHash {
    fn parse(s: &str) -> Option<RecordHash> {
        let (algorithm, b64) = s.split_once('=')?;
        if !matches!(algorithm, "sha256" | "sha384" | "sha512") {
            return None;
        }
        let digest = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(b64.trim_end_matches('='))
            .ok()?;
        Some(RecordHash {
            algorithm: algorithm.to_string(),
            digest,
        })
    }

    fn encode(algorithm: &str, digest: &[u8]) -> String {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest);
        format!("{algorithm}={b64}")
    }

    /// The RECORD form of a sha256 digest, for files we generate.
    pub fn sha256_field(d: &Digest) -> String {
        Self::encode("sha256", &d.0)
    }
}

/// One parsed RECORD row.
#[derive(Debug, Clone)]
pub struct RecordRow {
    pub hash: Option<RecordHash>,
    pub size: Option<u64>,
}

/// Parse RECORD (CSV: path, hash, size) into rows keyed by path.
pub fn parse_record(text: &str) -> Result<HashMap<String, RecordRow>, WheelError> {
    let mut rows = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let bad = |why: &str| WheelError::BadRecord {
            line: i + 1,
            why: why.to_string(),
        };
        if line.trim().is_empty() {
            continue;
        }
        let fields = split_csv(line).ok_or_else(|| bad("unbalanced quotes"))?;
        if fields.len() != 3 {
            return Err(bad("expected 3 fields: path,hash,size"));
        }
        let hash = match fields[1].as_str() {
            "" => None,
            h => Some(
                RecordHash::parse(h)
                    .ok_or_else(|| bad("hash is not sha256/384/512=<urlsafe base64>"))?,
            ),
        };
        let size = match fields[2].as_str() {
            "" => None,
            s => Some(s.parse().map_err(|_| bad("size is not a number"))?),
        };
        if rows
            .insert(fields[0].clone(), RecordRow { hash, size })
            .is_some()
        {
            return Err(bad(&format!("{:?} listed twice", fields[0])));
        }
    }
    Ok(rows)
}

/// Split one CSV line (RFC 4180 quoting, as Python's csv module writes it).
fn split_csv(line: &str) -> Option<Vec<String>> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', true) => quoted = false,
            ('"', false) if cur.is_empty() => quoted = true,
            (',', false) => fields.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    if quoted {
        return None;
    }
    fields.push(cur);
    Some(fields)
}

/// Quote a RECORD path field the way Python's csv module would.
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
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

fn verify_row(
    path: &str,
    row: &RecordRow,
    digest: &Digest,
    size: u64,
    other: Option<OtherHasher>,
) -> Result<(), WheelError> {
    if let Some(expected) = row.size {
        if expected != size {
            return Err(WheelError::SizeMismatch {
                path: path.to_string(),
                expected,
                actual: size,
            });
        }
    }
    let Some(hash) = &row.hash else {
        return Ok(());
    };
    let actual = match other {
        Some(h) => h.finish(),
        None => digest.0.to_vec(),
    };
    if actual != hash.digest {
        return Err(WheelError::HashMismatch {
            path: path.to_string(),
            expected: RecordHash::encode(&hash.algorithm, &hash.digest),
            actual: RecordHash::encode(&hash.algorithm, &actual),
        });
    }
    Ok(())
}

/// A second hash for RECORD rows that use sha384/sha512.
enum OtherHasher {
    Sha384(Sha384),
    Sha512(Sha512),
}

impl OtherHasher {
    fn new(algorithm: &str) -> Option<Self> {
        match algorithm {
            "sha384" => Some(OtherHasher::Sha384(Sha384::new())),
            "sha512" => Some(OtherHasher::Sha512(Sha512::new())),
            _ => None,
        }
    }
    fn update(&mut self, b: &[u8]) {
        match self {
            OtherHasher::Sha384(h) => h.update(b),
            OtherHasher::Sha512(h) => h.update(b),
        }
    }
    fn finish(self) -> Vec<u8> {
        match self {
            OtherHasher::Sha384(h) => h.finalize().to_vec(),
            OtherHasher::Sha512(h) => h.finalize().to_vec(),
        }
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

/// Parse RFC 822-style `Key: value` headers (WHEEL, METADATA), stopping
/// at the first blank line (the METADATA body is the description).
fn headers(text: &str) -> Vec<(&str, &str)> {
    text.lines()
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect()
}

fn header<'t>(h: &[(&str, &'t str)], key: &str) -> Option<&'t str> {
    h.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| *v)
}

/// Returns Root-Is-Purelib after checking Wheel-Version.
fn parse_wheel_file(text: &str) -> Result<bool, WheelError> {
    let h = headers(text);
    let version = header(&h, "Wheel-Version")
        .ok_or_else(|| WheelError::BadWheelFile("no Wheel-Version".into()))?;
    if version.split('.').next() != Some("1") {
        return Err(WheelError::UnsupportedWheelVersion(version.to_string()));
    }
    match header(&h, "Root-Is-Purelib")
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        _ => Err(WheelError::BadWheelFile(
            "Root-Is-Purelib must be true or false".into(),
        )),
    }
}

fn parse_metadata(text: &str) -> Result<(String, String), WheelError> {
    let h = headers(text);
    let name = header(&h, "Name").ok_or_else(|| WheelError::BadMetadata("no Name".into()))?;
    let version =
        header(&h, "Version").ok_or_else(|| WheelError::BadMetadata("no Version".into()))?;
    Ok((name.to_string(), version.to_string()))
}

/// Parse `entry_points.txt` (an INI file: `[group]` then `name = value`).
pub fn parse_entry_points(text: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut group: Option<String> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with(['#', ';']) {
            continue;
        }
        if let Some(g) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            group = Some(g.trim().to_string());
        } else if let (Some(g), Some((k, v))) = (&group, line.split_once('=')) {
            out.entry(g.clone())
                .or_default()
                .insert(k.trim().to_string(), v.trim().to_string());
        }
    }
    out
}

/// Console and GUI script names become files in `bin/`, so each must be
/// one plain path component (`../../.bashrc` would write outside the venv);
/// their values are pasted into Python source, so no control characters
/// (a lone `\r` ends a Python line).
fn check_script_entry_points(
    entry_points: &BTreeMap<String, BTreeMap<String, String>>,
) -> Result<(), WheelError> {
    for group in ["console_scripts", "gui_scripts"] {
        for (name, value) in entry_points.get(group).into_iter().flatten() {
            let bad = |why: &str| WheelError::BadEntryPoint(format!("[{group}] {name:?}: {why}"));
            if name.contains('/') || check_safe_path(name).is_err() {
                return Err(bad("a script name must be a plain file name"));
            }
            if value.chars().any(char::is_control) {
                return Err(bad("control character in the value"));
            }
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

/// sha256 of a whole wheel file, as pylock.toml and `--hash` give it.
pub fn wheel_digest(bytes: &[u8]) -> Digest {
    Digest(Sha256::digest(bytes).into())
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
