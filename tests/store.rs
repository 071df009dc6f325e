//! Integration tests of `sitefs store add|ls|info|verify|compile`: real wheel
//! files built here, real store directories in temp dirs, the real `sitefs`
//! binary and real `python3` processes.
//!
//! Expectations are derived independently of the implementation: file
//! schemes, modes and digests come from reading each wheel back with the zip
//! crate and applying the wheel spec's rules, and store invariants are
//! checked by hashing the store's files directly.

mod common;

use common::*;
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------

fn sha_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The interpreter's cache tag, e.g. "cpython-311".
fn cache_tag() -> String {
    python_eval(&python(), "import sys; print(sys.implementation.cache_tag)")
}

/// The interpreter's CPython wheel tag, e.g. "cp311".
fn cp_tag() -> String {
    python_eval(
        &python(),
        "import sys; print('cp%d%d' % sys.version_info[:2])",
    )
}

/// `sitefs store add --store S [--python PY] wheels...`.
fn add_with_python<P: AsRef<Path>>(store: &TempStore, wheels: &[P]) -> Output {
    let mut args: Vec<std::ffi::OsString> = vec!["--python".into(), python().into()];
    args.extend(wheels.iter().map(|w| w.as_ref().as_os_str().to_owned()));
    store.store_cmd("add", args)
}

/// A fresh directory for wheels next to (not inside) the store.
fn wheel_dir(store: &TempStore, name: &str) -> PathBuf {
    let dir = store.dir.path().join(name);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// One regular file of a wheel, as an independent zip reader sees it.
#[derive(Debug, Clone)]
struct ZipItem {
    name: String,
    data: Vec<u8>,
    mode: u32,
}

fn read_zip(path: &Path) -> Vec<ZipItem> {
    let mut zip = zip::ZipArchive::new(fs::File::open(path).unwrap()).unwrap();
    let mut items = Vec::new();
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).unwrap();
        if f.is_dir() {
            continue;
        }
        let mut data = Vec::new();
        f.read_to_end(&mut data).unwrap();
        items.push(ZipItem {
            name: String::from_utf8(f.name_raw().to_vec()).unwrap(),
            mode: f.unix_mode().unwrap_or(0o100644),
            data,
        });
    }
    items
}

/// The set of sha256 digests of a wheel's files.
fn wheel_digests(path: &Path) -> BTreeSet<String> {
    read_zip(path).iter().map(|i| sha_hex(&i.data)).collect()
}

/// One `files.tsv` row: scheme, mode, size, sha256, path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Row {
    scheme: String,
    mode: String,
    size: u64,
    sha: String,
    path: String,
}

/// The rows a store must hold for `wheel`, by the wheel spec: files under
/// `<dist>-<ver>.data/<scheme>/` go to that scheme, everything else to
/// purelib or platlib per Root-Is-Purelib; 755 when the zip entry has an
/// execute bit.
fn expected_rows(wheel: &Path, data_dir: &str, root_is_purelib: bool) -> BTreeSet<Row> {
    let root = if root_is_purelib {
        "purelib"
    } else {
        "platlib"
    };
    let prefix = format!("{data_dir}/");
    read_zip(wheel)
        .into_iter()
        .map(|item| {
            let (scheme, path) = match item.name.strip_prefix(&prefix) {
                Some(rest) => {
                    let (s, p) = rest.split_once('/').unwrap();
                    (s.to_string(), p.to_string())
                }
                None => (root.to_string(), item.name.clone()),
            };
            Row {
                scheme,
                mode: if item.mode & 0o111 != 0 { "755" } else { "644" }.to_string(),
                size: item.data.len() as u64,
                sha: sha_hex(&item.data),
                path,
            }
        })
        .collect()
}

/// The rows of `dists/<id>/files.tsv`.
fn files_tsv(store: &Path, id: &str) -> BTreeSet<Row> {
    let text = fs::read_to_string(store.join("dists").join(id).join("files.tsv")).unwrap();
    text.lines()
        .map(|line| {
            let f: Vec<&str> = line.splitn(5, '\t').collect();
            assert_eq!(f.len(), 5, "files.tsv row {line:?}");
            Row {
                scheme: f[0].to_string(),
                mode: f[1].to_string(),
                size: f[2].parse().unwrap(),
                sha: f[3].to_string(),
                path: f[4].to_string(),
            }
        })
        .collect()
}

/// `<normalized name>-<version>-<first 16 hex of the wheel's sha256>`.
fn expected_id(name: &str, version: &str, wheel: &Path) -> String {
    let mut norm = String::new();
    let mut sep = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            sep = true;
        } else {
            if sep && !norm.is_empty() {
                norm.push('_');
            }
            sep = false;
            norm.push(c.to_ascii_lowercase());
        }
    }
    let sha = sha_hex(&fs::read(wheel).unwrap());
    format!("{norm}-{version}-{}", &sha[..16])
}

/// `store ls` as rows of whitespace-separated fields; asserts exit 0.
fn ls(store: &TempStore) -> Vec<Vec<String>> {
    let out = store.store_cmd("ls", [] as [&str; 0]);
    assert_success(&out);
    stdout_of(&out)
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

/// The ids `store ls` shows.
fn ls_ids(store: &TempStore) -> BTreeSet<String> {
    ls(store)
        .into_iter()
        .map(|row| {
            assert_eq!(row.len(), 5, "ls row {row:?}");
            row[4].clone()
        })
        .collect()
}

fn verify(store: &TempStore) -> Output {
    store.store_cmd("verify", [] as [&str; 0])
}

/// Every file under `objects/`: hex name -> path. Panics on anything that
/// is not `objects/<aa>/<64 hex starting with aa>`.
fn objects(store: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    let Ok(rd) = fs::read_dir(store.join("objects")) else {
        return out;
    };
    for fan in rd {
        let fan = fan.unwrap();
        let aa = fan.file_name().into_string().unwrap();
        assert!(
            aa.len() == 2 && aa.chars().all(|c| c.is_ascii_hexdigit()),
            "stray entry objects/{aa}"
        );
        for obj in fs::read_dir(fan.path()).unwrap() {
            let obj = obj.unwrap();
            let name = obj.file_name().into_string().unwrap();
            assert!(
                name.len() == 64
                    && name.starts_with(&aa)
                    && name.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')),
                "stray file objects/{aa}/{name}"
            );
            out.insert(name, obj.path());
        }
    }
    out
}

/// Pyc files `bytecode/<tag>/<aa>/<sha>.pyc`: source sha -> path.
fn pycs(store: &Path, tag: &str) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    let Ok(rd) = fs::read_dir(store.join("bytecode").join(tag)) else {
        return out;
    };
    for fan in rd {
        let fan = fan.unwrap();
        if fan.file_name() == "dists" {
            continue;
        }
        for f in fs::read_dir(fan.path()).unwrap() {
            let f = f.unwrap();
            let name = f.file_name().into_string().unwrap();
            if let Some(sha) = name.strip_suffix(".pyc") {
                out.insert(sha.to_string(), f.path());
            }
        }
    }
    out
}

