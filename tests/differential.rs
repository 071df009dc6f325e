//! Differential test against pip: the same wheels, built here to cover
//! every installation rule, go into a venv through the real pip and into a
//! sitefs env, and the two must be indistinguishable.
//!
//! pip side: `python -m venv --without-pip P/venv` (the skeleton sitefs
//! writes; a plain venv would add pip and setuptools), then the system's
//! `python -m pip --python P/venv/bin/python install --no-index --no-deps
//! --find-links WHEELDIR NAME...`. By name from `--find-links`, as sitefs
//! reads a directory of wheels: a wheel *path* would make pip write
//! `direct_url.json`, which sitefs never does. sitefs side: `sitefs env
//! create S/venv --python PY WHEELDIR` with a fresh store. Both venvs have
//! paths of the same length, so sizes of files embedding them agree.
//!
//! Compared: every path below each venv (site-packages through the mount;
//! type, mode, bytes, symlink targets, each venv's own path replaced), and
//! the output of `pip list`, `pip freeze --all`, `pip show -f -v`, `pip
//! check`, an `importlib.metadata` dump, imports and every script in
//! `bin/`. The differences that are by design are in [`EXPECTED`], each
//! with its reason; each must actually occur (so the list stays honest),
//! and anything else fails the test.

mod common;

use common::*;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Output};

// ---------------------------------------------------------------------------
// The differences that are by design
// ---------------------------------------------------------------------------

/// Why an expected difference is expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Why {
    Manifest,
    PycLink,
    Installer,
    ScriptPyc,
}

/// Every difference between a pip venv and a sitefs env that is by design.
const EXPECTED: [(Why, &str); 4] = [
    (
        Why::Manifest,
        "sitefs.toml is the env's manifest; a pip venv has none",
    ),
    (
        Why::PycLink,
        "pycs: pip writes timestamp pycs at install; sitefs's are symlinks to the \
         unchecked-hash pycs compiled once in the store (-o pyc=link, so that importing \
         a module asks the mount nothing). Names must match, and each link must \
         resolve to a pyc of the same interpreter",
    ),
    (
        Why::Installer,
        "INSTALLER names the installer (`pip` / `sitefs`), and so does `pip show -v`; \
         RECORD's hash of INSTALLER follows",
    ),
    (
        Why::ScriptPyc,
        "pip byte-compiles every .py it installs, also `.data/scripts` files in bin/ \
         (bin/__pycache__/X.cpython-3Y.pyc, listed in RECORD, pip show -f and \
         importlib.metadata files); nothing imports them (bin/ is not on sys.path, a \
         script runs from source as __main__), so sitefs, like uv, writes none",
    ),
];

/// Counts of the expected differences seen, by reason.
#[derive(Debug, Default)]
struct Seen(BTreeMap<Why, usize>);

impl Seen {
    fn note(&mut self, why: Why) {
        *self.0.entry(why).or_default() += 1;
    }

    /// Panics unless every reason in [`EXPECTED`] was seen: a listed
    /// difference that no longer occurs must be removed from the list.
    fn assert_all_seen(&self) {
        for (why, text) in EXPECTED {
            assert!(
                self.0.contains_key(&why),
                "expected difference {why:?} did not occur; remove it from EXPECTED: {text}"
            );
        }
    }
}

/// A pyc (or `__pycache__` directory) outside site-packages, by its path
/// relative to the venv.
fn is_outside_pyc(rel: &str) -> bool {
    let site = format!("lib/python{}/site-packages/", py_xy());
    !rel.starts_with(&site) && (rel.ends_with("/__pycache__") || is_pyc(rel))
}

/// The same, as RECORD, `pip show -f` and importlib.metadata spell it
/// (relative to site-packages, so `../../../bin/__pycache__/x.pyc`), in
/// a line of their output.
fn mentions_outside_pyc(line: &str) -> bool {
    line.split_whitespace()
        .chain(line.split(','))
        .any(|w| w.starts_with("../") && w.contains("/__pycache__/") && w.ends_with(".pyc"))
}

// ---------------------------------------------------------------------------
// Trees
// ---------------------------------------------------------------------------

