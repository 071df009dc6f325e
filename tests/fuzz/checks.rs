//! What each fuzz target does with one input, shared by the cargo-fuzz
//! targets (`tests/fuzz/fuzz_targets/`) and the stable regression test
//! (`tests/fuzz_regressions.rs`), so a saved crash replays the exact code
//! that found it. Each check panics on a bug: a panic inside sitefs, or an
//! accepted input that breaks a safety property (an install path that can
//! leave its directory, a manifest that does not round-trip). Each returns
//! whether sitefs accepted the input, so the seeds can be checked to reach
//! past the parsers.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{self, Cursor, Write};
use std::path::Path;

use sitefs::manifest::Manifest;
use sitefs::resolve::pylock::Lock;
use sitefs::wheel::{check_safe_path, Limits, Wheel};

/// The file name the structured wheel target builds under.
pub const PARTS_WHEEL_NAME: &str = "pkg-1.0-py3-none-any.whl";

/// Input: the wheel's file name, a newline, then the archive bytes.
pub fn wheel_bytes(data: &[u8]) -> bool {
    let (name, zip) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&b""[..], data),
    };
    let name = String::from_utf8_lossy(name);
    check_wheel(&name, zip)
}

/// Input: entries separated by two NUL bytes; each is a flags byte, the
/// entry name, one NUL, then the content. The archive gets a default
/// `WHEEL` and `METADATA` unless the input names its own, and a RECORD
/// with correct hashes unless the input gives one, so the fuzzer reaches
/// extraction instead of stopping at a missing file.
pub fn wheel_parts(data: &[u8]) -> bool {
    check_wheel(PARTS_WHEEL_NAME, &build_parts_wheel(data))
}

/// Flags of one structured entry.
const DEFLATE: u8 = 1;
const EXECUTABLE: u8 = 2;
const SYMLINK: u8 = 4;
const NOT_IN_RECORD: u8 = 8;
const WRONG_HASH: u8 = 16;
const NO_SIZE: u8 = 32;

/// Build the archive a `wheel_parts` input describes.
pub fn build_parts_wheel(data: &[u8]) -> Vec<u8> {
    let mut entries: Vec<(u8, String, &[u8])> = split_on(data, b"\0\0")
        .filter(|e| !e.is_empty())
        .map(|e| {
            let (name, content) = match e[1..].iter().position(|&b| b == 0) {
                Some(i) => (&e[1..1 + i], &e[2 + i..]),
                None => (&e[1..], &b""[..]),
            };
            (e[0], String::from_utf8_lossy(name).into_owned(), content)
        })
        .collect();
    let info = "pkg-1.0.dist-info";
    for (file, text) in [
        ("WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\n"),
        (
            "METADATA",
            "Metadata-Version: 2.1\nName: pkg\nVersion: 1.0\n",
        ),
    ] {
        if !entries.iter().any(|e| e.1.ends_with(file)) {
            entries.push((DEFLATE, format!("{info}/{file}"), text.as_bytes()));
        }
    }
    let record = (!entries.iter().any(|e| e.1.ends_with("RECORD"))).then(|| record_for(&entries));
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (flags, name, content) in &entries {
        add_entry(&mut zip, *flags, name, content);
    }
    if let Some(record) = record {
        add_entry(&mut zip, 0, &format!("{info}/RECORD"), record.as_bytes());
    }
    zip.finish().map(Cursor::into_inner).unwrap_or_default()
}

fn add_entry<W: Write + io::Seek>(
    zip: &mut zip::ZipWriter<W>,
    flags: u8,
    name: &str,
    content: &[u8],
) {
    let method = if flags & DEFLATE != 0 {
        zip::CompressionMethod::Deflated
    } else {
        zip::CompressionMethod::Stored
    };
    let mode = if flags & EXECUTABLE != 0 {
        0o755
    } else {
        0o644
    };
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(method)
        .unix_permissions(mode);
    // A name the writer refuses (e.g. a duplicate) just leaves it out.
    if flags & SYMLINK != 0 {
        let _ = zip.add_symlink(name, String::from_utf8_lossy(content), options);
    } else if zip.start_file(name, options).is_ok() {
        let _ = zip.write_all(content);
    }
}

