//! Checks that the shared fixtures in `tests/common` produce what they claim:
//! valid wheels verify, and each corruption knob yields exactly its defect.
//! Python's `zipfile`/`csv`/`hashlib` serve as an independent oracle.

mod common;

use common::rawzip::{self, CdEntry};
use common::*;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

/// Independent RECORD verifier: prints one sorted line per problem.
const ORACLE: &str = r#"
import base64, csv, hashlib, io, sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
names = [i.filename for i in z.infolist()]
rec = [n for n in names if n.endswith(".dist-info/RECORD")]
assert len(rec) == 1, rec
rows = list(csv.reader(io.TextIOWrapper(z.open(rec[0]), "utf-8")))
listed = {r[0] for r in rows}
problems = []
for path, h, size in rows:
    if path == rec[0]:
        assert (h, size) == ("", ""), (h, size)
        continue
    if path not in names:
        problems.append("missing " + path); continue
    try:
        data = z.read(path)
    except Exception as e:
        problems.append("unreadable " + path); continue
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    if h != "sha256=" + digest: problems.append("hash " + path)
    if int(size) != len(data): problems.append("size " + path)
for n in names:
    if n not in listed: problems.append("unlisted " + n)
print("\n".join(sorted(set(problems))))
"#;

/// Problems the Python oracle finds in `wheel` (empty: RECORD verifies).
fn oracle(wheel: &Path) -> Vec<String> {
    let out = Command::new(python())
        .args(["-c", ORACLE])
        .arg(wheel)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    stdout_of(&out)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// Runs python with `stdin` as input and returns stdout.
fn python_with_input(code: &str, stdin: &[u8]) -> String {
    let mut child = Command::new(python())
        .args(["-c", code])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    stdout_of(&out).trim().to_string()
}

/// A small valid wheel every knob test starts from.
fn base() -> WheelBuilder {
    WheelBuilder::new("demo-pkg", "1.0")
        .file("demo_pkg/__init__.py", "VALUE = 1\n")
        .file("demo_pkg/a.py", "def f():\n    return 'a' * 100\n")
}

fn build(dir: &Path, builder: &WheelBuilder) -> (std::path::PathBuf, Vec<CdEntry>) {
    let path = builder.write_to(dir);
    let bytes = std::fs::read(&path).unwrap();
    (path, rawzip::central_directory(&bytes))
}

fn names(cd: &[CdEntry]) -> Vec<String> {
    cd.iter().map(CdEntry::name_str).collect()
}

/// Splits one RECORD line, honouring CSV quotes.
fn split_csv(line: &str) -> Vec<String> {
    let (mut fields, mut cur, mut quoted) = (Vec::new(), String::new(), false);
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => cur.push(chars.next().unwrap()),
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    fields.push(cur);
    fields
}

fn full_wheel() -> WheelBuilder {
    WheelBuilder::new("full-demo", "2.0.1")
        .tag("py2.py3-none-any")
        .file("full_demo/__init__.py", "from .core import run\n")
        .file("full_demo/core.py", "def run():\n    return 0\n")
        .file("full_demo/odd,name \"q\".txt", "comma and quotes\n")
        .executable("full_demo/tool.sh", "#!/bin/sh\necho hi\n")
        .data("scripts", "full-demo-script", "#!python\nprint('x')\n")
        .data("headers", "full_demo.h", "int x;\n")
        .entry_points("[console_scripts]\nfull-demo = full_demo:run\n")
        .metadata_extra("Requires-Dist: six\nSummary: demo")
}

#[test]
fn valid_wheel_names_and_metadata() {
    let tmp = tempfile::tempdir().unwrap();
    let (path, cd) = build(tmp.path(), &full_wheel());
    assert_eq!(
        path.file_name().unwrap(),
        "full_demo-2.0.1-py2.py3-none-any.whl"
    );
    let names = names(&cd);
    let info = "full_demo-2.0.1.dist-info";
    assert_eq!(names.last().unwrap(), &format!("{info}/RECORD"));
    assert!(names.contains(&"full_demo-2.0.1.data/scripts/full-demo-script".into()));
    assert!(names.contains(&"full_demo-2.0.1.data/headers/full_demo.h".into()));
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&path).unwrap()).unwrap();
    let mut read = |name: &str| {
        let mut s = String::new();
        zip.by_name(name).unwrap().read_to_string(&mut s).unwrap();
        s
    };
    let wheel = read(&format!("{info}/WHEEL"));
    assert!(wheel.starts_with("Wheel-Version: 1.0\nGenerator: "));
    assert!(wheel.contains("Root-Is-Purelib: true\nTag: py2-none-any\nTag: py3-none-any\n"));
    let metadata = read(&format!("{info}/METADATA"));
    assert!(metadata.contains("Name: full-demo\nVersion: 2.0.1\nRequires-Dist: six\n"));
    assert!(read(&format!("{info}/entry_points.txt")).contains("full-demo = full_demo:run"));
    let tool = rawzip::entry_named(&cd, "full_demo/tool.sh");
    assert_eq!(tool.unix_mode(), 0o100755);
    assert_eq!(
        rawzip::entry_named(&cd, "full_demo/core.py").unix_mode(),
        0o100644
    );
}

