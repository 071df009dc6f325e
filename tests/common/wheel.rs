//! `WheelBuilder`: real `.whl` files for tests, valid by default, with one
//! knob per defect the store must reject.
//!
//! Everything is deterministic (fixed 1980-01-01 timestamps, insertion order),
//! so building the same wheel twice gives identical bytes and the same store
//! id, which "already present" tests rely on.

use super::{bomb, rawzip};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipWriter};

/// What an entry's bytes are, which decides how it is written.
#[derive(Debug, Clone)]
enum Payload {
    Bytes(Vec<u8>),
    /// Zip symlink: the target is the entry's content, mode S_IFLNK|0o777.
    Symlink(String),
    /// `n` zeros, written as a crafted DEFLATE stream (see `bomb`).
    Zeros(u64),
}

/// One zip entry to write, plus whether RECORD lists it.
#[derive(Debug, Clone)]
struct Entry {
    name: String,
    payload: Payload,
    mode: u32,
    recorded: bool,
}

impl Entry {
    fn file(name: &str, bytes: Vec<u8>, mode: u32, recorded: bool) -> Self {
        Entry {
            name: name.to_string(),
            payload: Payload::Bytes(bytes),
            mode,
            recorded,
        }
    }

    /// `(urlsafe-b64 sha256, size)` of the content a reader would extract.
    fn digest_and_size(&self) -> (String, u64) {
        match &self.payload {
            Payload::Bytes(b) => (record_hash(b), b.len() as u64),
            Payload::Symlink(t) => (record_hash(t.as_bytes()), t.len() as u64),
            Payload::Zeros(n) => (URL_SAFE_NO_PAD.encode(bomb::sha256_of_zeros(*n)), *n),
        }
    }
}

/// The defects to inject at write time; all empty/false for a valid wheel.
#[derive(Debug, Clone, Default)]
struct Defects {
    bad_hash: BTreeSet<String>,
    bad_size: BTreeSet<String>,
    omitted: BTreeSet<String>,
    extra_rows: Vec<String>,
    duplicated: Vec<String>,
    lying_size: BTreeSet<String>,
    no_wheel_file: bool,
    wheel_version: Option<String>,
    two_dist_info: bool,
}

/// Builds a wheel; see the module docs. Paths are relative to the wheel root.
#[derive(Debug, Clone)]
pub struct WheelBuilder {
    name: String,
    version: String,
    tag: String,
    root_is_purelib: bool,
    entries: Vec<Entry>,
    entry_points: Option<String>,
    metadata_extra: String,
    defects: Defects,
}

/// `sha256=<urlsafe base64, no padding>` as RECORD spells it.
pub fn record_hash(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(bytes))
}