/// RECORD rows for the structured entries, honouring their flags.
fn record_for(entries: &[(u8, String, &[u8])]) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    let mut out = String::new();
    for (flags, name, content) in entries {
        if flags & NOT_IN_RECORD != 0 {
            continue;
        }
        let mut digest = sha2::Sha256::digest(content).to_vec();
        if flags & WRONG_HASH != 0 {
            digest[0] ^= 1;
        }
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest);
        let size = if flags & NO_SIZE != 0 {
            String::new()
        } else {
            content.len().to_string()
        };
        let name = sitefs::wheel::csv_field(name);
        out.push_str(&format!("{name},sha256={b64},{size}\n"));
    }
    out.push_str("pkg-1.0.dist-info/RECORD,,\n");
    out
}

fn split_on<'a>(data: &'a [u8], sep: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut rest = Some(data);
    std::iter::from_fn(move || {
        let r = rest?;
        match r.windows(sep.len()).position(|w| w == sep) {
            Some(i) => {
                rest = Some(&r[i + sep.len()..]);
                Some(&r[..i])
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}

/// Open and fully extract a wheel; check what an accepted wheel promises.
pub fn check_wheel(file_name: &str, bytes: &[u8]) -> bool {
    let Ok(wheel) = Wheel::open(file_name, bytes, &Limits::default()) else {
        return false;
    };
    assert!(
        is_component(&wheel.name),
        "accepted METADATA Name {:?}: it names a headers directory",
        wheel.name
    );
    for group in ["console_scripts", "gui_scripts"] {
        for (name, value) in wheel.entry_points.get(group).into_iter().flatten() {
            assert!(
                is_component(name),
                "accepted entry point name {name:?}: it becomes bin/{name}"
            );
            assert!(
                !value.contains(char::is_control),
                "accepted entry point value {value:?}: it is pasted into a script"
            );
        }
    }
    let mut all_extracted = true;
    for entry in &wheel.entries {
        check_safe_path(&entry.path).expect("accepted an unsafe install path");
        let mut sink = CountingSink(0);
        match wheel.extract(entry, &mut sink) {
            Ok((_, n)) => {
                assert_eq!(n, entry.declared_size, "{}", entry.archive_path);
                assert_eq!(n, sink.0, "{}", entry.archive_path);
                if let Some(row) = wheel.record().get(&entry.archive_path) {
                    assert!(row.size.is_none_or(|s| s == n), "{}", entry.archive_path);
                }
            }
            Err(_) => all_extracted = false,
        }
    }
    all_extracted
}

/// A single path component that stays in its directory.
fn is_component(name: &str) -> bool {
    check_safe_path(name).is_ok() && !name.contains('/')
}

struct CountingSink(u64);

impl Write for CountingSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Parse a manifest; an accepted one must name safe paths and survive a
/// save/load round trip unchanged.
pub fn manifest(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let Ok(m) = Manifest::parse(text, "fuzz.toml") else {
        return false;
    };
    assert!(
        is_component(&format!("python{}", m.python.version)),
        "accepted python version {:?}: it names lib/pythonX.Y",
        m.python.version
    );
    assert!(
        is_component(&m.python.cache_tag),
        "accepted cache_tag {:?}: it names store and pyc paths",
        m.python.cache_tag
    );
    let saved = toml::to_string(&m).expect("an accepted manifest serializes");
    let again = Manifest::parse(&saved, "saved.toml").expect("a saved manifest loads");
    assert_eq!(again, m, "manifest changed in a save/load round trip");
    true
}

/// Parse a requirements file; `-r` includes resolve against a directory
/// that does not exist, so nothing outside the input is read.
pub fn requirements(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    sitefs::resolve::requirements::parse_str(text, "fuzz.txt", Path::new("/nonexistent/fuzz"))
        .is_ok()
}

/// Parse a pylock.toml and, if valid, select wheels for a CPython 3.11
/// Linux interpreter.
pub fn pylock(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let Ok(lock) = Lock::parse_str(text, "pylock.toml", Path::new("/nonexistent/fuzz")) else {
        return false;
    };
    let tags = [
        "cp311-cp311-manylinux_2_17_x86_64",
        "cp311-abi3-manylinux_2_17_x86_64",
        "py3-none-any",
    ]
    .map(String::from);
    let env: BTreeMap<String, String> = [
        ("python_version", "3.11"),
        ("python_full_version", "3.11.7"),
        ("sys_platform", "linux"),
        ("platform_system", "Linux"),
        ("platform_machine", "x86_64"),
        ("os_name", "posix"),
        ("implementation_name", "cpython"),
        ("platform_python_implementation", "CPython"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    lock.select(&tags, &env).is_ok()
}