/// One path of a venv, normalized for comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    Dir { mode: u32 },
    File { mode: u32, bytes: Vec<u8> },
    Link(String),
}

impl Item {
    fn show(&self) -> String {
        match self {
            Item::Dir { mode } => format!("dir {mode:o}"),
            Item::Link(t) => format!("symlink -> {t}"),
            Item::File { mode, bytes } => {
                let head = String::from_utf8_lossy(&bytes[..bytes.len().min(400)]).into_owned();
                format!("file {mode:o}, {} bytes: {head:?}", bytes.len())
            }
        }
    }
}

/// Most entries a snapshot may hold before a readdir is taken to loop.
const MAX_ENTRIES: usize = 20_000;

/// Every path below `venv` (into its mount), its own path replaced by
/// `@VENV@`, RECORDs normalized by [`normalized_record`].
fn snapshot(venv: &Path) -> BTreeMap<String, Item> {
    let mut out = BTreeMap::new();
    let mut stack = vec![venv.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap_or_else(|e| panic!("readdir {}: {e}", dir.display())) {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(venv).unwrap().to_string_lossy().into_owned();
            let md = fs::symlink_metadata(&p).unwrap();
            let mode = md.mode() & 0o7777;
            let item = if md.file_type().is_symlink() {
                let target = fs::read_link(&p).unwrap();
                Item::Link(
                    String::from_utf8(without_venv(target.as_os_str().as_bytes(), venv)).unwrap(),
                )
            } else if md.is_dir() {
                stack.push(p.clone());
                Item::Dir { mode }
            } else {
                let bytes = fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
                let bytes = if rel.ends_with(".dist-info/RECORD") {
                    normalized_record(&bytes, p.parent().unwrap().parent().unwrap())
                } else {
                    bytes
                };
                Item::File {
                    mode,
                    bytes: without_venv(&bytes, venv),
                }
            };
            out.insert(rel, item);
            assert!(
                out.len() <= MAX_ENTRIES,
                "{} has too many entries",
                venv.display()
            );
        }
    }
    out
}