/// Entries of `tmp/` (staging litter).
fn tmp_entries(store: &Path) -> Vec<String> {
    match fs::read_dir(store.join("tmp")) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// A recursive listing of the store (all but `tmp/`): path -> type, mode,
/// size, mtime and, for files, the sha256 of the content.
fn snapshot(store: &Path) -> BTreeMap<String, String> {
    fn walk(dir: &Path, rel: &str, out: &mut BTreeMap<String, String>) {
        let mut entries: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap()).collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name().into_string().unwrap();
            let rel = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            // Staging, and the marks a running command holds so that gc
            // waits for it: neither is store content.
            if rel == "tmp" || rel == "locks/users" {
                continue;
            }
            let m = fs::symlink_metadata(e.path()).unwrap();
            let kind = if m.is_dir() {
                "dir".to_string()
            } else if m.is_file() {
                format!("file {}", sha_hex(&fs::read(e.path()).unwrap()))
            } else {
                "other".to_string()
            };
            out.insert(
                rel.clone(),
                format!(
                    "{kind} mode={:o} size={} mtime={}.{}",
                    m.mode() & 0o7777,
                    if m.is_dir() { 0 } else { m.len() },
                    m.mtime(),
                    m.mtime_nsec()
                ),
            );
            if m.is_dir() {
                walk(&e.path(), &rel, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(store, "", &mut out);
    out
}

/// Asserts two snapshots are equal, showing only the entries that differ.
fn assert_same_snapshot(
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
    what: &str,
) {
    let keys: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    let diff: Vec<String> = keys
        .into_iter()
        .filter(|k| before.get(*k) != after.get(*k))
        .map(|k| {
            format!(
                "{k}:\n  before: {:?}\n  after:  {:?}",
                before.get(k),
                after.get(k)
            )
        })
        .collect();
    assert!(diff.is_empty(), "{what}:\n{}", diff.join("\n"));
}

/// Parses `store ls`'s SIZE column ("512B", "15.9K", "1.2M") into bytes.
fn parse_human(s: &str) -> f64 {
    let (num, unit) = s.split_at(s.len() - 1);
    let scale = match unit {
        "B" => 1.0,
        "K" => 1024.0,
        "M" => 1024.0 * 1024.0,
        "G" => 1024.0 * 1024.0 * 1024.0,
        _ => panic!("bad size {s:?}"),
    };
    num.parse::<f64>().unwrap() * scale
}

/// Python source of `lines` small functions, distinct per `seed`.
fn py_source(seed: &str, lines: usize) -> String {
    let mut s = format!("SEED = {seed:?}\n\n");
    for j in 0..lines {
        s.push_str(&format!(
            "def f_{j}(x, y=None):\n    if y is None:\n        y = {j}\n    return [x * y + len(SEED) for _ in range(3)]\n\n"
        ));
    }
    s
}

/// A pure wheel `name` 1.0 with `files` modules; every 4th module has the
/// same content in every such wheel (cross-wheel dedup).
fn many_file_wheel(name: &str, files: usize, funcs: usize) -> WheelBuilder {
    let pkg = name.replace('-', "_");
    let mut b = WheelBuilder::new(name, "1.0")
        .file(&format!("{pkg}/__init__.py"), format!("NAME = {name:?}\n"));
    for k in 0..files {
        let seed = if k % 4 == 0 {
            format!("shared-{k}")
        } else {
            format!("{name}-{k}")
        };
        b = b.file(&format!("{pkg}/mod{k:03}.py"), py_source(&seed, funcs));
    }
    b
}

/// Python check of every pyc under its final name: right magic, flags 1
/// (unchecked hash), the source hash of the object it is named after, and
/// a loadable code object. Prints the count, then one line per problem.
const PYC_CHECK: &str = r#"
import importlib.util, marshal, os, sys
root, tag = sys.argv[1], sys.argv[2]
base = os.path.join(root, "bytecode", tag)
n, bad = 0, []
for aa in sorted(os.listdir(base)) if os.path.isdir(base) else []:
    if aa == "dists":
        continue
    for f in sorted(os.listdir(os.path.join(base, aa))):
        if not f.endswith(".pyc"):
            continue
        n += 1
        sha = f[:-4]
        data = open(os.path.join(base, aa, f), "rb").read()
        try:
            source = open(os.path.join(root, "objects", sha[:2], sha), "rb").read()
        except OSError as e:
            bad.append("%s: no source object (%s)" % (f, e))
            continue
        if data[:4] != importlib.util.MAGIC_NUMBER:
            bad.append(f + ": bad magic")
        elif int.from_bytes(data[4:8], "little") != 1:
            bad.append(f + ": flags %r" % data[4:8])
        elif data[8:16] != importlib.util.source_hash(source):
            bad.append(f + ": source hash mismatch")
        else:
            try:
                marshal.loads(data[16:])
            except Exception as e:
                bad.append("%s: unloadable: %s" % (f, e))
print(n)
for b in bad:
    print(b)
"#;

/// Runs `PYC_CHECK`; returns how many pycs it checked. Panics on problems.
fn check_pycs(store: &Path, tag: &str) -> usize {
    let out = Command::new(python())
        .args(["-c", PYC_CHECK])
        .arg(store)
        .arg(tag)
        .output()
        .unwrap();
    assert_success(&out);
    let text = stdout_of(&out);
    let mut lines = text.lines();
    let n: usize = lines.next().unwrap().parse().unwrap();
    let problems: Vec<&str> = lines.collect();
    assert!(problems.is_empty(), "bad pycs in store: {problems:#?}");
    n
}

/// Each marker `bytecode/<tag>/dists/<id>` lists `<source sha>\t<pyc size>`
/// lines; every listed pyc must exist with that size. Returns marker ids.
fn check_markers(store: &Path, tag: &str) -> BTreeSet<String> {
    let dir = store.join("bytecode").join(tag).join("dists");
    let mut ids = BTreeSet::new();
    let Ok(rd) = fs::read_dir(&dir) else {
        return ids;
    };
    let pycs = pycs(store, tag);
    for e in rd {
        let e = e.unwrap();
        let name = e.file_name().into_string().unwrap();
        if name.starts_with('.') {
            continue; // a marker being written (temporary name)
        }
        let text = fs::read_to_string(e.path()).unwrap();
        for line in text.lines() {
            // source sha256, pyc size, pyc sha256
            let fields: Vec<&str> = line.split('\t').collect();
            let [sha, size, pyc_sha] = fields[..] else {
                panic!("marker {name}: line {line:?} is not source\tsize\tsha256");
            };
            let pyc = pycs
                .get(sha)
                .unwrap_or_else(|| panic!("marker {name} lists {sha} but its pyc is missing"));
            let bytes = fs::read(pyc).unwrap();
            assert_eq!(
                bytes.len() as u64,
                size.parse::<u64>().unwrap(),
                "marker {name}: size of {sha}.pyc"
            );
            assert_eq!(
                sha256_hex(&bytes),
                pyc_sha,
                "marker {name}: hash of {sha}.pyc"
            );
        }
        ids.insert(name);
    }
    ids
}

/// Every object's content hashes to its name; returns how many there are.
fn check_objects_match_names(store: &Path) -> usize {
    let objs = objects(store);
    for (name, path) in &objs {
        let data = fs::read(path).unwrap();
        assert_eq!(
            &sha_hex(&data),
            name,
            "object {} is corrupt",
            path.display()
        );
    }
    objs.len()
}

// ---------------------------------------------------------------------------
// add / ls / info on valid wheels
// ---------------------------------------------------------------------------

/// The three kinds of wheel the store must take, and what it keeps of them.
#[test]
fn add_pure_data_and_extension_wheels_then_ls_info_and_layout() {
    let store = TempStore::new();
    let dir = wheel_dir(&store, "wheels");
    let (py, tag, cp) = (python(), cache_tag(), cp_tag());

    let pure = WheelBuilder::new("demo-pure", "1.0")
        .file(
            "demo_pure/__init__.py",
            "VALUE = 42\n\ndef main():\n    return 0\n",
        )
        .file("demo_pure/util.py", "def twice(x):\n    return 2 * x\n")
        .executable("demo_pure/run.sh", "#!/bin/sh\necho run\n")
        .entry_points("[console_scripts]\ndemo-pure = demo_pure:main\n");
    let data = WheelBuilder::new("demo-data", "2.0.1")
        .file("demo_data/__init__.py", "X = 'data'\n")
        .data("scripts", "demo-tool", "#!python\nprint('tool')\n")
        .data("data", "share/demo-data/readme.txt", "hello data scheme\n")
        .data("headers", "demo.h", "#define DEMO 1\n")
        .data("purelib", "demo_data_extra.py", "EXTRA = 1\n");
    let so_dir = store.dir.path().join("so");
    fs::create_dir_all(&so_dir).unwrap();
    let so = build_extension_module(&py, "demo_ext", &so_dir);
    let so_name = format!("demo_ext{}", ext_suffix(&py));
    let ext_tag = format!("{cp}-{cp}-linux_x86_64");
    let ext = WheelBuilder::new("demo-ext", "0.3")
        .tag(&ext_tag)
        .root_is_purelib(false)
        .file(&so_name, so.clone())
        .file("demo_ext_helpers.py", "def helper():\n    return 'h'\n")
        .data("purelib", "demo_ext_pure.py", "P = 1\n");
    let paths = [pure.write_to(&dir), data.write_to(&dir), ext.write_to(&dir)];
    let specs = [
        (
            "demo-pure",
            "1.0",
            "py3-none-any",
            "demo_pure-1.0.data",
            true,
        ),
        (
            "demo-data",
            "2.0.1",
            "py3-none-any",
            "demo_data-2.0.1.data",
            true,
        ),
        (
            "demo-ext",
            "0.3",
            ext_tag.as_str(),
            "demo_ext-0.3.data",
            false,
        ),
    ];

    let out = add_with_python(&store, &paths);
    assert_success(&out);
    let stdout = stdout_of(&out);
    for ((name, version, ..), path) in specs.iter().zip(&paths) {
        let id = expected_id(name, version, path);
        let line = format!("added {name} {version} ({id})");
        assert!(
            stdout.lines().any(|l| l == line),
            "no {line:?} in:\n{stdout}"
        );
    }

    // ls: NAME VERSION TAGS SIZE ID, sorted by name.
    let rows = ls(&store);
    let names: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(names, ["demo-data", "demo-ext", "demo-pure"], "{rows:?}");
    for (name, version, wtag, data_dir, purelib) in &specs {
        let path = &paths[specs.iter().position(|s| s.0 == *name).unwrap()];
        let row = rows.iter().find(|r| r[0] == *name).unwrap();
        assert_eq!(row.len(), 5, "{row:?}");
        let id = expected_id(name, version, path);
        assert_eq!(
            row[1..],
            [
                version.to_string(),
                wtag.to_string(),
                row[3].clone(),
                id.clone()
            ],
            "{row:?}"
        );
        let unpacked: u64 = read_zip(path).iter().map(|i| i.data.len() as u64).sum();
        let shown = parse_human(&row[3]);
        assert!(
            (shown - unpacked as f64).abs() <= unpacked as f64 * 0.01 + 0.5,
            "{name}: size column {:?} for {unpacked} bytes",
            row[3]
        );
        if unpacked < 1024 {
            assert_eq!(row[3], format!("{unpacked}B"));
        }

        // files.tsv: one row per file with scheme, mode, size, digest, path.
        let want = expected_rows(path, data_dir, *purelib);
        assert_eq!(files_tsv(&store.path, &id), want, "{name} files.tsv");

        // objects/<aa>/<sha>: the exact bytes, read-only.
        for item in read_zip(path) {
            let sha = sha_hex(&item.data);
            let obj = store.path.join("objects").join(&sha[..2]).join(&sha);
            assert_eq!(
                fs::read(&obj).unwrap(),
                item.data,
                "object of {}",
                item.name
            );
            let mode = fs::metadata(&obj).unwrap().mode() & 0o777;
            assert_eq!(mode, 0o444, "mode of object for {}", item.name);
        }

        // info NAME: id, tags, bytecode, every file.
        let out = store.store_cmd("info", [*name]);
        assert_success(&out);
        let info = stdout_of(&out);
        assert!(info.starts_with(&format!("{name} {version}\n")), "{info}");
        assert!(info.contains(&format!("  id: {id}\n")), "{info}");
        assert!(info.contains(&format!("  tags: {wtag}\n")), "{info}");
        assert!(info.contains(&format!("  bytecode: {tag}\n")), "{info}");
        let shown: BTreeSet<(String, String, u64, String)> = info
            .lines()
            .filter(|l| l.starts_with("    "))
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .filter(|f| {
                f.len() == 4 && ["purelib", "platlib", "scripts", "headers", "data"].contains(&f[0])
            })
            .map(|f| (f[0].into(), f[1].into(), f[2].parse().unwrap(), f[3].into()))
            .collect();
        let expected: BTreeSet<(String, String, u64, String)> = want
            .iter()
            .map(|r| (r.scheme.clone(), r.mode.clone(), r.size, r.path.clone()))
            .collect();
        assert_eq!(shown, expected, "{name} info files:\n{info}");
    }

    // Scheme and mode specifics, spelled out.
    let pure_id = expected_id("demo-pure", "1.0", &paths[0]);
    let data_id = expected_id("demo-data", "2.0.1", &paths[1]);
    let ext_id = expected_id("demo-ext", "0.3", &paths[2]);
    let find = |id: &str, path: &str| {
        files_tsv(&store.path, id)
            .into_iter()
            .find(|r| r.path == path)
            .unwrap_or_else(|| panic!("{id} has no {path}"))
    };
    assert_eq!(find(&pure_id, "demo_pure/run.sh").mode, "755");
    assert_eq!(find(&pure_id, "demo_pure/util.py").mode, "644");
    let tool = find(&data_id, "demo-tool");
    assert_eq!(
        (tool.scheme.as_str(), tool.mode.as_str()),
        ("scripts", "755")
    );
    assert_eq!(find(&data_id, "share/demo-data/readme.txt").scheme, "data");
    assert_eq!(find(&data_id, "demo.h").scheme, "headers");
    assert_eq!(find(&data_id, "demo_data_extra.py").scheme, "purelib");
    let so_row = find(&ext_id, &so_name);
    assert_eq!(so_row.scheme, "platlib");
    assert_eq!(so_row.sha, sha_hex(&so));
    assert_eq!(find(&ext_id, "demo_ext_pure.py").scheme, "purelib");
    assert_eq!(
        find(&ext_id, "demo_ext-0.3.dist-info/WHEEL").scheme,
        "platlib"
    );

    // Entry points are shown by info.
    let info = stdout_of(&store.store_cmd("info", ["demo-pure==1.0"]));
    assert!(
        info.contains("  entry points [console_scripts]:\n    demo-pure = demo_pure:main\n"),
        "{info}"
    );

    // The compiled extension in the store is the one we built, and loads.
    let so_obj = store
        .path
        .join("objects")
        .join(&so_row.sha[..2])
        .join(&so_row.sha);
    let load_dir = store.dir.path().join("load");
    fs::create_dir_all(&load_dir).unwrap();
    fs::copy(&so_obj, load_dir.join(&so_name)).unwrap();
    let out = Command::new(&py)
        .args([
            "-c",
            "import demo_ext; print(demo_ext.add(40, 2), demo_ext.MAGIC)",
        ])
        .env("PYTHONPATH", &load_dir)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap();
    assert_success(&out);
    assert_eq!(stdout_of(&out).trim(), format!("42 {EXT_MAGIC}"));

    assert_success(&verify(&store));
    assert!(tmp_entries(&store.path).is_empty());
}

/// A directory argument stands for every `*.whl` directly inside it.
#[test]
fn directory_argument_adds_every_wheel_in_it() {
    let store = TempStore::new();
    let dir = wheel_dir(&store, "wheels");
    let mut want = BTreeSet::new();
    for i in 0..4 {
        let name = format!("dir-pkg{i}");
        let path = WheelBuilder::new(&name, "1.0")
            .file(&format!("dir_pkg{i}/__init__.py"), format!("I = {i}\n"))
            .write_to(&dir);
        want.insert(expected_id(&name, "1.0", &path));
    }
    fs::write(dir.join("README.txt"), "not a wheel\n").unwrap();
    fs::write(dir.join("notes.whl.txt"), "not a wheel either\n").unwrap();
    // A wheel named on the command line next to the directory.
    let other = wheel_dir(&store, "other");
    let extra = WheelBuilder::new("dir-extra", "3.0")
        .file("dir_extra.py", "E = 1\n")
        .write_to(&other);
    want.insert(expected_id("dir-extra", "3.0", &extra));

    let out = store.add(&[dir.as_path(), extra.as_path()]);
    assert_success(&out);
    assert_eq!(
        stdout_of(&out)
            .lines()
            .filter(|l| l.starts_with("added "))
            .count(),
        5,
        "{}",
        stdout_of(&out)
    );
    assert_eq!(ls_ids(&store), want);

    // An empty directory is an error that says so, and adds nothing.
    let empty = wheel_dir(&store, "empty");
    let out = store.add(&[&empty]);
    assert!(!out.status.success());
    assert!(
        stderr_of(&out).contains("no *.whl files"),
        "{}",
        stderr_of(&out)
    );
    assert_eq!(ls_ids(&store), want);
}

// ---------------------------------------------------------------------------
// dedup and idempotence
// ---------------------------------------------------------------------------

#[test]
fn shared_files_are_stored_once_across_versions_and_packages() {
    let store = TempStore::new();
    let dir = wheel_dir(&store, "wheels");
    let base = |version: &str| {
        let mut b = WheelBuilder::new("dedup-pkg", version);
        for k in 0..12 {
            b = b.file(
                &format!("dedup_pkg/m{k}.py"),
                py_source(&format!("m{k}"), 3),
            );
        }
        b
    };
    let v1 = base("1.0").file("dedup_pkg/version.py", "V = '1.0'\n");
    let v2 = base("1.1")
        .file("dedup_pkg/version.py", "V = '1.1'\n")
        .file("dedup_pkg/new_in_1_1.py", "NEW = True\n");
    let (p1, p2) = (v1.write_to(&dir), v2.write_to(&dir));

    assert_success(&store.add(&[&p1]));
    let before = objects(&store.path);
    let d1 = wheel_digests(&p1);
    assert_eq!(before.keys().cloned().collect::<BTreeSet<_>>(), d1);

    assert_success(&store.add(&[&p2]));
    let after = objects(&store.path);
    let d2 = wheel_digests(&p2);
    let new: BTreeSet<String> = d2.difference(&d1).cloned().collect();
    // version.py, new_in_1_1.py, METADATA and RECORD differ; WHEEL and the
    // twelve modules are shared.
    assert_eq!(new.len(), 4, "new digests {new:?}");
    let added: BTreeSet<String> = after
        .keys()
        .filter(|k| !before.contains_key(*k))
        .cloned()
        .collect();
    assert_eq!(added, new, "only the changed files are new objects");
    assert_eq!(after.len(), d1.union(&d2).count());
    // Objects that existed are untouched (same inode: not rewritten).
    for (name, path) in &before {
        let a = fs::metadata(path).unwrap();
        let b = fs::metadata(&after[name]).unwrap();
        assert_eq!(
            (a.ino(), a.mtime(), a.mtime_nsec()),
            (b.ino(), b.mtime(), b.mtime_nsec())
        );
    }

    // Two different packages with one identical file: one object, named by
    // both indexes.
    let license = "Permission is hereby granted, free of charge, to any person\n".repeat(20);
    let a = WheelBuilder::new("dedup-a", "1.0")
        .file("dedup_a/__init__.py", "A = 1\n")
        .file("dedup_a/LICENSE.txt", license.clone())
        .write_to(&dir);
    let b = WheelBuilder::new("dedup-b", "7.0")
        .file("dedup_b/__init__.py", "B = 2\n")
        .file("dedup_b/LICENSE.txt", license.clone())
        .write_to(&dir);
    let count_before = objects(&store.path).len();
    assert_success(&store.add(&[&a, &b]));
    let all: BTreeSet<String> = [&p1, &p2, &a, &b]
        .iter()
        .flat_map(|p| wheel_digests(p))
        .collect();
    let objs = objects(&store.path);
    assert_eq!(objs.len(), all.len());
    let shared = sha_hex(license.as_bytes());
    assert!(objs.contains_key(&shared));
    let new_ab: BTreeSet<String> = wheel_digests(&a)
        .union(&wheel_digests(&b))
        .filter(|d| !d1.contains(*d) && !d2.contains(*d))
        .cloned()
        .collect();
    assert_eq!(objs.len() - count_before, new_ab.len());
    for (path, name, version, file) in [
        (&a, "dedup-a", "1.0", "dedup_a/LICENSE.txt"),
        (&b, "dedup-b", "7.0", "dedup_b/LICENSE.txt"),
    ] {
        let id = expected_id(name, version, path);
        let row = files_tsv(&store.path, &id)
            .into_iter()
            .find(|r| r.path == file)
            .unwrap();
        assert_eq!(row.sha, shared);
    }
    assert_success(&verify(&store));
}

#[test]
fn adding_the_same_wheel_twice_is_idempotent() {
    let store = TempStore::new();
    let dir = wheel_dir(&store, "wheels");
    let wheel = WheelBuilder::new("idem-pkg", "1.2.3")
        .file("idem_pkg/__init__.py", "X = 1\n")
        .data("scripts", "idem", "#!python\nprint(1)\n")
        .write_to(&dir);
    let id = expected_id("idem-pkg", "1.2.3", &wheel);
    let out = add_with_python(&store, &[&wheel]);
    assert_success(&out);
    assert_eq!(stdout_of(&out), format!("added idem-pkg 1.2.3 ({id})\n"));
    let before = snapshot(&store.path);

    for with_python in [false, true] {
        let out = if with_python {
            add_with_python(&store, &[&wheel])
        } else {
            store.add(&[&wheel])
        };
        assert_success(&out);
        assert_eq!(
            stdout_of(&out),
            format!("already present idem-pkg 1.2.3 ({id})\n")
        );
        assert_same_snapshot(
            &before,
            &snapshot(&store.path),
            "second add changed the store",
        );
        assert!(tmp_entries(&store.path).is_empty());
    }
    // A byte-identical copy under another directory is the same wheel.
    let copy_dir = wheel_dir(&store, "copy");
    let copy = copy_dir.join(wheel.file_name().unwrap());
    fs::copy(&wheel, &copy).unwrap();
    let out = store.add(&[&copy]);
    assert_success(&out);
    assert!(
        stdout_of(&out).starts_with("already present "),
        "{}",
        stdout_of(&out)
    );
    // (A new path may be remembered in the store's path cache `seen/`;
    // nothing else may change.)
    let outside_seen = |snap: BTreeMap<String, String>| -> BTreeMap<String, String> {
        snap.into_iter()
            .filter(|(k, _)| k != "seen" && !k.starts_with("seen/"))
            .collect()
    };
    assert_same_snapshot(
        &outside_seen(before),
        &outside_seen(snapshot(&store.path)),
        "adding a copy changed the store",
    );
    assert_eq!(ls_ids(&store), BTreeSet::from([id]));
}

// ---------------------------------------------------------------------------
// rejections
// ---------------------------------------------------------------------------

const DEMO_A: &str = "def f():\n    return 'a' * 100\n# padding padding\n";

/// A small valid wheel each rejection case starts from.
fn demo() -> WheelBuilder {
    WheelBuilder::new("demo-pkg", "1.0")
        .file("demo_pkg/__init__.py", "VALUE = 1\n")
        .file("demo_pkg/a.py", DEMO_A)
}

/// Adds a good wheel, then `bad` (file `bad`): the add must exit 1 with
/// `error: <file name>: <reason>` containing every keyword
/// (case-insensitive), and leave the store exactly as it was.
fn assert_rejected(store: &TempStore, bad: &Path, keywords: &[&str]) -> String {
    let dir = wheel_dir(store, "good");
    let good = WheelBuilder::new("good-pkg", "1.0")
        .file("good_pkg/__init__.py", "GOOD = True\n")
        .write_to(&dir);
    assert_success(&store.add(&[&good]));
    let good_id = expected_id("good-pkg", "1.0", &good);
    let before = snapshot(&store.path);

    let file_name = bad.file_name().unwrap().to_str().unwrap();
    for with_python in [false, true] {
        let out = if with_python {
            add_with_python(store, &[bad])
        } else {
            store.add(&[bad])
        };
        assert_eq!(
            out.status.code(),
            Some(1),
            "{file_name} was not rejected:\nstdout:\n{}\nstderr:\n{}",
            stdout_of(&out),
            stderr_of(&out)
        );
        let reason = rejection_reason(&out, file_name).unwrap_or_else(|| {
            panic!(
                "no `error: {file_name}: ...` line in stderr:\n{}",
                stderr_of(&out)
            )
        });
        for k in keywords {
            assert!(
                reason.to_lowercase().contains(&k.to_lowercase()),
                "{file_name}: reason {reason:?} lacks {k:?}"
            );
        }
        assert!(!stdout_of(&out).contains("added"), "{}", stdout_of(&out));
        assert_same_snapshot(
            &before,
            &snapshot(&store.path),
            "{file_name} changed the store",
        );
        assert_eq!(
            tmp_entries(&store.path),
            Vec::<String>::new(),
            "tmp/ not empty"
        );
    }
    assert_eq!(ls_ids(store), BTreeSet::from([good_id]));
    rejection_reason(&store.add(&[bad]), file_name).unwrap()
}

fn reject(builder: WheelBuilder, keywords: &[&str]) -> String {
    let store = TempStore::new();
    let dir = wheel_dir(&store, "bad");
    let bad = builder.write_to(&dir);
    assert_rejected(&store, &bad, keywords)
}

#[test]
fn rejects_record_hash_mismatch() {
    let reason = reject(
        demo().corrupt_hash("demo_pkg/a.py"),
        &["hash mismatch", "demo_pkg/a.py"],
    );
    // The message names the hash the content really has.
    assert!(reason.contains(&record_hash(DEMO_A.as_bytes())), "{reason}");
}

/// RECORD naming a digest that another entry of the wheel has, or that
/// is already an object in the store, does not let an entry skip its own
/// check: ingest writes such entries nowhere but still inflates and hashes
/// them.
#[test]
fn rejects_record_hash_that_names_a_known_object() {
    let lie = "not the content of liar/b.py";
    reject(
        WheelBuilder::new("liar", "1.0")
            .file("liar/a.py", lie)
            .file("liar/b.py", "B = 2\n")
            .corrupt_hash("liar/b.py"),
        &["hash mismatch", "liar/b.py"],
    );
    let store = TempStore::new();
    let dir = wheel_dir(&store, "known");
    let decoy = WheelBuilder::new("decoy", "1.0")
        .file("decoy/x.py", lie)
        .write_to(&dir);
    assert_success(&store.add(&[&decoy]));
    let before = objects(&store.path);
    let bad = WheelBuilder::new("liar", "1.0")
        .file("liar/b.py", "B = 2\n")
        .corrupt_hash("liar/b.py")
        .write_to(&dir);
    let out = add_with_python(&store, &[&bad]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    let reason = rejection_reason(&out, "liar-1.0-py3-none-any.whl").expect("error line");
    assert!(reason.contains("hash mismatch"), "{reason}");
    assert_eq!(
        ls_ids(&store),
        BTreeSet::from([expected_id("decoy", "1.0", &decoy)])
    );
    assert_eq!(objects(&store.path), before);
    assert!(tmp_entries(&store.path).is_empty());
}

#[test]
fn rejects_record_size_mismatch() {
    reject(
        demo().corrupt_size("demo_pkg/a.py"),
        &["size mismatch", "demo_pkg/a.py"],
    );
}

#[test]
fn rejects_file_missing_from_record() {
    reject(
        demo().omit_from_record("demo_pkg/a.py"),
        &["demo_pkg/a.py", "not listed in RECORD"],
    );
}

#[test]
fn rejects_record_row_for_missing_file() {
    reject(
        demo().record_extra_row("demo_pkg/ghost.py"),
        &["demo_pkg/ghost.py", "RECORD", "no such file"],
    );
}

#[test]
fn rejects_absolute_path() {
    reject(
        demo().raw_entry_recorded("/tmp/sitefs_evil.py", "EVIL = 1\n"),
        &["/tmp/sitefs_evil.py", "absolute"],
    );
}

#[test]
fn rejects_dotdot_escape() {
    reject(
        demo().raw_entry_recorded("demo_pkg/../../evil.py", "EVIL = 1\n"),
        &["demo_pkg/../../evil.py", ".."],
    );
}

#[test]
fn rejects_symlink_entry() {
    reject(
        demo().symlink_entry("demo_pkg/link.py", "a.py"),
        &["demo_pkg/link.py", "symlink"],
    );
}

#[test]
fn rejects_duplicate_entry_names() {
    reject(demo().duplicate_entry("demo_pkg/a.py"), &["duplicate"]);
}

#[test]
fn rejects_lying_declared_size() {
    let big = py_source("lying", 40);
    reject(
        demo()
            .file("demo_pkg/big.py", big)
            .lying_size("demo_pkg/big.py"),
        &["demo_pkg/big.py", "declare"],
    );
}

/// A 1 GiB file of zeros in a ~6.7 MB wheel (DEFLATE at ~159:1, every
/// header and RECORD row honest). Nothing in real wheels expands like that
/// (the store's own notes: real package files stay well under 100:1); it
/// must be refused before anything is unpacked.
#[test]
fn rejects_zip_bomb() {
    let store = TempStore::new();
    let dir = wheel_dir(&store, "bad");
    let bad = demo().bomb("demo_pkg/zeros.bin", 1 << 30).write_to(&dir);
    assert!(fs::metadata(&bad).unwrap().len() < 8 << 20);
    let t0 = Instant::now();
    assert_rejected(&store, &bad, &["demo_pkg/zeros.bin", "zip bomb"]);
    // Two rejections plus setup: a bound checked up front takes well under
    // a second; unpacking 1 GiB twice does not.
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
}

#[test]
fn rejects_missing_wheel_file() {
    reject(demo().no_wheel_file(), &["WHEEL", "missing"]);
}

#[test]
fn rejects_unsupported_wheel_version() {
    reject(
        demo().wheel_version("2.0"),
        &["Wheel-Version", "2.0", "not supported"],
    );
}

#[test]
fn rejects_two_dist_info_directories() {
    reject(
        demo().two_dist_info(),
        &[
            "more than one .dist-info",
            "demo_pkg-1.0.dist-info",
            "demo_pkg_twin-1.0.dist-info",
        ],
    );
}

#[test]
fn rejects_bad_file_name() {
    for name in ["demo_pkg-1.0.whl", "demo pkg-1.0-py3-none-any.whl"] {
        let store = TempStore::new();
        let bad = wheel_dir(&store, "bad").join(name);
        fs::write(&bad, demo().build()).unwrap();
        assert_rejected(&store, &bad, &["invalid wheel file name"]);
    }
}

#[test]
fn rejects_file_that_is_not_a_zip() {
    let store = TempStore::new();
    let dir = wheel_dir(&store, "bad");
    let bad = dir.join("notzip_pkg-1.0-py3-none-any.whl");
    fs::write(&bad, "this is a text file, not a zip archive\n".repeat(10)).unwrap();
    assert_rejected(&store, &bad, &["not a readable zip"]);
}

/// Bad wheels among good ones: the good ones are added, each bad one gets
/// its own error line, exit 1, and the store verifies.
#[test]
fn bad_wheels_do_not_stop_good_ones() {
    let store = TempStore::new();
    let dir = wheel_dir(&store, "wheels");
    let good1 = WheelBuilder::new("mixed-good1", "1.0")
        .file("mixed_good1.py", "G = 1\n")
        .write_to(&dir);
    let bad1 = WheelBuilder::new("mixed-bad1", "1.0")
        .file("mixed_bad1/__init__.py", "B = 1\n")
        .file("mixed_bad1/x.py", "X = 1\n")
        .corrupt_hash("mixed_bad1/x.py")
        .write_to(&dir);
    let good2 = WheelBuilder::new("mixed-good2", "1.0")
        .file("mixed_good2.py", "G = 2\n")
        .write_to(&dir);
    let bad2 = WheelBuilder::new("mixed-bad2", "1.0")
        .file("mixed_bad2.py", "B = 2\n")
        .raw_entry_recorded("../mixed_escape.py", "E = 1\n")
        .write_to(&dir);
    // As files, with --python, in an order mixing good and bad.
    let out = add_with_python(&store, &[&good1, &bad1, &good2, &bad2]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    let stdout = stdout_of(&out);
    for (name, path) in [("mixed-good1", &good1), ("mixed-good2", &good2)] {
        let line = format!("added {name} 1.0 ({})", expected_id(name, "1.0", path));
        assert!(stdout.lines().any(|l| l == line), "{stdout}");
    }
    let r1 = rejection_reason(&out, "mixed_bad1-1.0-py3-none-any.whl").expect("bad1 error");
    assert!(r1.contains("hash mismatch"), "{r1}");
    let r2 = rejection_reason(&out, "mixed_bad2-1.0-py3-none-any.whl").expect("bad2 error");
    assert!(r2.contains(".."), "{r2}");
    assert_eq!(
        ls_ids(&store),
        BTreeSet::from([
            expected_id("mixed-good1", "1.0", &good1),
            expected_id("mixed-good2", "1.0", &good2)
        ])
    );
    // No object of the bad wheels' content leaked into the store.
    let good: BTreeSet<String> = wheel_digests(&good1)
        .union(&wheel_digests(&good2))
        .cloned()
        .collect();
    assert_eq!(
        objects(&store.path)
            .keys()
            .cloned()
            .collect::<BTreeSet<_>>(),
        good
    );
    assert_success(&verify(&store));
    assert!(tmp_entries(&store.path).is_empty());

    // Same through a directory argument: still exit 1, goods "already present".
    let out = store.add(&[&dir]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stdout_of(&out)
            .lines()
            .filter(|l| l.starts_with("already present "))
            .count(),
        2,
        "{}",
        stdout_of(&out)
    );
    assert_eq!(
        stderr_of(&out)
            .lines()
            .filter(|l| l.starts_with("error: "))
            .count(),
        2
    );
}

// ---------------------------------------------------------------------------
// concurrency and crash safety
// ---------------------------------------------------------------------------

#[test]
fn concurrent_adds_with_overlapping_wheels() {
    let store = TempStore::new();
    let dir = wheel_dir(&store, "wheels");
    let tag = cache_tag();
    let wheels: Vec<PathBuf> = (0..30)
        .map(|i| many_file_wheel(&format!("conc-pkg{i:02}"), 12, 4).write_to(&dir))
        .collect();
    let spawn = |set: &[PathBuf]| {
        sitefs_command()
            .args(["store", "add", "--store"])
            .arg(&store.path)
            .args(["--python", &python()])
            .args(set)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let a = spawn(&wheels[0..20]);
    let b = spawn(&wheels[10..30]);
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert_success(&a);
    assert_success(&b);

    let want: BTreeSet<String> = wheels
        .iter()
        .enumerate()
        .map(|(i, p)| expected_id(&format!("conc-pkg{i:02}"), "1.0", p))
        .collect();
    let rows = ls(&store);
    assert_eq!(rows.len(), 30, "{rows:?}");
    assert_eq!(ls_ids(&store), want);
    // Each shared wheel was added by exactly one of the two processes.
    let (sa, sb) = (stdout_of(&a), stdout_of(&b));
    for (i, p) in wheels.iter().enumerate() {
        let id = expected_id(&format!("conc-pkg{i:02}"), "1.0", p);
        let added = [&sa, &sb]
            .iter()
            .filter(|s| {
                s.lines()
                    .any(|l| l.starts_with("added ") && l.ends_with(&format!("({id})")))
            })
            .count();
        assert_eq!(added, 1, "{id} added {added} times\nA:\n{sa}\nB:\n{sb}");
        let want_rows = expected_rows(p, &format!("conc_pkg{i:02}-1.0.data"), true);
        assert_eq!(files_tsv(&store.path, &id), want_rows);
    }
    let all: BTreeSet<String> = wheels.iter().flat_map(|p| wheel_digests(p)).collect();
    assert_eq!(objects(&store.path).len(), all.len());
    check_objects_match_names(&store.path);
    assert_eq!(check_markers(&store.path, &tag), want);
    check_pycs(&store.path, &tag);
    let out = verify(&store);
    assert_success(&out);
    assert!(
        tmp_entries(&store.path).is_empty(),
        "{:?}",
        tmp_entries(&store.path)
    );
}

/// When to SIGKILL an ingest.
#[derive(Debug, Clone, Copy)]
enum KillAt {
    /// This long after the first staging entry appears in tmp/.
    Staging(u64),
    Objects(usize),
    Pycs(usize),
    Dists(usize),
}

fn count_dir(path: &Path) -> usize {
    fs::read_dir(path).map_or(0, |rd| rd.count())
}

/// Files under `objects/` (cheap enough to poll).
fn count_objects(store: &Path) -> usize {
    fs::read_dir(store.join("objects")).map_or(0, |rd| {
        rd.filter_map(|e| e.ok())
            .map(|e| count_dir(&e.path()))
            .sum()
    })
}

/// The wheel set every crash round ingests.
struct CrashSet {
    dir: PathBuf,
    wheels: Vec<PathBuf>,
    /// Expected store id of each wheel, by index.
    ids: Vec<String>,
    n_objects: usize,
    tag: String,
}

/// What one crash round saw.
struct CrashRound {
    killed: bool,
    listed_after_kill: usize,
}

/// Starts an add of the whole set into a fresh store, SIGKILLs it at
/// `point`, checks the store the crash left, then re-runs the add and
/// checks the completed store.
fn crash_round(set: &CrashSet, point: KillAt) -> CrashRound {
    let ts = TempStore::new();
    let store = ts.path.clone();
    let tag = &set.tag;
    let mut child = sitefs_command()
        .args(["-q", "store", "add", "--store"])
        .arg(&store)
        .args(["--python", &python()])
        .arg(&set.dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut staged_at: Option<Instant> = None;
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        let hit = match point {
            KillAt::Staging(ms) => {
                if staged_at.is_none() && count_dir(&store.join("tmp")) > 0 {
                    staged_at = Some(Instant::now());
                }
                staged_at.is_some_and(|t| t.elapsed() >= Duration::from_millis(ms))
            }
            KillAt::Objects(n) => count_objects(&store) >= n,
            KillAt::Pycs(n) => pycs(&store, tag).len() >= n,
            KillAt::Dists(n) => count_dir(&store.join("dists")) >= n,
        };
        if hit {
            child.kill().unwrap();
            break;
        }
        assert!(Instant::now() < deadline, "{point:?} never reached");
        // Publishing is quick: poll the dists/ phase more tightly.
        std::thread::sleep(match point {
            KillAt::Dists(_) => Duration::from_micros(200),
            _ => Duration::from_millis(2),
        });
    }
    let status = child.wait().unwrap();
    let killed = status.signal() == Some(SIGKILL);
    assert!(
        killed || status.success(),
        "{point:?}: add failed: {status:?}"
    );

    // The store as the crash left it: verifies, lists only whole dists,
    // each of which loads, and holds no object or pyc with wrong content.
    assert_success(&verify(&ts));
    let listed = ls_ids(&ts);
    for (i, id) in set.ids.iter().enumerate() {
        if !listed.contains(id) {
            continue;
        }
        let out = ts.store_cmd("info", [format!("crash-pkg{i:02}==1.0")]);
        assert_success(&out);
        assert!(stdout_of(&out).contains(&format!("  id: {id}\n")));
        let want_rows = expected_rows(&set.wheels[i], &format!("crash_pkg{i:02}-1.0.data"), true);
        assert_eq!(files_tsv(&store, id), want_rows, "{point:?} {id}");
    }
    let all: BTreeSet<String> = set.ids.iter().cloned().collect();
    assert!(listed.is_subset(&all), "{point:?}: {listed:?}");
    check_objects_match_names(&store);
    check_pycs(&store, tag);
    let marked = check_markers(&store, tag);
    assert!(
        marked.is_subset(&listed),
        "{point:?}: marker without its dist"
    );

    // Re-running completes the job and removes the killed run's staging.
    let py = python();
    let out = ts.store_cmd(
        "add",
        [OsStr::new("--python"), OsStr::new(&py), set.dir.as_os_str()],
    );
    assert_success(&out);
    let reported = stdout_of(&out)
        .lines()
        .filter(|l| l.starts_with("added ") || l.starts_with("already present "))
        .count();
    assert_eq!(reported, set.wheels.len(), "{point:?}");
    assert_eq!(ls_ids(&ts), all, "{point:?}");
    assert_success(&verify(&ts));
    assert_eq!(check_objects_match_names(&store), set.n_objects);
    assert_eq!(check_markers(&store, tag), all, "{point:?}: markers");
    check_pycs(&store, tag);
    assert_eq!(
        tmp_entries(&store),
        Vec::<String>::new(),
        "{point:?}: stale staging left in tmp/"
    );
    CrashRound {
        killed,
        listed_after_kill: listed.len(),
    }
}

const SIGKILL: i32 = 9;

#[test]
fn sigkill_at_any_moment_leaves_a_valid_store() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("wheels");
    fs::create_dir_all(&dir).unwrap();
    let n_wheels = 30;
    let wheels: Vec<PathBuf> = (0..n_wheels)
        .map(|i| many_file_wheel(&format!("crash-pkg{i:02}"), 20, 6).write_to(&dir))
        .collect();
    let ids = wheels
        .iter()
        .enumerate()
        .map(|(i, p)| expected_id(&format!("crash-pkg{i:02}"), "1.0", p))
        .collect();
    let n_objects = wheels
        .iter()
        .flat_map(|p| wheel_digests(p))
        .collect::<BTreeSet<_>>()
        .len();
    let set = CrashSet {
        dir,
        wheels,
        ids,
        n_objects,
        tag: cache_tag(),
    };

    // Rounds are independent (one store each) and mostly wait on the
    // disk, so they run side by side.
    let points = [
        KillAt::Staging(0),
        KillAt::Objects(n_objects / 3),
        KillAt::Pycs(1),
        KillAt::Pycs(n_objects / 4),
        KillAt::Dists(1),
        KillAt::Dists(n_wheels / 2),
    ];
    let rounds: Vec<CrashRound> = std::thread::scope(|s| {
        let handles: Vec<_> = points
            .iter()
            .map(|&p| {
                let set = &set;
                s.spawn(move || crash_round(set, p))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let interrupted = rounds.iter().filter(|r| r.killed).count();
    assert!(
        interrupted >= points.len() / 2,
        "only {interrupted} of {} kills interrupted a running ingest",
        points.len()
    );
    assert!(
        rounds.iter().any(|r| r.killed && r.listed_after_kill == 0),
        "no kill landed before publishing"
    );
}

/// A tmpfs mounted for one test, unmounted (lazily) on drop.
struct TinyFs {
    path: PathBuf,
}

impl TinyFs {
    fn mount(path: &Path, size: &str) -> TinyFs {
        fs::create_dir_all(path).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mounting a tmpfs needs root: {}",
            stderr_of(&out)
        );
        TinyFs {
            path: path.to_path_buf(),
        }
    }

    fn resize(&self, size: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.path)
            .output()
            .unwrap();
        assert_success(&out);
    }
}

impl Drop for TinyFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// `n` deterministic, incompressible bytes.
fn noise(seed: &str, n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n + 32);
    let mut i = 0u64;
    while out.len() < n {
        out.extend_from_slice(&Sha256::digest(format!("{seed}-{i}").as_bytes()));
        i += 1;
    }
    out.truncate(n);
    out
}

/// The disk fills up while a wheel is unpacked: the add fails, and no
/// object in the store has content other than its name says (a truncated
/// object would be shared by every later wheel with that file). Once there
/// is room again, the same wheel adds cleanly and verifies.
#[test]
fn disk_full_during_add_publishes_no_truncated_object() {
    let tmp = tempfile::tempdir().unwrap();
    let tiny = TinyFs::mount(&tmp.path().join("fs"), "256k");
    let store = TempStore {
        dir: tempfile::tempdir().unwrap(),
        path: tiny.path.join("store"),
    };
    let small = WheelBuilder::new("full-small", "1.0")
        .file("full_small.py", "S = 1\n")
        .write_to(tmp.path());
    assert_success(&store.add(&[&small]));
    // Eight 40 kB files (each fits the writer's buffer) into ~250 kB free.
    let mut big = WheelBuilder::new("full-big", "1.0").file("full_big/__init__.py", "B = 1\n");
    for k in 0..8 {
        big = big.file(
            &format!("full_big/blob{k}.bin"),
            noise(&format!("blob{k}"), 40_000),
        );
    }
    let big = big.write_to(tmp.path());

    let out = store.add(&[&big]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout_of(&out));
    let reason = rejection_reason(&out, "full_big-1.0-py3-none-any.whl")
        .unwrap_or_else(|| panic!("no error line: {}", stderr_of(&out)));
    assert!(reason.contains("No space left"), "{reason}");
    assert_eq!(
        ls_ids(&store),
        BTreeSet::from([expected_id("full-small", "1.0", &small)])
    );
    check_objects_match_names(&store.path);
    assert!(tmp_entries(&store.path).is_empty());

    tiny.resize("8m");
    let out = store.add(&[&big]);
    assert_success(&out);
    assert_success(&verify(&store));
    check_objects_match_names(&store.path);
    assert_eq!(objects(&store.path).len(), {
        let mut all = wheel_digests(&small);
        all.extend(wheel_digests(&big));
        all.len()
    });
}

// ---------------------------------------------------------------------------
// bytecode
// ---------------------------------------------------------------------------

/// Copies a store pyc next to its source in a read-only tree and shows that
/// CPython loads it as is: no compile, no write.
#[test]
fn stored_pyc_is_unchecked_hash_and_imported_without_compiling() {
    let store = TempStore::new();
    let dir = wheel_dir(&store, "wheels");
    let tag = cache_tag();
    let source = "VALUE = 6 * 7\nNAME = __name__\n";
    let wheel = WheelBuilder::new("bc-pkg", "1.0")
        .file("bc_pkg/__init__.py", source)
        .write_to(&dir);
    assert_success(&add_with_python(&store, &[&wheel]));
    let id = expected_id("bc-pkg", "1.0", &wheel);
    let info = stdout_of(&store.store_cmd("info", ["bc-pkg"]));
    assert!(info.contains(&format!("  bytecode: {tag}\n")), "{info}");

    let sha = sha_hex(source.as_bytes());
    let obj = store.path.join("objects").join(&sha[..2]).join(&sha);
    let pyc = store
        .path
        .join("bytecode")
        .join(&tag)
        .join(&sha[..2])
        .join(format!("{sha}.pyc"));
    let pyc_bytes = fs::read(&pyc).unwrap_or_else(|e| panic!("{}: {e}", pyc.display()));
    let flags = u32::from_le_bytes(pyc_bytes[4..8].try_into().unwrap());
    assert_eq!(flags, 1, "PEP 552 unchecked hash-based pyc");
    let magic = python_eval(
        &python(),
        "import importlib.util as u; print(u.MAGIC_NUMBER.hex())",
    );
    assert_eq!(hex::encode(&pyc_bytes[..4]), magic);
    assert!(store
        .path
        .join("bytecode")
        .join(&tag)
        .join("dists")
        .join(&id)
        .is_file());

    let site = store.dir.path().join("site");
    let pkg = site.join("bc_pkg");
    let cache = pkg.join("__pycache__");
    fs::create_dir_all(&cache).unwrap();
    let src_path = pkg.join("__init__.py");
    let pyc_path = cache.join(format!("__init__.{tag}.pyc"));
    fs::copy(&obj, &src_path).unwrap();
    fs::copy(&pyc, &pyc_path).unwrap();
    for p in [&src_path, &pyc_path] {
        fs::set_permissions(p, fs::Permissions::from_mode(0o444)).unwrap();
    }
    for d in [&cache, &pkg, &site] {
        fs::set_permissions(d, fs::Permissions::from_mode(0o555)).unwrap();
    }
    let before = snapshot(&site);

    let out = Command::new(python())
        .args([
            "-v",
            "-c",
            "import bc_pkg; print(bc_pkg.VALUE, bc_pkg.__file__)",
        ])
        .env("PYTHONPATH", &site)
        .env_remove("PYTHONDONTWRITEBYTECODE")
        .env_remove("PYTHONPYCACHEPREFIX")
        .env_remove("PYTHONSAFEPATH")
        .current_dir(store.dir.path())
        .output()
        .unwrap();
    assert_success(&out);
    assert_eq!(stdout_of(&out).trim(), format!("42 {}", src_path.display()));
    let err = stderr_of(&out);
    let (pyc_s, src_s) = (
        pyc_path.display().to_string(),
        src_path.display().to_string(),
    );
    assert!(
        err.lines()
            .any(|l| l == format!("# {pyc_s} matches {src_s}")),
        "no `matches` line for the stored pyc:\n{err}"
    );
    assert!(
        err.lines()
            .any(|l| l == format!("# code object from '{pyc_s}'")),
        "pyc not used:\n{err}"
    );
    assert!(
        !err.lines()
            .any(|l| l == format!("# code object from {src_s}")
                || l.starts_with(&format!("# wrote {pyc_s}"))
                || l.contains("could not create")),
        "source was compiled:\n{err}"
    );
    assert_same_snapshot(&before, &snapshot(&site), "the import wrote into the tree");

    for d in [&site, &pkg, &cache] {
        fs::set_permissions(d, fs::Permissions::from_mode(0o755)).unwrap();
    }
}

/// One pyc per distinct site-packages source, shared across dists; no pyc
/// for scripts/data files or sources that do not compile; markers list
/// exactly each dist's pycs.
#[test]
fn identical_sources_compile_once_and_only_site_packages_sources() {
    let store = TempStore::new();
    let dir = wheel_dir(&store, "wheels");
    let tag = cache_tag();
    let shared = py_source("shared-between-dists", 5);
    let a = WheelBuilder::new("bc-a", "1.0")
        .file("bc_a/__init__.py", "A = 1\n")
        .file("bc_a/shared.py", shared.clone())
        .file("bc_a/copy_of_shared.py", shared.clone())
        .file("bc_a/py2only.py", "print 'this is python 2'\n")
        .data("scripts", "bc-a-tool.py", "print('script, not a module')\n")
        .data("data", "share/bc_a/example.py", "print('data file')\n")
        .write_to(&dir);
    let b = WheelBuilder::new("bc-b", "1.0")
        .tag(&format!("{}-{}-linux_x86_64", cp_tag(), cp_tag()))
        .root_is_purelib(false)
        .file("bc_b/__init__.py", "B = 2\n")
        .file("bc_b/shared.py", shared.clone())
        .data("purelib", "bc_b_pure.py", "P = 3\n")
        .write_to(&dir);
    let out = add_with_python(&store, &[&a, &b]);
    assert_success(&out);

    let compiled = |wheel: &Path, data_dir: &str, purelib: bool| -> BTreeSet<String> {
        expected_rows(wheel, data_dir, purelib)
            .into_iter()
            .filter(|r| {
                (r.scheme == "purelib" || r.scheme == "platlib")
                    && r.path.ends_with(".py")
                    && !r.path.ends_with("py2only.py")
            })
            .map(|r| r.sha)
            .collect()
    };
    let ca = compiled(&a, "bc_a-1.0.data", true);
    let cb = compiled(&b, "bc_b-1.0.data", false);
    assert_eq!(ca.len(), 2, "__init__ + shared (copy has the same digest)");
    assert_eq!(cb.len(), 3);
    let all: BTreeSet<String> = ca.union(&cb).cloned().collect();
    assert_eq!(all.len(), 4, "shared.py is one source");
    let found = pycs(&store.path, &tag);
    assert_eq!(found.keys().cloned().collect::<BTreeSet<_>>(), all);
    check_pycs(&store.path, &tag);

    for (wheel, name, srcs) in [(&a, "bc-a", &ca), (&b, "bc-b", &cb)] {
        let id = expected_id(name, "1.0", wheel);
        let marker = store
            .path
            .join("bytecode")
            .join(&tag)
            .join("dists")
            .join(&id);
        let listed: BTreeMap<String, u64> = fs::read_to_string(&marker)
            .unwrap()
            .lines()
            .map(|l| {
                let mut f = l.split('\t');
                let (s, n) = (f.next().unwrap(), f.next().unwrap());
                (s.to_string(), n.parse().unwrap())
            })
            .collect();
        let want: BTreeMap<String, u64> = srcs
            .iter()
            .map(|s| (s.clone(), fs::metadata(&found[s]).unwrap().len()))
            .collect();
        assert_eq!(listed, want, "marker of {id}");
    }
}

#[test]
fn compile_adds_bytecode_to_a_store_added_without_python() {
    let store = TempStore::new();
    let dir = wheel_dir(&store, "wheels");
    let tag = cache_tag();
    let a = WheelBuilder::new("late-a", "1.0")
        .file("late_a/__init__.py", "A = 1\n")
        .file("late_a/m.py", py_source("late", 3))
        .write_to(&dir);
    let b = WheelBuilder::new("late-b", "2.0")
        .file("late_b.py", "B = 2\n")
        .write_to(&dir);
    assert_success(&store.add(&[&a, &b]));
    for name in ["late-a", "late-b"] {
        let info = stdout_of(&store.store_cmd("info", [name]));
        assert!(info.contains("  bytecode: none\n"), "{info}");
    }
    assert!(pycs(&store.path, &tag).is_empty());

    let out = store.store_cmd("compile", ["--python", &python()]);
    assert_success(&out);
    assert_eq!(
        stdout_of(&out).trim(),
        "compiled bytecode for 2 distribution(s)"
    );
    for name in ["late-a", "late-b"] {
        let info = stdout_of(&store.store_cmd("info", [name]));
        assert!(info.contains(&format!("  bytecode: {tag}\n")), "{info}");
    }
    let want: BTreeSet<String> = [
        "A = 1\n".to_string(),
        py_source("late", 3),
        "B = 2\n".to_string(),
    ]
    .iter()
    .map(|s| sha_hex(s.as_bytes()))
    .collect();
    assert_eq!(
        pycs(&store.path, &tag)
            .keys()
            .cloned()
            .collect::<BTreeSet<_>>(),
        want
    );
    assert_eq!(check_pycs(&store.path, &tag), 3);
    assert_eq!(
        check_markers(&store.path, &tag),
        BTreeSet::from([
            expected_id("late-a", "1.0", &a),
            expected_id("late-b", "2.0", &b)
        ])
    );

    let before = snapshot(&store.path);
    let out = store.store_cmd("compile", ["--python", &python()]);
    assert_success(&out);
    assert_eq!(
        stdout_of(&out).trim(),
        "compiled bytecode for 0 distribution(s)"
    );
    assert_same_snapshot(&before, &snapshot(&store.path), "store changed");
}

// ---------------------------------------------------------------------------
// verify
// ---------------------------------------------------------------------------

#[test]
fn verify_names_corrupt_and_missing_objects_and_their_dists() {
    let store = TempStore::new();
    let dir = wheel_dir(&store, "wheels");
    let shared = "shared between both dists\n".repeat(5);
    let a = WheelBuilder::new("ver-a", "1.0")
        .file("ver_a/__init__.py", "A = 1\n")
        .file("ver_a/shared.txt", shared.clone())
        .write_to(&dir);
    let b = WheelBuilder::new("ver-b", "1.0")
        .file("ver_b/__init__.py", "B = 1\n")
        .file("ver_b/shared.txt", shared.clone())
        .file("ver_b/only_b.txt", "only in b\n")
        .write_to(&dir);
    assert_success(&store.add(&[&a, &b]));
    let (ida, idb) = (
        expected_id("ver-a", "1.0", &a),
        expected_id("ver-b", "1.0", &b),
    );

    let out = verify(&store);
    assert_success(&out);
    assert_eq!(stdout_of(&out), "", "clean store reports nothing");
    assert!(
        stderr_of(&out).contains("in 2 dists: 0 problem(s)"),
        "{}",
        stderr_of(&out)
    );

    // Corrupt the shared object in place, delete b's own one.
    let corrupt = sha_hex(shared.as_bytes());
    let corrupt_path = store
        .path
        .join("objects")
        .join(&corrupt[..2])
        .join(&corrupt);
    fs::set_permissions(&corrupt_path, fs::Permissions::from_mode(0o644)).unwrap();
    let mut bytes = fs::read(&corrupt_path).unwrap();
    bytes[3] ^= 0x20;
    fs::write(&corrupt_path, &bytes).unwrap();
    let actual = sha_hex(&bytes);
    let missing = sha_hex(b"only in b\n");
    fs::remove_file(
        store
            .path
            .join("objects")
            .join(&missing[..2])
            .join(&missing),
    )
    .unwrap();

    let out = verify(&store);
    assert_eq!(out.status.code(), Some(1), "{}", stdout_of(&out));
    let text = format!("{}{}", stdout_of(&out), stderr_of(&out));
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(&corrupt) || l.contains(&missing))
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    let corrupt_line = lines
        .iter()
        .find(|l| l.contains(&format!("corrupt object {corrupt}")))
        .unwrap_or_else(|| panic!("no corrupt line:\n{text}"));
    assert!(corrupt_line.contains(&actual), "{corrupt_line}");
    assert!(
        corrupt_line.contains(&ida) && corrupt_line.contains(&idb),
        "{corrupt_line}"
    );
    let missing_line = lines
        .iter()
        .find(|l| l.contains(&format!("missing object {missing}")))
        .unwrap_or_else(|| panic!("no missing line:\n{text}"));
    assert!(missing_line.contains(&idb), "{missing_line}");
    assert!(!missing_line.contains(&ida), "{missing_line}");
}

// ---------------------------------------------------------------------------
// store location
// ---------------------------------------------------------------------------

#[test]
fn missing_store_is_a_one_line_error() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nonexistent");
    for sub in [&["ls"][..], &["verify"], &["info", "x"]] {
        let out = sitefs_command()
            .args(["store", sub[0], "--store"])
            .arg(&missing)
            .args(&sub[1..])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{sub:?}");
        assert_eq!(stdout_of(&out), "");
        let err = stderr_of(&out);
        assert_eq!(err.lines().count(), 1, "{sub:?}: {err}");
        assert!(err.starts_with("error: "), "{err}");
        assert!(err.contains("does not exist"), "{err}");
        assert!(err.contains(&missing.display().to_string()), "{err}");
        assert!(!missing.exists(), "{sub:?} created the store");
    }
    // /nonexistent itself, as the issue spells it.
    let out = run_sitefs(["store", "ls", "--store", "/nonexistent"]);
    assert!(!out.status.success());
    assert_eq!(stderr_of(&out).lines().count(), 1);
    assert!(stderr_of(&out).contains("does not exist"));

    // A directory that is not a store is refused, not written into.
    let other = tmp.path().join("other");
    fs::create_dir_all(&other).unwrap();
    fs::write(other.join("precious.txt"), "mine").unwrap();
    let wheel = WheelBuilder::new("loc-pkg", "1.0")
        .file("loc_pkg.py", "L = 1\n")
        .write_to(tmp.path());
    let out = sitefs_command()
        .args(["store", "add", "--store"])
        .arg(&other)
        .arg(&wheel)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr_of(&out).contains("not a sitefs store"),
        "{}",
        stderr_of(&out)
    );
    assert_eq!(count_dir(&other), 1);
}

#[test]
fn store_flag_beats_sitefs_store_beats_xdg_data_home() {
    let tmp = tempfile::tempdir().unwrap();
    let (env_store, flag_store) = (tmp.path().join("env-store"), tmp.path().join("flag-store"));
    let xdg = tmp.path().join("xdg");
    let home = tmp.path().join("home");
    fs::create_dir_all(&home).unwrap();
    let wheel = |name: &str| {
        WheelBuilder::new(name, "1.0")
            .file(&format!("{}.py", name.replace('-', "_")), "X = 1\n")
            .write_to(tmp.path())
    };
    let (we, wf, wx) = (wheel("loc-env"), wheel("loc-flag"), wheel("loc-xdg"));
    let cmd = |env: Option<&Path>| {
        let mut c = sitefs_command();
        c.env("XDG_DATA_HOME", &xdg).env("HOME", &home);
        if let Some(e) = env {
            c.env("SITEFS_STORE", e);
        }
        c
    };
    let names = |out: &Output| -> Vec<String> {
        assert_success(out);
        stdout_of(out)
            .lines()
            .map(|l| l.split_whitespace().next().unwrap().to_string())
            .collect()
    };

    // $SITEFS_STORE alone.
    assert_success(
        &cmd(Some(&env_store))
            .args(["store", "add"])
            .arg(&we)
            .output()
            .unwrap(),
    );
    assert!(env_store.join("dists").is_dir());
    // --store wins over $SITEFS_STORE.
    let out = cmd(Some(&env_store))
        .args(["store", "add", "--store"])
        .arg(&flag_store)
        .arg(&wf)
        .output()
        .unwrap();
    assert_success(&out);
    let ls_env = cmd(Some(&env_store))
        .args(["store", "ls"])
        .output()
        .unwrap();
    assert_eq!(names(&ls_env), ["loc-env"]);
    let ls_flag = cmd(Some(&env_store))
        .args(["store", "ls", "--store"])
        .arg(&flag_store)
        .output()
        .unwrap();
    assert_eq!(names(&ls_flag), ["loc-flag"]);
    // Neither: $XDG_DATA_HOME/sitefs.
    assert_success(&cmd(None).args(["store", "add"]).arg(&wx).output().unwrap());
    let ls_xdg = cmd(None).args(["store", "ls"]).output().unwrap();
    assert_eq!(names(&ls_xdg), ["loc-xdg"]);
    assert!(xdg.join("sitefs").join("dists").is_dir());
    // An empty $SITEFS_STORE counts as unset.
    let ls_empty = cmd(Some(Path::new("")))
        .args(["store", "ls"])
        .output()
        .unwrap();
    assert_eq!(names(&ls_empty), ["loc-xdg"]);
    assert_eq!(count_dir(&home), 0, "nothing written under $HOME");
}

#[test]
fn binary_index_is_rebuilt_when_missing_and_checked_by_verify() {
    let store = TempStore::new();
    let dir = wheel_dir(&store, "wheels");
    let wheel = demo().write_to(&dir);
    assert_success(&add_with_python(&store, &[&wheel]));
    let id = expected_id("demo-pkg", "1.0", &wheel);
    let idx = store.path.join("dists").join(&id).join("files.idx");
    let written = fs::read(&idx).expect("ingest writes files.idx");

    // A store from before files.idx: the next reader adds it back.
    fs::remove_file(&idx).unwrap();
    assert_success(&verify(&store));
    assert_eq!(fs::read(&idx).unwrap(), written, "rebuilt files.idx");
    assert!(tmp_entries(&store.path).is_empty());

    // A files.idx that names another object than files.tsv does (first
    // row's digest, after the 32-byte header and the 8-byte size).
    let mut bad = written.clone();
    bad[40] ^= 0xff;
    fs::write(&idx, &bad).unwrap();
    let out = verify(&store);
    assert!(!out.status.success());
    let text = format!(
        "{}{}",
        stdout_of(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!(
            "damaged index of {id}: files.idx disagrees with files.tsv"
        )),
        "{text}"
    );
}