/// Quotes a RECORD (CSV) field when it holds a comma, quote or newline.
fn csv_field(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

/// Expands a compressed tag set ("py2.py3-none-any") into single tags.
pub fn expand_tags(tag: &str) -> Vec<String> {
    let parts: Vec<&str> = tag.split('-').collect();
    assert_eq!(parts.len(), 3, "tag must be python-abi-platform: {tag}");
    let mut tags = Vec::new();
    for py in parts[0].split('.') {
        for abi in parts[1].split('.') {
            for plat in parts[2].split('.') {
                tags.push(format!("{py}-{abi}-{plat}"));
            }
        }
    }
    tags
}

impl WheelBuilder {
    /// A pure-python `py3-none-any` wheel with no files but its metadata.
    pub fn new(name: &str, version: &str) -> Self {
        WheelBuilder {
            name: name.to_string(),
            version: version.to_string(),
            tag: "py3-none-any".to_string(),
            root_is_purelib: true,
            entries: Vec::new(),
            entry_points: None,
            metadata_extra: String::new(),
            defects: Defects::default(),
        }
    }

    /// Compatibility tag(s), e.g. "cp311-cp311-linux_x86_64" or "py2.py3-none-any".
    pub fn tag(mut self, tag: &str) -> Self {
        expand_tags(tag);
        self.tag = tag.to_string();
        self
    }

    /// `Root-Is-Purelib` in WHEEL (false for platlib wheels).
    pub fn root_is_purelib(mut self, purelib: bool) -> Self {
        self.root_is_purelib = purelib;
        self
    }

    /// A regular file (mode 0o644), listed in RECORD.
    pub fn file(mut self, path: &str, bytes: impl Into<Vec<u8>>) -> Self {
        self.entries
            .push(Entry::file(path, bytes.into(), 0o644, true));
        self
    }

    /// An executable file (unix mode 0o755 on the zip entry), listed in RECORD.
    pub fn executable(mut self, path: &str, bytes: impl Into<Vec<u8>>) -> Self {
        self.entries
            .push(Entry::file(path, bytes.into(), 0o755, true));
        self
    }

    /// A file under `<dist>-<version>.data/<scheme>/<path>` (scheme: purelib,
    /// platlib, scripts, headers, data). Scripts get mode 0o755.
    pub fn data(self, scheme: &str, path: &str, bytes: impl Into<Vec<u8>>) -> Self {
        let full = format!("{}/{scheme}/{path}", self.data_dir());
        if scheme == "scripts" {
            self.executable(&full, bytes)
        } else {
            self.file(&full, bytes)
        }
    }

    /// Contents of `<dist-info>/entry_points.txt` (written only when set).
    pub fn entry_points(mut self, text: &str) -> Self {
        self.entry_points = Some(text.to_string());
        self
    }

    /// Extra METADATA header lines, e.g. "Requires-Dist: x\nSummary: y".
    pub fn metadata_extra(mut self, text: &str) -> Self {
        self.metadata_extra.push_str(text);
        if !text.ends_with('\n') {
            self.metadata_extra.push('\n');
        }
        self
    }

    /// The name as it appears in file and directory names (PEP 427: `-` -> `_`).
    pub fn dist_name(&self) -> String {
        self.name.replace('-', "_")
    }

    /// The version as it appears in file and directory names.
    fn dist_version(&self) -> String {
        self.version.replace('-', "_")
    }

    /// `<dist>-<version>.dist-info`.
    pub fn dist_info_dir(&self) -> String {
        format!("{}-{}.dist-info", self.dist_name(), self.dist_version())
    }

    /// `<dist>-<version>.data`.
    pub fn data_dir(&self) -> String {
        format!("{}-{}.data", self.dist_name(), self.dist_version())
    }

    /// `<dist>-<version>-<tag>.whl`.
    pub fn file_name(&self) -> String {
        let (name, version) = (self.dist_name(), self.dist_version());
        format!("{name}-{version}-{}.whl", self.tag)
    }
}

/// Corruption knobs: each produces exactly one defect, applied at write time.
impl WheelBuilder {
    /// RECORD gives `path` a well-formed but wrong sha256.
    pub fn corrupt_hash(mut self, path: &str) -> Self {
        self.defects.bad_hash.insert(path.to_string());
        self
    }

    /// RECORD gives `path` its real size plus one.
    pub fn corrupt_size(mut self, path: &str) -> Self {
        self.defects.bad_size.insert(path.to_string());
        self
    }

    /// `path` stays in the zip but gets no RECORD row.
    pub fn omit_from_record(mut self, path: &str) -> Self {
        self.defects.omitted.insert(path.to_string());
        self
    }

    /// RECORD gets a valid-looking row for `path`, which is not in the zip.
    pub fn record_extra_row(mut self, path: &str) -> Self {
        self.defects.extra_rows.push(path.to_string());
        self
    }

    /// An entry with exactly this name ("/etc/x", "../x", "pkg/../../x"),
    /// not listed in RECORD.
    pub fn raw_entry(mut self, name: &str, bytes: impl Into<Vec<u8>>) -> Self {
        self.entries
            .push(Entry::file(name, bytes.into(), 0o644, false));
        self
    }

    /// Like `raw_entry`, but RECORD lists it with a correct row, so only the
    /// name itself is wrong.
    pub fn raw_entry_recorded(mut self, name: &str, bytes: impl Into<Vec<u8>>) -> Self {
        self.entries
            .push(Entry::file(name, bytes.into(), 0o644, true));
        self
    }

    /// A symlink entry (mode S_IFLNK|0o777, content = target), with a correct
    /// RECORD row for the target bytes, so only the file type is wrong.
    pub fn symlink_entry(mut self, name: &str, target: &str) -> Self {
        self.entries.push(Entry {
            name: name.to_string(),
            payload: Payload::Symlink(target.to_string()),
            mode: 0o120777,
            recorded: true,
        });
        self
    }

    /// Writes the entry `path` (added with `.file` etc.) a second time with
    /// identical bytes, so only duplicate detection can reject it.
    pub fn duplicate_entry(mut self, path: &str) -> Self {
        self.defects.duplicated.push(path.to_string());
        self
    }

    /// Declares half of `path`'s real uncompressed size in both its local
    /// header and central record; the data, CRC and RECORD stay true.
    pub fn lying_size(mut self, path: &str) -> Self {
        self.defects.lying_size.insert(path.to_string());
        self
    }

    /// An entry of `n_bytes` zeros (< 4 GiB), DEFLATE-compressed ~159:1 and
    /// listed in RECORD with its true hash and size. See `bomb`.
    pub fn bomb(mut self, path: &str, n_bytes: u64) -> Self {
        self.entries.push(Entry {
            name: path.to_string(),
            payload: Payload::Zeros(n_bytes),
            mode: 0o644,
            recorded: true,
        });
        self
    }

    /// Leaves out `<dist-info>/WHEEL` (and its RECORD row).
    pub fn no_wheel_file(mut self) -> Self {
        self.defects.no_wheel_file = true;
        self
    }

    /// `Wheel-Version` in WHEEL (default "1.0").
    pub fn wheel_version(mut self, version: &str) -> Self {
        self.defects.wheel_version = Some(version.to_string());
        self
    }

    /// Adds a second, complete `<dist>_twin-<version>.dist-info` (METADATA
    /// and WHEEL, listed in RECORD).
    pub fn two_dist_info(mut self) -> Self {
        self.defects.two_dist_info = true;
        self
    }
}

/// Generated metadata files.
impl WheelBuilder {
    fn metadata_text(&self, name: &str) -> String {
        let (version, extra) = (&self.version, &self.metadata_extra);
        format!("Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n{extra}\n")
    }

    fn wheel_text(&self) -> String {
        let version = self.defects.wheel_version.as_deref().unwrap_or("1.0");
        let mut text = format!(
            "Wheel-Version: {version}\nGenerator: sitefs-tests (0.1)\nRoot-Is-Purelib: {}\n",
            self.root_is_purelib
        );
        for tag in expand_tags(&self.tag) {
            text.push_str(&format!("Tag: {tag}\n"));
        }
        text
    }

    /// METADATA, WHEEL, entry_points.txt and the twin dist-info, in order.
    fn metadata_entries(&self) -> Vec<Entry> {
        let info = self.dist_info_dir();
        let meta = |dir: &str, name: &str, text: String| {
            Entry::file(&format!("{dir}/{name}"), text.into_bytes(), 0o644, true)
        };
        let mut out = vec![meta(&info, "METADATA", self.metadata_text(&self.name))];
        if !self.defects.no_wheel_file {
            out.push(meta(&info, "WHEEL", self.wheel_text()));
        }
        if let Some(text) = &self.entry_points {
            out.push(meta(&info, "entry_points.txt", text.clone()));
        }
        if self.defects.two_dist_info {
            let twin = format!(
                "{}_twin-{}.dist-info",
                self.dist_name(),
                self.dist_version()
            );
            let twin_name = format!("{}-twin", self.name);
            out.push(meta(&twin, "METADATA", self.metadata_text(&twin_name)));
            out.push(meta(&twin, "WHEEL", self.wheel_text()));
        }
        out
    }

    /// All entries except RECORD, in archive order.
    fn all_entries(&self) -> Vec<Entry> {
        let mut entries = self.entries.clone();
        entries.extend(self.metadata_entries());
        entries
    }

    fn record_path(&self) -> String {
        format!("{}/RECORD", self.dist_info_dir())
    }
}

/// RECORD generation, with the row-level defects applied.
impl WheelBuilder {
    fn record_row(&self, entry: &Entry) -> String {
        let (mut hash, mut size) = entry.digest_and_size();
        if self.defects.bad_hash.contains(&entry.name) {
            hash = record_hash(format!("not the content of {}", entry.name).as_bytes());
        }
        if self.defects.bad_size.contains(&entry.name) {
            size += 1;
        }
        format!("{},sha256={hash},{size}\n", csv_field(&entry.name))
    }

    /// A row for a file that is not in the archive (hash of some other bytes).
    fn phantom_row(path: &str) -> String {
        let bytes = format!("phantom {path}\n");
        let hash = record_hash(bytes.as_bytes());
        format!("{},sha256={hash},{}\n", csv_field(path), bytes.len())
    }

    fn record_text(&self, entries: &[Entry]) -> String {
        let mut text = String::new();
        for entry in entries {
            if entry.recorded && !self.defects.omitted.contains(&entry.name) {
                text.push_str(&self.record_row(entry));
            }
        }
        for path in &self.defects.extra_rows {
            text.push_str(&Self::phantom_row(path));
        }
        text.push_str(&format!("{},,\n", csv_field(&self.record_path())));
        text
    }

    /// Panics when a knob names a path the wheel does not have (a typo would
    /// otherwise silently produce a valid wheel and a vacuous test).
    fn check_knob_paths(&self, entries: &[Entry]) {
        let mut names: BTreeSet<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        let record = self.record_path();
        names.insert(&record);
        let d = &self.defects;
        let knobs = d.bad_hash.iter().chain(&d.bad_size).chain(&d.omitted);
        for path in knobs.chain(&d.duplicated).chain(&d.lying_size) {
            assert!(names.contains(path.as_str()), "no entry {path:?} in wheel");
        }
        for path in &d.extra_rows {
            assert!(!names.contains(path.as_str()), "{path:?} is in the wheel");
        }
    }
}

/// Zip writing and post-write patching.
impl WheelBuilder {
    /// Writes `<dir>/<file_name()>` and returns its path.
    pub fn write_to(&self, dir: impl AsRef<Path>) -> PathBuf {
        let path = dir.as_ref().join(self.file_name());
        std::fs::write(&path, self.build()).expect("write wheel");
        path
    }

    /// The wheel's bytes.
    pub fn build(&self) -> Vec<u8> {
        let entries = self.all_entries();
        self.check_knob_paths(&entries);
        let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
        for entry in &entries {
            write_entry(&mut zip, entry);
        }
        let placeholders = self.write_duplicates(&mut zip, &entries);
        let record_text = self.record_text(&entries).into_bytes();
        let record = Entry::file(&self.record_path(), record_text, 0o644, false);
        write_entry(&mut zip, &record);
        let mut bytes = zip.finish().expect("finish zip").into_inner();
        rename_placeholders(&mut bytes, &placeholders);
        self.apply_lying_sizes(&mut bytes);
        bytes
    }

    /// Writes the second copy of each duplicated entry under a placeholder
    /// name of equal length (the zip crate rejects duplicate names); returns
    /// (placeholder, real name) pairs for `rename_placeholders`.
    fn write_duplicates(
        &self,
        zip: &mut ZipWriter<Cursor<Vec<u8>>>,
        entries: &[Entry],
    ) -> Vec<(String, String)> {
        let mut taken: BTreeSet<String> = entries.iter().map(|e| e.name.clone()).collect();
        taken.insert(self.record_path());
        let mut pairs = Vec::new();
        for path in &self.defects.duplicated {
            let original = entries.iter().find(|e| &e.name == path).unwrap();
            let placeholder = placeholder_name(path, &taken);
            taken.insert(placeholder.clone());
            let copy = Entry {
                name: placeholder.clone(),
                ..original.clone()
            };
            write_entry(zip, &copy);
            pairs.push((placeholder, path.clone()));
        }
        pairs
    }

    fn apply_lying_sizes(&self, bytes: &mut [u8]) {
        let cd = rawzip::central_directory(bytes);
        for path in &self.defects.lying_size {
            for entry in rawzip::entries_named(&cd, path) {
                assert!(
                    entry.uncompressed_size > 0,
                    "cannot understate empty {path}"
                );
                let lie = (entry.uncompressed_size / 2) as u32;
                rawzip::set_uncompressed_size(bytes, entry, lie);
            }
        }
    }
}

/// A name of the same byte length as `path`, not in `taken`.
fn placeholder_name(path: &str, taken: &BTreeSet<String>) -> String {
    ['#', '%', '~', '@', '!', '+']
        .iter()
        .map(|c| c.to_string().repeat(path.len()))
        .find(|name| !taken.contains(name))
        .expect("no free placeholder name")
}

fn rename_placeholders(bytes: &mut [u8], pairs: &[(String, String)]) {
    let cd = rawzip::central_directory(bytes);
    for (placeholder, real) in pairs {
        let entry = rawzip::entry_named(&cd, placeholder);
        rawzip::rename_entry(bytes, entry, real.as_bytes());
    }
}

/// Options shared by every entry: deflate, fixed 1980 timestamp, given mode.
fn options(mode: u32) -> SimpleFileOptions {
    SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .last_modified_time(DateTime::default())
        .unix_permissions(mode)
}

fn write_entry(zip: &mut ZipWriter<Cursor<Vec<u8>>>, entry: &Entry) {
    match &entry.payload {
        Payload::Bytes(bytes) => {
            zip.start_file(&entry.name, options(entry.mode))
                .expect("start entry");
            zip.write_all(bytes).expect("write entry");
        }
        Payload::Symlink(target) => zip
            .add_symlink(&entry.name, target, options(entry.mode))
            .expect("symlink entry"),
        Payload::Zeros(n) => bomb::append_bomb(zip, &entry.name, *n),
    }
}