/// `bytes` with every occurrence of the venv's path replaced by `@VENV@`.
fn without_venv(bytes: &[u8], venv: &Path) -> Vec<u8> {
    let from = venv.as_os_str().as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(from) {
            out.extend_from_slice(b"@VENV@");
            i += from.len();
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

/// Splits one CSV line (RFC 4180 quoting, as Python's csv module writes).
fn csv_fields(line: &str) -> Vec<String> {
    let (mut fields, mut cur, mut quoted, mut chars) =
        (Vec::new(), String::new(), false, line.chars().peekable());
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    fields.push(cur);
    fields
}

/// A RECORD made comparable across venvs: every hashed row checked
/// against the file really at that path in its own venv and replaced by
/// `ok` (scripts embed the venv path, so their hashes differ), INSTALLER's
/// row blanked ([`Why::Installer`]) and rows of pycs outside site-packages
/// dropped ([`Why::ScriptPyc`], counted where the file is). Quoting and
/// line ends are kept: both must write the same ones.
fn normalized_record(bytes: &[u8], site: &Path) -> Vec<u8> {
    let text = String::from_utf8(bytes.to_vec()).expect("RECORD is UTF-8");
    let mut out = String::new();
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches(['\r', '\n']);
        let end = &line[body.len()..];
        if mentions_outside_pyc(body) {
            continue;
        }
        let f = csv_fields(body);
        assert_eq!(f.len(), 3, "RECORD row {body:?}");
        let check = if f[0].ends_with(".dist-info/INSTALLER") {
            "(installer)".to_string()
        } else if f[1].is_empty() {
            format!("unhashed,{}", f[2])
        } else {
            let real =
                fs::read(site.join(&f[0])).unwrap_or_else(|e| panic!("RECORD lists {}: {e}", f[0]));
            let want = (
                format!("sha256={}", record_hash(&real)),
                real.len().to_string(),
            );
            if (f[1].clone(), f[2].clone()) == want {
                "ok".into()
            } else {
                format!("WRONG {},{}", f[1], f[2])
            }
        };
        let quoted = body.starts_with('"');
        out.push_str(&format!(
            "{}{}|{check}{end}",
            if quoted { "(quoted)" } else { "" },
            f[0]
        ));
    }
    out.into_bytes()
}

/// Why `pip` and `ours` (None: absent) may differ at `rel`, if by design.
fn expected_tree_difference(rel: &str, pip: Option<&Item>, ours: Option<&Item>) -> Option<Why> {
    match (pip, ours) {
        (None, Some(_)) if rel == "sitefs.toml" => Some(Why::Manifest),
        (Some(Item::File { bytes: pip, .. }), Some(Item::Link(target))) if is_pyc(rel) => {
            let linked = fs::read(target).unwrap_or_else(|e| panic!("{rel} -> {target}: {e}"));
            assert_eq!(
                linked.get(..4),
                pip.get(..4),
                "{rel}: magic of the linked pyc"
            );
            Some(Why::PycLink)
        }
        (Some(_), None) if is_outside_pyc(rel) => Some(Why::ScriptPyc),
        (
            Some(Item::File {
                mode: a,
                bytes: pip,
            }),
            Some(Item::File {
                mode: b,
                bytes: ours,
            }),
        ) if a == b => {
            if rel.ends_with(".dist-info/INSTALLER") {
                assert_eq!(
                    (&pip[..], &ours[..]),
                    (&b"pip\n"[..], &b"sitefs\n"[..]),
                    "{rel}"
                );
                Some(Why::Installer)
            } else {
                None
            }
        }
        _ => None,
    }
}

fn is_pyc(rel: &str) -> bool {
    rel.contains("/__pycache__/") && rel.ends_with(".pyc")
}

/// Every difference between the two trees that is not by design.
fn tree_differences(pip_venv: &Path, ours_venv: &Path, seen: &mut Seen) -> Vec<String> {
    let (pip, ours) = (snapshot(pip_venv), snapshot(ours_venv));
    let mut out = Vec::new();
    for rel in pip.keys().chain(ours.keys()).collect::<BTreeSet<_>>() {
        let (a, b) = (pip.get(rel), ours.get(rel));
        if a == b {
            continue;
        }
        match expected_tree_difference(rel, a, b) {
            Some(why) => seen.note(why),
            None => out.push(format!(
                "{rel}\n    pip:    {}\n    sitefs: {}",
                a.map_or("absent".into(), Item::show),
                b.map_or("absent".into(), Item::show)
            )),
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Outputs
// ---------------------------------------------------------------------------

/// One side's output lines with its expected differences normalized.
fn expected_lines(text: &str, installer: &str, seen: &mut Seen) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        if installer == "pip" && mentions_outside_pyc(line) {
            seen.note(Why::ScriptPyc);
            continue;
        }
        if line.trim() == format!("Installer: {installer}") {
            seen.note(Why::Installer);
            out.push(line.replace(installer, "(installer)"));
            continue;
        }
        out.push(line.to_string());
    }
    out
}

/// The lines that differ between the two outputs of one command, beyond
/// the expected differences (empty when equal).
fn output_differences(what: &str, pip: &str, ours: &str, seen: &mut Seen) -> Vec<String> {
    let a = expected_lines(pip, "pip", seen);
    let b = expected_lines(ours, "sitefs", seen);
    if a == b {
        return Vec::new();
    }
    let mut out = vec![format!("{what}: outputs differ (- pip, + sitefs)")];
    let (sa, sb): (BTreeSet<_>, BTreeSet<_>) = (a.iter().collect(), b.iter().collect());
    out.extend(sa.difference(&sb).map(|l| format!("  - {l}")));
    out.extend(sb.difference(&sa).map(|l| format!("  + {l}")));
    if sa == sb {
        out.push("  (same lines, different order or count)".into());
    }
    out
}

/// Stdout and stderr of a command, exit code appended, the venv's path
/// replaced.
fn transcript(out: &Output, venv: &Path) -> String {
    let text = format!(
        "{}{}exit {:?}\n",
        stdout_of(out),
        stderr_of(out),
        out.status.code()
    );
    String::from_utf8(without_venv(text.as_bytes(), venv)).unwrap()
}

/// The system's pip run on `venv`'s interpreter (`pip --python`).
fn pip_on(venv: &Path, args: &[&str]) -> String {
    let mut cmd = clean(Command::new(real_python()));
    cmd.args(["-m", "pip", "--python"])
        .arg(venv.join("bin/python"))
        .args(args);
    transcript(&run_limited(cmd), venv)
}

/// What importlib.metadata says about every dist in the venv's
/// site-packages: metadata headers, requires, entry points, files (each
/// checked against the file really there), REQUESTED, direct_url.json,
/// and which dist provides which import name.
const METADATA_DUMP: &str = r#"
import hashlib, base64, sysconfig, importlib.metadata as md
def check(f):
    if f.hash is None:
        return "unhashed"
    data = f.locate().read_bytes()
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return "ok" if (f.hash.value, f.size) == (digest, len(data)) else "WRONG"
site = sysconfig.get_paths()["purelib"]
for d in sorted(md.distributions(path=[site]), key=lambda d: d.metadata["Name"]):
    print("==", d.metadata["Name"], d.version, d.name)
    for k, v in d.metadata.items():
        print("  meta", k, repr(v))
    for r in d.requires or []:
        print("  requires", r)
    for e in sorted(d.entry_points, key=lambda e: (e.group, e.name)):
        print("  entry point", e.group, e.name, e.value, e.module, e.attr, e.extras)
    for f in sorted(d.files or [], key=str):
        print("  file", f, "(installer)" if f.name == "INSTALLER" else check(f))
    print("  requested", repr(d.read_text("REQUESTED")), "direct_url", repr(d.read_text("direct_url.json")))
for name, dists in sorted(md.packages_distributions().items()):
    print("import", name, "from", sorted(dists))
"#;

/// Imports every module the wheels provide and prints what a user sees.
const IMPORTS: &str = r#"
import importlib.resources as res
import df_pure, df_pure.sub.mod, dfdata, dfdata_extra, dfns.alpha, dfns.beta, dfext, dflicensed
print(df_pure.VALUE, df_pure.sub.mod.f(), dfdata.cli.__name__, dfdata_extra.X)
print(dfns.__path__, dfns.alpha.A, dfns.beta.B, dfns.__spec__.origin)
print(dfext.add(2, 3), dfext.MAGIC, dfext.__file__)
print(sorted(p.name for p in res.files("df_pure").iterdir()))
print(res.files("df_pure").joinpath("données.txt").read_text(), dflicensed.__file__)
try:
    import df_pure.py2_only
except SyntaxError as e:
    print("SyntaxError", e.lineno)
"#;

// ---------------------------------------------------------------------------
// The wheels
// ---------------------------------------------------------------------------

/// A pure package with a subpackage, resources, an executable file, an
/// empty file, non-ASCII and comma/space names (RECORD quoting), a module
/// that does not compile (pip skips its pyc), requirements and extras.
fn pure_wheel() -> WheelBuilder {
    WheelBuilder::new("df-pure", "1.0")
        .metadata_extra(
            "Summary: pure package\nRequires-Dist: dfns-alpha>=1.0\n\
             Requires-Dist: dfext; extra == \"fast\"\nProvides-Extra: fast",
        )
        .file("df_pure/__init__.py", "VALUE = 'df-pure'\n")
        .file("df_pure/sub/__init__.py", "")
        .file("df_pure/sub/mod.py", "def f():\n    return 'sub.mod'\n")
        .file("df_pure/resource.json", "{\"a\": 1}\n")
        .file("df_pure/py.typed", "")
        .file("df_pure/données.txt", "non-ascii name\n")
        .file("df_pure/with space, and comma.txt", "quoted in RECORD\n")
        .file("df_pure/py2_only.py", "print 'python 2'\n")
        .executable("df_pure/run.sh", "#!/bin/sh\necho run\n")
}

/// Everything outside site-packages: `.data/scripts` (`#!python`,
/// `#!/bin/sh`, a `.py` script), `.data/headers`, `.data/data`,
/// `.data/purelib`, console and gui entry points (one with extras, one a
/// dotted attribute), and a non-script entry point group.
fn data_wheel() -> WheelBuilder {
    WheelBuilder::new("dfdata", "2.0")
        .file("dfdata/__init__.py", "from . import cli\n")
        .file(
            "dfdata/cli.py",
            "import sys\n\ndef main():\n    print('cli', sys.argv[1:])\n\n\
             class App:\n    @staticmethod\n    def run():\n        print('app.run')\n\n\
             def gui():\n    print('gui')\n",
        )
        .data("purelib", "dfdata_extra.py", "X = 'extra'\n")
        .data("scripts", "dfdata-py", "#!python\nimport sys\nprint('py script', sys.executable)\n")
        .data("scripts", "dfdata-sh", "#!/bin/sh\necho sh script\n")
        .data("scripts", "dfdata-tool.py", "#!python\nprint('tool.py')\n")
        .data("headers", "dfdata.h", "#define DFDATA 1\n")
        .data("data", "share/dfdata/data.txt", "data\n")
        .data("data", "etc/dfdata/dfdata.conf", "conf = 1\n")
        .entry_points(
            "[console_scripts]\ndfdata-cli = dfdata.cli:main\ndfdata-app = dfdata.cli:App.run\n\
             dfdata-extra = dfdata.cli:main [fast]\n\n[gui_scripts]\ndfdata-gui = dfdata.cli:gui\n\n\
             [dfdata.plugins]\nplug = dfdata.cli:main\n",
        )
}

/// One half of the PEP 420 namespace package `dfns`.
fn namespace_wheel(part: &str) -> WheelBuilder {
    WheelBuilder::new(&format!("dfns-{part}"), "1.0").file(
        &format!("dfns/{part}/__init__.py"),
        format!("{} = '{part}'\n", part[..1].to_uppercase()),
    )
}

/// A platlib wheel with a compiled extension module (mode 0755, as real
/// wheels ship them).
fn ext_wheel(build_dir: &Path) -> WheelBuilder {
    let so = build_extension_module(real_python(), "dfext", build_dir);
    WheelBuilder::new("dfext", "0.1")
        .tag(native_tag())
        .root_is_purelib(false)
        .executable(&format!("dfext{}", ext_suffix(real_python())), so)
}

/// A dist-info with more than metadata: licenses/ (PEP 639), AUTHORS,
/// top_level.txt.
fn licensed_wheel() -> WheelBuilder {
    let w = WheelBuilder::new("dflicensed", "3.0.post1").metadata_extra(
        "License-Expression: MIT\nLicense-File: LICENSE\nLicense-File: third_party/NOTICE",
    );
    let info = w.dist_info_dir();
    w.file("dflicensed.py", "'''a module'''\n")
        .file(&format!("{info}/licenses/LICENSE"), "MIT\n")
        .file(&format!("{info}/licenses/third_party/NOTICE"), "notice\n")
        .file(&format!("{info}/AUTHORS"), "someone\n")
        .file(&format!("{info}/top_level.txt"), "dflicensed\n")
}

/// Writes every wheel into `work`'s wheel dir; returns the names pip
/// installs.
fn write_wheels(work: &Work) -> Vec<&'static str> {
    let build = work.path("ext-build/dfext.c");
    work.wheel(&pure_wheel());
    work.wheel(&data_wheel());
    work.wheel(&namespace_wheel("alpha"));
    work.wheel(&namespace_wheel("beta"));
    work.wheel(&ext_wheel(build.parent().unwrap()));
    work.wheel(&licensed_wheel());
    vec![
        "df-pure",
        "dfdata",
        "dfns-alpha",
        "dfns-beta",
        "dfext",
        "dflicensed",
    ]
}

// ---------------------------------------------------------------------------
// The two venvs
// ---------------------------------------------------------------------------

/// `python -m venv --without-pip venv`, then the system pip installs
/// `names` into it from `wheels`, under umask 022 as sitefs assumes.
fn pip_venv(venv: &Path, wheels: &Path, names: &[&str]) {
    let mut cmd = clean(Command::new("sh"));
    cmd.arg("-c")
        .arg(
            "umask 022 && py=$1 venv=$2 && shift 2 && \"$py\" -m venv --without-pip \"$venv\" && \
              \"$py\" -m pip --python \"$venv/bin/python\" \"$@\"",
        )
        .arg("sh")
        .arg(real_python())
        .arg(venv)
        .args([
            "install",
            "-q",
            "--no-cache-dir",
            "--no-index",
            "--no-deps",
            "--find-links",
        ])
        .arg(wheels)
        .args(names);
    assert_success(&run_limited(cmd));
}

/// The programs in the pip venv's bin/ that the wheels put there.
fn installed_scripts(venv: &Path) -> Vec<String> {
    let skeleton = ["activate", "activate.csh", "activate.fish", "Activate.ps1"];
    names_in(&venv.join("bin"))
        .into_iter()
        .filter(|n| {
            !skeleton.contains(&n.as_str()) && !n.starts_with("python") && n != "__pycache__"
        })
        .collect()
}

/// Every program in `scripts`, run in `venv` with one argument.
fn run_scripts(venv: &Path, scripts: &[String]) -> String {
    scripts
        .iter()
        .map(|n| format!("$ {n} x\n{}", transcript(&venv_run(venv, n, &["x"]), venv)))
        .collect()
}

/// `pip show -f -v NAMES...`.
fn show_args<'a>(names: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["show", "-f", "-v"];
    args.extend(names);
    args
}