#[test]
fn valid_wheel_record_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let (path, cd) = build(tmp.path(), &full_wheel());
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&path).unwrap()).unwrap();
    let mut record = String::new();
    let record_name = "full_demo-2.0.1.dist-info/RECORD";
    zip.by_name(record_name)
        .unwrap()
        .read_to_string(&mut record)
        .unwrap();
    let rows: Vec<Vec<String>> = record.lines().map(split_csv).collect();
    assert_eq!(rows.len(), cd.len());
    for row in &rows {
        let mut data = Vec::new();
        zip.by_name(&row[0])
            .unwrap()
            .read_to_end(&mut data)
            .unwrap();
        if row[0] == record_name {
            assert_eq!(row[1..], ["", ""]);
            continue;
        }
        assert_eq!(
            row[1],
            format!("sha256={}", record_hash(&data)),
            "{}",
            row[0]
        );
        assert_eq!(row[2], data.len().to_string());
    }
    assert_eq!(oracle(&path), Vec::<String>::new());
    let status = Command::new(python())
        .args(["-m", "zipfile", "-t"])
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn builds_are_deterministic() {
    assert_eq!(full_wheel().build(), full_wheel().build());
}

#[test]
fn platlib_tag_and_purelib_flag() {
    let w = base()
        .tag("cp311-cp311-linux_x86_64")
        .root_is_purelib(false);
    assert_eq!(w.file_name(), "demo_pkg-1.0-cp311-cp311-linux_x86_64.whl");
    let tmp = tempfile::tempdir().unwrap();
    let path = w.write_to(tmp.path());
    let mut zip = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    let mut wheel = String::new();
    zip.by_name("demo_pkg-1.0.dist-info/WHEEL")
        .unwrap()
        .read_to_string(&mut wheel)
        .unwrap();
    assert!(wheel.contains("Root-Is-Purelib: false\nTag: cp311-cp311-linux_x86_64\n"));
}

#[test]
fn record_knobs_produce_their_defect() {
    let tmp = tempfile::tempdir().unwrap();
    let cases: [(WheelBuilder, &str); 4] = [
        (base().corrupt_hash("demo_pkg/a.py"), "hash demo_pkg/a.py"),
        (base().corrupt_size("demo_pkg/a.py"), "size demo_pkg/a.py"),
        (
            base().omit_from_record("demo_pkg/a.py"),
            "unlisted demo_pkg/a.py",
        ),
        (
            base().record_extra_row("demo_pkg/ghost.py"),
            "missing demo_pkg/ghost.py",
        ),
    ];
    for (i, (builder, expected)) in cases.into_iter().enumerate() {
        let dir = tmp.path().join(i.to_string());
        std::fs::create_dir(&dir).unwrap();
        assert_eq!(oracle(&builder.write_to(&dir)), [expected]);
    }
}

#[test]
fn raw_entries_keep_their_exact_names() {
    let tmp = tempfile::tempdir().unwrap();
    let w = base()
        .raw_entry("/etc/x", "abs")
        .raw_entry("../x", "up")
        .raw_entry_recorded("pkg/../../x", "escape");
    let (path, cd) = build(tmp.path(), &w);
    let bytes = std::fs::read(&path).unwrap();
    for name in ["/etc/x", "../x", "pkg/../../x"] {
        let entry = rawzip::entry_named(&cd, name);
        assert_eq!(rawzip::local_name(&bytes, entry), name.as_bytes());
    }
    assert_eq!(oracle(&path), ["unlisted ../x", "unlisted /etc/x"]);
}