/// Every difference, beyond the expected ones, in what pip,
/// importlib.metadata, imports and the scripts report in the two venvs.
fn behaviour_differences(pip: &Path, ours: &Path, names: &[&str], seen: &mut Seen) -> Vec<String> {
    let mut diffs = Vec::new();
    let show = show_args(names);
    for args in [&["list"][..], &["freeze", "--all"], &show, &["check"]] {
        let what = format!("pip {}", args.join(" "));
        diffs.extend(output_differences(
            &what,
            &pip_on(pip, args),
            &pip_on(ours, args),
            seen,
        ));
    }
    let meta = |v: &Path| transcript(&vpy(v, METADATA_DUMP), v);
    diffs.extend(output_differences(
        "importlib.metadata",
        &meta(pip),
        &meta(ours),
        seen,
    ));
    let imports = |v: &Path| transcript(&vpy(v, IMPORTS), v);
    diffs.extend(output_differences(
        "imports",
        &imports(pip),
        &imports(ours),
        seen,
    ));
    let scripts = installed_scripts(pip);
    assert_eq!(scripts.len(), 7, "scripts in the pip venv: {scripts:?}");
    let (a, b) = (run_scripts(pip, &scripts), run_scripts(ours, &scripts));
    diffs.extend(output_differences("bin/ scripts", &a, &b, seen));
    diffs
}