#[test]
fn symlink_entry_is_a_symlink() {
    let tmp = tempfile::tempdir().unwrap();
    let (path, cd) = build(
        tmp.path(),
        &base().symlink_entry("demo_pkg/link", "/etc/passwd"),
    );
    let entry = rawzip::entry_named(&cd, "demo_pkg/link");
    assert!(entry.is_symlink());
    assert_eq!(entry.unix_mode(), 0o120777);
    assert_eq!(entry.version_made_by >> 8, 3, "made by unix");
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&path).unwrap()).unwrap();
    let mut link = zip.by_name("demo_pkg/link").unwrap();
    assert!(link.is_symlink());
    let mut target = String::new();
    link.read_to_string(&mut target).unwrap();
    assert_eq!(target, "/etc/passwd");
    drop(link);
    assert_eq!(oracle(&path), Vec::<String>::new());
}

#[test]
fn duplicate_entry_appears_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let (path, cd) = build(tmp.path(), &base().duplicate_entry("demo_pkg/a.py"));
    let bytes = std::fs::read(&path).unwrap();
    let dups = rawzip::entries_named(&cd, "demo_pkg/a.py");
    assert_eq!(dups.len(), 2);
    for entry in &dups {
        assert_eq!(rawzip::local_name(&bytes, entry), b"demo_pkg/a.py");
    }
    assert_eq!(dups[0].crc32, dups[1].crc32);
    assert_ne!(dups[0].local_offset, dups[1].local_offset);
    let zip = zip::ZipArchive::new(std::io::Cursor::new(&bytes)).unwrap();
    assert!(zip.has_duplicate_names());
    let code = "import sys,zipfile; z=zipfile.ZipFile(sys.argv[1]); \
                d=[z.read(i) for i in z.infolist() if i.filename=='demo_pkg/a.py']; \
                print(len(d), d[0]==d[1])";
    let out = Command::new(python())
        .args(["-c", code])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(stdout_of(&out).trim(), "2 True");
}

#[test]
fn lying_size_understates_the_data() {
    let tmp = tempfile::tempdir().unwrap();
    let real = "def f():\n    return 'a' * 100\n".len() as u64;
    let (path, cd) = build(tmp.path(), &base().lying_size("demo_pkg/a.py"));
    let bytes = std::fs::read(&path).unwrap();
    let entry = rawzip::entry_named(&cd, "demo_pkg/a.py");
    assert_eq!(entry.uncompressed_size, real / 2);
    assert_eq!(rawzip::local_uncompressed_size(&bytes, entry), real / 2);
    let inflate = "import sys,zlib; print(len(zlib.decompress(sys.stdin.buffer.read(), -15)))";
    let actual = python_with_input(inflate, rawzip::raw_data(&bytes, entry));
    assert_eq!(actual, real.to_string());
    assert_eq!(oracle(&path), ["unreadable demo_pkg/a.py"]);
}

#[test]
fn deflate_zeros_inflates_exactly() {
    for n in [0u64, 1, 2, 3, 257, 258, 259, 260, 516, 517, 1000, 70_001] {
        let stream = common::bomb::deflate_zeros(n);
        let code = "import sys,zlib; d=zlib.decompress(sys.stdin.buffer.read(), -15); \
                    print(len(d), d.count(0), zlib.crc32(d))";
        let crc = common::bomb::crc32_of_zeros(n);
        assert_eq!(python_with_input(code, &stream), format!("{n} {n} {crc}"));
    }
}

#[test]
fn small_bomb_is_a_valid_recorded_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let n = (1 << 20) + 5;
    let (path, cd) = build(tmp.path(), &base().bomb("demo_pkg/zeros.bin", n));
    let entry = rawzip::entry_named(&cd, "demo_pkg/zeros.bin");
    assert_eq!(entry.uncompressed_size, n);
    assert_eq!(entry.unix_mode(), 0o100644);
    assert_eq!(oracle(&path), Vec::<String>::new());
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&path).unwrap()).unwrap();
    let mut data = Vec::new();
    zip.by_name("demo_pkg/zeros.bin")
        .unwrap()
        .read_to_end(&mut data)
        .unwrap();
    assert_eq!(data.len() as u64, n);
    assert!(data.iter().all(|&b| b == 0));
}

/// The RECORD row for `path` in the wheel at `wheel`.
fn record_row(wheel: &Path, path: &str) -> Vec<String> {
    let mut zip = zip::ZipArchive::new(std::fs::File::open(wheel).unwrap()).unwrap();
    let record_name = zip
        .file_names()
        .filter_map(Result::ok)
        .find(|n| n.ends_with(".dist-info/RECORD"))
        .unwrap()
        .into_owned();
    let mut record = String::new();
    zip.by_name(&record_name)
        .unwrap()
        .read_to_string(&mut record)
        .unwrap();
    record
        .lines()
        .map(split_csv)
        .find(|row| row[0] == path)
        .unwrap_or_else(|| panic!("no RECORD row for {path}"))
}

#[test]
fn three_gib_bomb_is_honest_and_small() {
    let n: u64 = 3 << 30;
    let tmp = tempfile::tempdir().unwrap();
    let (path, cd) = build(tmp.path(), &base().bomb("demo_pkg/bomb.bin", n));
    let entry = rawzip::entry_named(&cd, "demo_pkg/bomb.bin");
    assert_eq!(entry.uncompressed_size, n);
    assert!(
        entry.compressed_size < 25 << 20,
        "{}",
        entry.compressed_size
    );
    assert!(std::fs::metadata(&path).unwrap().len() < 25 << 20);
    let code = "import base64,hashlib,zlib\nc=0\nh=hashlib.sha256()\nz=bytes(1<<26)\n\
                for _ in range(48): c=zlib.crc32(z,c); h.update(z)\n\
                print(c, base64.urlsafe_b64encode(h.digest()).rstrip(b'=').decode())";
    let expected = python_eval(&python(), code);
    let row = record_row(&path, "demo_pkg/bomb.bin");
    assert_eq!(row[2], n.to_string());
    let (crc, digest) = expected.split_once(' ').unwrap();
    assert_eq!(entry.crc32.to_string(), crc);
    assert_eq!(row[1], format!("sha256={digest}"));
}

#[test]
fn metadata_knobs() {
    let tmp = tempfile::tempdir().unwrap();
    let (path, cd) = build(tmp.path(), &base().no_wheel_file());
    assert!(!names(&cd).contains(&"demo_pkg-1.0.dist-info/WHEEL".to_string()));
    assert_eq!(oracle(&path), Vec::<String>::new());

    let (path, _) = build(tmp.path(), &base().wheel_version("9.0"));
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&path).unwrap()).unwrap();
    let mut wheel = String::new();
    zip.by_name("demo_pkg-1.0.dist-info/WHEEL")
        .unwrap()
        .read_to_string(&mut wheel)
        .unwrap();
    assert!(wheel.starts_with("Wheel-Version: 9.0\n"));

    let (path, cd) = build(tmp.path(), &base().two_dist_info());
    let dirs: std::collections::BTreeSet<String> = names(&cd)
        .iter()
        .filter_map(|n| n.split_once(".dist-info/").map(|(d, _)| d.to_string()))
        .collect();
    assert_eq!(dirs.len(), 2, "{dirs:?}");
    assert_eq!(oracle(&path), Vec::<String>::new());
}

#[test]
#[should_panic(expected = "no entry")]
fn knob_on_unknown_path_panics() {
    base().corrupt_hash("demo_pkg/typo.py").build();
}

#[test]
fn extension_module_imports() {
    let tmp = tempfile::tempdir().unwrap();
    let py = python();
    let so = build_extension_module(&py, "sitefs_testext", tmp.path());
    assert_eq!(&so[..4], b"\x7fELF");
    let suffix = ext_suffix(&py);
    assert!(
        suffix.starts_with('.') && suffix.ends_with(".so"),
        "{suffix}"
    );
    let import_dir = tmp.path().join("site");
    std::fs::create_dir(&import_dir).unwrap();
    std::fs::write(import_dir.join(format!("sitefs_testext{suffix}")), &so).unwrap();
    let check = format!(
        "import sitefs_testext as m; assert m.add(2, 3) == 5; assert m.MAGIC == {EXT_MAGIC}"
    );
    let status = Command::new(&py)
        .args(["-c", &check])
        .current_dir(&import_dir)
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn helpers() {
    assert!(sitefs_bin().is_file(), "{}", sitefs_bin().display());
    let store = TempStore::new();
    assert!(store.path.starts_with(store.dir.path()));
    assert!(!python().is_empty());
    use std::os::unix::process::ExitStatusExt;
    let out = std::process::Output {
        status: std::process::ExitStatus::from_raw(1 << 8),
        stdout: Vec::new(),
        stderr: b"error: a-1-py3-none-any.whl: bad RECORD hash for a/x.py\n".to_vec(),
    };
    let reason = rejection_reason(&out, "a-1-py3-none-any.whl");
    assert_eq!(reason.as_deref(), Some("bad RECORD hash for a/x.py"));
    assert_eq!(rejection_reason(&out, "b-1-py3-none-any.whl"), None);
}