#[test]
fn sitefs_env_matches_a_pip_venv_of_the_same_wheels() {
    let work = Work::new();
    let names = write_wheels(&work);
    let wheels = work.wheel_dir();
    // Same basename (activate scripts name it) and same path length.
    let pip = work.path("pip/venv");
    pip_venv(&pip, &wheels, &names);
    let env = work.create(&work.path("sfs/venv"), &[wheels.as_os_str()]);
    let ours = &env.path;

    let mut seen = Seen::default();
    let mut diffs = tree_differences(&pip, ours, &mut seen);
    diffs.extend(behaviour_differences(&pip, ours, &names, &mut seen));
    assert!(
        diffs.is_empty(),
        "the sitefs env differs from pip's venv:\n{}",
        diffs.join("\n")
    );
    seen.assert_all_seen();
    eprintln!("expected differences seen: {:?}", seen.0);

    // The comparison compared something: every kind of file is there.
    let listed = pip_on(ours, &show_args(&names));
    for want in [
        "../../../bin/dfdata-gui",
        "../../../include/site/python",
        "../../../share/dfdata/data.txt",
        "dflicensed-3.0.post1.dist-info/licenses/third_party/NOTICE",
        "dfns/beta/__init__.py",
        "df_pure/__pycache__/__init__.cpython-",
    ] {
        assert!(
            listed.contains(want),
            "pip show -f lists no {want}:\n{listed}"
        );
    }
}
