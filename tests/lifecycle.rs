//! The store's life over years: `store gc` (and its safety while ingests,
//! env creations and mounts run), pins, `verify --repair`, shared
//! root-owned stores used by another account, `adopt` and `materialize`.
//!
//! Everything is real: stores in temp dirs, wheels built here, FUSE
//! mounts, `python3` and pip processes. Races are driven by real
//! concurrent `sitefs` processes, with every iteration checked.

mod common;

use common::*;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A small pure dist whose module reports `value`.
fn small_wheel(name: &str, version: &str, value: &str) -> WheelBuilder {
    WheelBuilder::new(name, version)
        .file(
            &format!("{name}/__init__.py"),
            format!("VALUE = '{value}'\n"),
        )
        .file(
            &format!("{name}/shared.py"),
            "SHARED = 'same bytes in every dist'\n",
        )
}

fn store_cmd(work: &Work, sub: &str, args: &[&OsStr]) -> std::process::Output {
    let mut all: Vec<&OsStr> = vec![OsStr::new("store"), OsStr::new(sub)];
    all.push(OsStr::new("--store"));
    let store = work.store();
    all.push(store.as_os_str());
    all.extend(args);
    sitefs(all)
}

/// The dist ids in the store.
fn store_ids(work: &Work) -> BTreeSet<String> {
    fs::read_dir(work.store().join("dists"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.contains(".tmp"))
                .collect()
        })
        .unwrap_or_default()
}

fn ids_named(work: &Work, name: &str) -> Vec<String> {
    store_ids(work)
        .into_iter()
        .filter(|id| id.starts_with(&format!("{name}-")))
        .collect()
}

/// Every file under `dir`, recursively.
fn file_count(dir: &Path) -> usize {
    fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| {
                    if e.file_type().unwrap().is_dir() {
                        file_count(&e.path())
                    } else {
                        1
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

fn gc(work: &Work, args: &[&str]) -> String {
    let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    let out = store_cmd(work, "gc", &args);
    assert_success(&out);
    format!("{}{}", stdout_of(&out), stderr_of(&out))
}

fn verify_clean(work: &Work) {
    let out = store_cmd(work, "verify", &[]);
    assert_success(&out);
}

#[test]
fn gc_keeps_envs_mounts_and_pins_and_frees_everything_else() {
    let work = Work::new();
    let kept = work.wheel(&small_wheel("gckept", "1.0", "kept"));
    let loose = work.wheel(&small_wheel("gcloose", "1.0", "loose"));
    let pinned = work.wheel(&small_wheel("gcpinned", "2.0", "pinned"));
    let mounted = work.wheel(&small_wheel("gcmounted", "1.0", "mounted"));
    let py = real_python();
    let add = store_cmd(
        &work,
        "add",
        &[
            os("--python"),
            os(py),
            loose.as_os_str(),
            pinned.as_os_str(),
            mounted.as_os_str(),
        ],
    );
    assert_success(&add);
    let venv = work.create(&work.path("venv"), &[kept.as_os_str()]);
    assert_success(&store_cmd(&work, "pin", &[os("GCPinned==2.0")]));

    // A manifest mounted directly (fstab/autofs style), not an env.
    let manifest = work.path("m/mounted.toml");
    let new = manifest_new(&work, &manifest, os("gcmounted"));
    assert_success(&new);
    let mnt = work.path("m/mnt");
    fs::create_dir_all(&mnt).unwrap();
    let _mount = MountGuard(mnt.clone());
    assert_success(&sitefs([
        os("mount"),
        manifest.as_os_str(),
        mnt.as_os_str(),
    ]));

    let objects_before = file_count(&work.store().join("objects"));
    let dry = gc(&work, &["--dry-run"]);
    assert!(dry.contains("would remove gcloose-1.0-"), "{dry}");
    assert_eq!(ids_named(&work, "gcloose").len(), 1, "dry run deleted");
    assert_eq!(file_count(&work.store().join("objects")), objects_before);

    let report = gc(&work, &[]);
    assert!(report.contains("removed gcloose-1.0-"), "{report}");
    assert!(report.contains("freed"), "{report}");
    assert!(ids_named(&work, "gcloose").is_empty());
    for name in ["gckept", "gcpinned", "gcmounted"] {
        assert_eq!(ids_named(&work, name).len(), 1, "{name} was collected");
    }
    // gcloose's own module is gone; the file it shared with others stays.
    assert!(file_count(&work.store().join("objects")) < objects_before);
    let loose_init = sha256_hex(b"VALUE = 'loose'\n");
    assert!(!work
        .store()
        .join("objects")
        .join(&loose_init[..2])
        .join(&loose_init)
        .exists());
    find_object(&work.store(), b"SHARED = 'same bytes in every dist'\n");
    verify_clean(&work);
    assert_eq!(
        vpy_ok(&venv.path, "import gckept; print(gckept.VALUE)"),
        "kept\n"
    );
    let init = fs::read_to_string(mnt.join("gcmounted/__init__.py")).unwrap();
    assert_eq!(init, "VALUE = 'mounted'\n");

    // Unpin, unmount: both go at the next gc.
    assert_success(&store_cmd(&work, "unpin", &[os("gcpinned==2.0")]));
    assert_success(&sitefs([os("umount"), mnt.as_os_str()]));
    let report = gc(&work, &[]);
    assert!(report.contains("removed gcpinned-2.0-"), "{report}");
    assert!(report.contains("removed gcmounted-1.0-"), "{report}");
    assert_eq!(store_ids(&work).len(), 1 + pip_dists(&work), "{report}");
    verify_clean(&work);
}

/// Dists other than the test's own (none today: envs have no pip).
fn pip_dists(work: &Work) -> usize {
    store_ids(work)
        .iter()
        .filter(|id| !id.starts_with("gc"))
        .count()
}

/// `sitefs manifest new` naming one store dist, written to `manifest`.
fn manifest_new(work: &Work, manifest: &Path, spec: &OsStr) -> std::process::Output {
    sitefs([
        os("manifest"),
        os("new"),
        os("--store"),
        work.store().as_os_str(),
        os("--python"),
        os(real_python()),
        os("-o"),
        manifest.as_os_str(),
        spec,
    ])
}

/// Unmounts a plain mount on drop (also when the test panics).
struct MountGuard(PathBuf);

impl Drop for MountGuard {
    fn drop(&mut self) {
        if is_mounted(&self.0) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

#[test]
fn a_deleted_venv_that_is_still_mounted_keeps_its_files_until_unmounted() {
    let work = Work::new();
    let wheel = work.wheel(&small_wheel("gcorphan", "1.0", "orphan"));
    let venv = work.create(&work.path("venv"), &[wheel.as_os_str()]);
    let sp = venv.sp();
    // Delete the venv around the mount: everything but the mountpoint.
    for e in fs::read_dir(&venv.path).unwrap() {
        let p = e.unwrap().path();
        if p.file_name() == Some(OsStr::new("lib")) {
            continue;
        }
        if p.is_dir() {
            fs::remove_dir_all(&p).unwrap();
        } else {
            fs::remove_file(&p).unwrap();
        }
    }
    let report = gc(&work, &[]);
    assert!(
        report.contains("is gone"),
        "the vanished env is reported: {report}"
    );
    assert_eq!(ids_named(&work, "gcorphan").len(), 1, "{report}");
    let init = fs::read_to_string(sp.join("gcorphan/__init__.py")).unwrap();
    assert_eq!(init, "VALUE = 'orphan'\n");
    // The env root was dropped by that gc, and only by it.
    let roots = store_cmd(&work, "roots", &[]);
    assert!(!stdout_of(&roots).contains("env "), "{}", stdout_of(&roots));

    assert_success(&sitefs([os("umount"), sp.as_os_str()]));
    let report = gc(&work, &[]);
    assert!(report.contains("removed gcorphan-1.0-"), "{report}");
    assert_eq!(file_count(&work.store().join("objects")), 0, "{report}");
}

#[test]
fn gc_racing_ingests_env_creations_and_mounts_never_breaks_them() {
    let work = Work::new();
    let py = real_python();
    let deadline = Instant::now() + Duration::from_secs(150);
    let mut rounds = 0;
    // Every round: an env creation that ingests a new wheel, a mount of a
    // manifest over dists only that mount roots, and gc, all at once.
    // Afterwards the env imports, the mount serves the right bytes, and
    // the store verifies.
    while rounds < 12 && Instant::now() < deadline {
        rounds += 1;
        let value = format!("round-{rounds}");
        let env_wheel = work.wheel(&small_wheel("gcrace", &format!("{rounds}.0"), &value));
        let mount_wheel = work.wheel(&small_wheel("gcmnt", &format!("{rounds}.0"), &value));
        assert_success(&store_cmd(
            &work,
            "add",
            &[os("--python"), os(py), mount_wheel.as_os_str()],
        ));
        let manifest = work.path(&format!("r{rounds}/m.toml"));
        assert_success(&manifest_new(
            &work,
            &manifest,
            os(&format!("gcmnt=={rounds}.0")),
        ));
        let mnt = work.path(&format!("r{rounds}/mnt"));
        fs::create_dir_all(&mnt).unwrap();
        let _mount = MountGuard(mnt.clone());
        let venv_path = work.path(&format!("r{rounds}/venv"));
        let venv = Venv::guard(&venv_path);

        let mut gcs: Vec<std::process::Child> = (0..2)
            .map(|_| {
                sitefs_command()
                    .args(["store", "gc", "-q", "--store"])
                    .arg(work.store())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let mount = sitefs_command()
            .arg("mount")
            .arg(&manifest)
            .arg(&mnt)
            .output()
            .unwrap();
        let create = work.create_cmd(&venv_path, &[env_wheel.as_os_str()]);
        for g in &mut gcs {
            let status = g.wait().unwrap();
            assert!(status.success(), "gc failed in round {rounds}");
        }
        // Mount may legitimately fail only if gc collected its dist before
        // the mount started (the dist was rooted by nothing); then it
        // must say so. Otherwise it must serve the right bytes.
        if mount.status.success() {
            let init = fs::read_to_string(mnt.join("gcmnt/__init__.py")).unwrap();
            assert_eq!(init, format!("VALUE = '{value}'\n"), "round {rounds}");
            let shared = fs::read_to_string(mnt.join("gcmnt/shared.py")).unwrap();
            assert_eq!(shared, "SHARED = 'same bytes in every dist'\n");
        } else {
            let err = stderr_of(&mount);
            assert!(err.contains("is not in the store"), "round {rounds}: {err}");
        }
        assert_success(&create);
        let got = vpy_ok(&venv.path, "import gcrace; print(gcrace.VALUE)");
        let got = got.trim();
        assert_eq!(got, value, "round {rounds}");
        verify_clean(&work);
        // One more gc while both are live: they keep their dists.
        gc(&work, &["-q"]);
        if mount.status.success() {
            let init = fs::read_to_string(mnt.join("gcmnt/__init__.py")).unwrap();
            assert_eq!(init, format!("VALUE = '{value}'\n"));
            assert_success(&sitefs([os("umount"), mnt.as_os_str()]));
        }
        assert_eq!(
            vpy_ok(&venv.path, "import gcrace.shared as s; print(s.SHARED)").trim(),
            "same bytes in every dist"
        );
        verify_clean(&work);
        drop(venv);
    }
    assert!(rounds >= 3, "only {rounds} rounds ran in the time limit");
    // Everything was unmounted and removed: a last gc empties the store.
    gc(&work, &["-q"]);
    assert!(store_ids(&work).is_empty(), "{:?}", store_ids(&work));
    let locks = fs::read_dir(work.store().join("locks/users"))
        .unwrap()
        .count();
    assert_eq!(locks, 0, "a use mark was left behind");
}

#[test]
fn verify_repair_moves_corrupt_objects_aside_and_re_adding_the_wheel_restores_the_dist() {
    let work = Work::new();
    let wheel = work.wheel(&small_wheel("gcrepair", "1.0", "original"));
    let venv = work.create(&work.path("venv"), &[wheel.as_os_str()]);
    let object = find_object(&work.store(), b"VALUE = 'original'\n");
    fs::set_permissions(&object, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(&object, b"VALUE = 'tampered'\n").unwrap();

    let out = store_cmd(&work, "verify", &[os("--repair")]);
    assert!(!out.status.success());
    let text = stdout_of(&out);
    assert!(text.contains("corrupt object"), "{text}");
    assert!(text.contains("moved 1 damaged object"), "{text}");
    let wheel_name = wheel.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        text.contains(&format!(
            "add it again with `sitefs store add {wheel_name}`"
        )),
        "{text}"
    );
    assert!(!object.exists());
    let quarantined: Vec<String> = fs::read_dir(work.store().join("quarantine"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let hex = object.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        quarantined.iter().any(|n| n.starts_with(&hex)),
        "{quarantined:?}"
    );
    assert!(ids_named(&work, "gcrepair").is_empty());
    verify_clean(&work);

    assert_success(&store_cmd(&work, "add", &[wheel.as_os_str()]));
    verify_clean(&work);
    assert_eq!(fs::read(&object).unwrap(), b"VALUE = 'original'\n");
    drop(venv);
}

/// The store's pyc of the source holding exactly `source`, for the test
/// interpreter.
fn find_pyc(store: &Path, source: &[u8]) -> PathBuf {
    let tag = python_eval(
        real_python(),
        "import sys; print(sys.implementation.cache_tag)",
    );
    let name = format!("{}.pyc", sha256_hex(source));
    let dir = store.join("bytecode").join(tag);
    fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path().join(&name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("no {name} under {}", dir.display()))
}

/// The pycs are what runs (unchecked-hash, linked into the store), so
/// verify checks them against the hash recorded at compile time: a flipped
/// byte and a valid pyc of other code are both found, and `--repair`
/// compiles them again with the interpreter the store knows for the tag.
#[test]
fn verify_checks_the_pycs_that_run_and_repair_compiles_them_again() {
    let work = Work::new();
    let source = b"VALUE = 'compiled'\n";
    let w = WheelBuilder::new("pycv", "1.0").file("pycv/__init__.py", source.to_vec());
    let venv = work.create(&work.path("venv"), &[work.wheel(&w).as_os_str()]);
    let pyc = find_pyc(&work.store(), source);
    let good = fs::read(&pyc).unwrap();
    verify_clean(&work);
    let other = {
        // A valid unchecked-hash pyc, of other code.
        let dir = work.path("other/x").parent().unwrap().to_path_buf();
        fs::write(dir.join("m.py"), "VALUE = 'other code'\n").unwrap();
        let code = format!(
            "import py_compile as p; p.compile({:?}, cfile={:?}, invalidation_mode=p.PycInvalidationMode.UNCHECKED_HASH, doraise=True)",
            dir.join("m.py").display().to_string(),
            dir.join("m.pyc").display().to_string()
        );
        python_eval(real_python(), &code);
        fs::read(dir.join("m.pyc")).unwrap()
    };
    let mut flipped = good.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x01;
    for (what, bytes) in [("a flipped byte", flipped), ("a pyc of other code", other)] {
        fs::set_permissions(&pyc, fs::Permissions::from_mode(0o644)).unwrap();
        fs::write(&pyc, &bytes).unwrap();
        let out = store_cmd(&work, "verify", &[]);
        assert!(!out.status.success(), "{what}: verify passed");
        let text = stdout_of(&out);
        assert!(
            text.contains(&format!("damaged pyc of {}", sha256_hex(source))),
            "{what}: {text}"
        );
        let out = store_cmd(&work, "verify", &[os("--repair")]);
        let text = stdout_of(&out);
        assert!(
            text.contains("compiled the damaged pycs for"),
            "{what}: {text}"
        );
        verify_clean(&work);
        assert_eq!(fs::read(&pyc).unwrap(), good, "{what}: recompiled bytes");
    }
    assert_eq!(
        vpy_ok(&venv.path, "import pycv; print(pycv.VALUE)"),
        "compiled\n"
    );
}

/// The store object holding exactly `bytes`.
fn find_object(store: &Path, bytes: &[u8]) -> PathBuf {
    let hex = sha256_hex(bytes);
    let p = store.join("objects").join(&hex[..2]).join(&hex);
    assert!(p.is_file(), "no object {hex}");
    p
}

/// Makes /dev/fuse usable by everyone (0666) until dropped.
struct DevFuseOpen(Option<u32>);

impl DevFuseOpen {
    fn grant() -> DevFuseOpen {
        let mode = fs::metadata("/dev/fuse").unwrap().permissions().mode() & 0o7777;
        if mode & 0o006 == 0o006 {
            return DevFuseOpen(None);
        }
        fs::set_permissions("/dev/fuse", fs::Permissions::from_mode(0o666)).unwrap();
        DevFuseOpen(Some(mode))
    }
}

impl Drop for DevFuseOpen {
    fn drop(&mut self) {
        if let Some(mode) = self.0 {
            let _ = fs::set_permissions("/dev/fuse", fs::Permissions::from_mode(mode));
        }
    }
}

/// Run `sitefs` as another account (uid/gid 65534, "nobody").
fn as_nobody(args: &[&OsStr]) -> std::process::Output {
    use std::os::unix::process::CommandExt;
    let mut cmd = sitefs_command();
    cmd.args(args)
        .uid(65534)
        .gid(65534)
        .env("HOME", "/nonexistent");
    run_limited(cmd)
}

#[test]
fn another_user_mounts_from_a_root_owned_store_but_cannot_change_it() {
    let work = Work::new();
    // Unprivileged FUSE needs /dev/fuse open to the user, as distributions
    // ship it; containers often make it 0600. Grant it for this test.
    let _dev = DevFuseOpen::grant();
    let top = work.root.clone();
    // The test dir must be reachable by "nobody"; the store stays root's.
    let mut p = top.clone();
    loop {
        let mode = fs::metadata(&p).unwrap().permissions().mode();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode | 0o711)).unwrap();
        if !p.pop() || p == Path::new("/") {
            break;
        }
    }
    let wheel = work.wheel(&small_wheel("gcshared", "1.0", "shared"));
    let py = real_python();
    assert_success(&store_cmd(
        &work,
        "add",
        &[os("--python"), os(py), wheel.as_os_str()],
    ));
    assert_eq!(fs::metadata(work.store()).unwrap().uid(), 0);
    // Objects are read-only to everybody, their directories root's.
    let object = find_object(&work.store(), b"VALUE = 'shared'\n");
    assert_eq!(fs::metadata(&object).unwrap().mode() & 0o222, 0);

    let user_dir = work.path("user");
    fs::create_dir_all(&user_dir).unwrap();
    std::os::unix::fs::chown(&user_dir, Some(65534), Some(65534)).unwrap();
    // The manifest is written by root (probing root's interpreter) and
    // handed over: mounting needs no interpreter.
    let manifest = user_dir.join("m.toml");
    let new = manifest_new(&work, &manifest, os("gcshared"));
    assert_success(&new);
    std::os::unix::fs::chown(&manifest, Some(65534), Some(65534)).unwrap();
    let mnt = user_dir.join("mnt");
    let _mount = MountGuard(mnt.clone());
    std::fs::create_dir(&mnt).unwrap();
    std::os::unix::fs::chown(&mnt, Some(65534), Some(65534)).unwrap();
    let mount = as_nobody(&[os("mount"), manifest.as_os_str(), mnt.as_os_str()]);
    assert_success(&mount);
    let line = mountinfo_entries(&mnt).join("\n");
    assert!(line.contains("user_id=65534"), "{line}");
    // Only its owner may look inside (no allow_other/allow_root).
    let cat = {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new("cat");
        cmd.arg(mnt.join("gcshared/__init__.py"))
            .uid(65534)
            .gid(65534);
        run_limited(cmd)
    };
    assert_success(&cat);
    assert_eq!(stdout_of(&cat), "VALUE = 'shared'\n");
    // The mount is a gc root even though its owner cannot write the store.
    let report = gc(&work, &[]);
    assert!(!report.contains("removed gcshared"), "{report}");

    // Adding a wheel needs write access: one clear line, nothing written.
    let other = work.wheel(&small_wheel("gcother", "1.0", "other"));
    let before = file_count(&work.store());
    let add = as_nobody(&[
        os("store"),
        os("add"),
        os("--store"),
        work.store().as_os_str(),
        other.as_os_str(),
    ]);
    let err = failed_stderr(&add);
    assert!(err.contains("is read-only for you"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(file_count(&work.store()), before);
    let umount = as_nobody(&[os("umount"), mnt.as_os_str()]);
    assert_success(&umount);

    // The wheel *file* the store already holds is as good as its name:
    // creating an env from it writes nothing into the store.
    let venv = Venv::guard(&user_dir.join("venv"));
    let objects = file_count(&work.store().join("objects"));
    let create = as_nobody(&[
        os("env"),
        os("create"),
        venv.path.as_os_str(),
        os("--store"),
        work.store().as_os_str(),
        os("--python"),
        os("/usr/bin/python3"),
        wheel.as_os_str(),
    ]);
    assert_success(&create);
    assert_eq!(file_count(&work.store().join("objects")), objects);
    let import = {
        use std::os::unix::process::CommandExt;
        let mut cmd = clean(Command::new(venv.path.join("bin/python")));
        cmd.args(["-c", "import gcshared; print(gcshared.VALUE)"])
            .uid(65534)
            .gid(65534);
        run_limited(cmd)
    };
    assert_success(&import);
    assert_eq!(stdout_of(&import), "shared\n");
    assert_success(&as_nobody(&[os("env"), os("rm"), venv.path.as_os_str()]));
}

/// A pip-made venv of `wheels` (pip's own RECORDs, scripts, pycs),
/// unmounted and removed when dropped.
fn pip_venv(work: &Work, name: &str, wheels: &[PathBuf]) -> Venv {
    let venv = Venv::guard(&work.path(name));
    let mut mk = clean(Command::new(real_python()));
    mk.args(["-m", "venv"]).arg(&venv.path);
    assert_success(&run_limited(mk));
    let mut pip = clean(Command::new(venv.path.join("bin/python")));
    pip.args(["-m", "pip", "install", "-q", "--no-index", "--no-deps"])
        .args(wheels);
    assert_success(&run_limited(pip));
    venv
}

fn pip_list(venv: &Path) -> String {
    let out = venv_run(venv, "python", &["-m", "pip", "list", "--format=freeze"]);
    assert_success(&out);
    stdout_of(&out)
}

/// Bytes of real files under `dir`, not crossing into mounts (`du -x`).
fn disk_bytes(dir: &Path) -> u64 {
    let dev = fs::metadata(dir).unwrap().dev();
    let mut total = 0;
    for e in fs::read_dir(dir).unwrap().filter_map(|e| e.ok()) {
        let m = fs::symlink_metadata(e.path()).unwrap();
        if m.dev() != dev {
            continue;
        }
        total += if m.is_dir() {
            disk_bytes(&e.path())
        } else {
            m.len()
        };
    }
    total
}

fn adopt_wheels(work: &Work) -> Vec<PathBuf> {
    let tool = WheelBuilder::new("adtool", "1.0")
        .file(
            "adtool/__init__.py",
            "def main():\n    print('adtool ran')\n",
        )
        .file(
            "adtool/big.py",
            format!("DATA = {:?}\n", "x".repeat(200_000)),
        )
        .data("data", "share/adtool/notes.txt", "notes\n")
        .data("scripts", "adscript", "#!python\nprint('adscript ran')\n")
        .entry_points("[console_scripts]\nadtool = adtool:main\n");
    vec![
        work.wheel(&tool),
        work.wheel(&small_wheel("adlib", "2.0", "adlib")),
    ]
}

#[test]
fn adopt_turns_a_pip_venv_into_a_mount_and_materialize_turns_it_back() {
    let work = Work::new();
    let wheels = adopt_wheels(&work);
    let venv = pip_venv(&work, "venv", &wheels);
    let before = pip_list(&venv.path);
    let disk_before = disk_bytes(&venv.path);

    let dry = sitefs([
        os("adopt"),
        os("--dry-run"),
        os("--store"),
        work.store().as_os_str(),
        venv.path.as_os_str(),
    ]);
    assert_success(&dry);
    assert!(
        stdout_of(&dry).contains("would adopt"),
        "{}",
        stdout_of(&dry)
    );
    assert!(!work.store().exists(), "a dry run created the store");
    assert!(!is_mounted(&venv.sp()));

    let adopt = sitefs([
        os("adopt"),
        os("--store"),
        work.store().as_os_str(),
        venv.path.as_os_str(),
    ]);
    assert_success(&adopt);
    assert!(is_mounted(&venv.sp()));
    assert_eq!(pip_list(&venv.path), before);
    let run = venv_run(&venv.path, "adtool", &[]);
    assert_success(&run);
    assert_eq!(stdout_of(&run), "adtool ran\n");
    assert_success(&venv_run(&venv.path, "adscript", &[]));
    assert_eq!(
        vpy_ok(
            &venv.path,
            "import adlib, adtool.big; print(adlib.VALUE, len(adtool.big.DATA))"
        ),
        "adlib 200000\n"
    );
    let disk_after = disk_bytes(&venv.path);
    assert!(
        disk_after * 10 < disk_before,
        "the venv still holds {disk_after} of {disk_before} bytes"
    );
    // Adopting a second copy stores nothing new: same dists, same ids.
    let objects = file_count(&work.store().join("objects"));
    let ids = store_ids(&work);
    let twin = pip_venv(&work, "twin", &wheels);
    assert_success(&sitefs([
        os("adopt"),
        os("--store"),
        work.store().as_os_str(),
        twin.path.as_os_str(),
    ]));
    assert_eq!(store_ids(&work), ids);
    assert_eq!(file_count(&work.store().join("objects")), objects);
    assert_eq!(pip_list(&twin.path), before);
    drop(twin);

    let mat = sitefs([os("env"), os("materialize"), venv.path.as_os_str()]);
    assert_success(&mat);
    assert!(!is_mounted(&venv.sp()));
    assert!(!venv.path.join("sitefs.toml").exists());
    assert_eq!(pip_list(&venv.path), before);
    assert_eq!(
        stdout_of(&venv_run(&venv.path, "adtool", &[])),
        "adtool ran\n"
    );
    // Real, writable files again, with ordinary (timestamp) pycs.
    let init = venv.sp().join("adlib/__init__.py");
    assert_eq!(
        fs::metadata(&init).unwrap().dev(),
        fs::metadata(&venv.path).unwrap().dev()
    );
    fs::write(&init, "VALUE = 'edited'\n").unwrap();
    assert_eq!(
        vpy_ok(&venv.path, "import adlib; print(adlib.VALUE)"),
        "edited\n"
    );
    let uninstall = venv_run(
        &venv.path,
        "python",
        &["-m", "pip", "uninstall", "-y", "adtool"],
    );
    assert_success(&uninstall);
    assert!(!venv.path.join("bin/adtool").exists());
}

#[test]
fn adopt_refuses_a_venv_with_an_edited_file_and_leaves_it_as_it_was() {
    let work = Work::new();
    let wheels = adopt_wheels(&work);
    let venv = pip_venv(&work, "venv", &wheels);
    let edited = venv.sp().join("adlib/__init__.py");
    fs::write(&edited, "VALUE = 'hand edited'\n").unwrap();
    let before = pip_list(&venv.path);

    let out = sitefs([
        os("adopt"),
        os("--store"),
        work.store().as_os_str(),
        venv.path.as_os_str(),
    ]);
    let err = failed_stderr(&out);
    assert!(err.contains("adlib"), "{err}");
    assert!(
        err.contains("adlib/__init__.py was changed after install"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!is_mounted(&venv.sp()));
    assert!(!venv.path.join("sitefs.toml").exists());
    assert!(
        !work.store().exists(),
        "a refused adoption created the store"
    );
    assert_eq!(
        fs::read_to_string(&edited).unwrap(),
        "VALUE = 'hand edited'\n"
    );
    assert_eq!(pip_list(&venv.path), before);
    assert_eq!(
        vpy_ok(&venv.path, "import adlib; print(adlib.VALUE)"),
        "hand edited\n"
    );
}

/// `env create` killed with SIGKILL at 30 moments spread over its run:
/// each time the env is either absent (no litter once the next create has
/// run beside it) or complete and registered, so gc keeps its dists and
/// it mounts again.
#[test]
fn env_create_killed_at_any_moment_leaves_no_half_env_for_gc_to_break() {
    let work = Work::new();
    let wheels: Vec<PathBuf> = (0..6)
        .map(|i| work.wheel(&small_wheel(&format!("k{i}"), "1.0", &format!("v{i}"))))
        .collect();
    // Warm the store, so creates spend their time on the env, not ingest.
    let first = work.path("envs/first");
    let first_guard = work.create(
        &first,
        &wheels.iter().map(|w| w.as_os_str()).collect::<Vec<_>>(),
    );
    drop(first_guard);
    let mut complete = Vec::new();
    let mut guards = Vec::new();
    let t = Instant::now();
    assert_success(&work.create_cmd(
        &work.path("envs/timing"),
        &wheels.iter().map(|w| w.as_os_str()).collect::<Vec<_>>(),
    ));
    let whole = t.elapsed();
    guards.push(Venv::guard(&work.path("envs/timing")));
    for i in 0..30u32 {
        let venv = work.path(&format!("envs/e{i}"));
        guards.push(Venv::guard(&venv));
        let mut cmd = sitefs_command();
        cmd.args([os("env"), os("create"), venv.as_os_str(), os("--store")])
            .arg(work.store())
            .args([os("--python"), os(real_python())])
            .args(&wheels)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let mut child = cmd.spawn().unwrap();
        // Moments from the start to past the end of a normal create.
        std::thread::sleep(whole * i / 24);
        let _ = child.kill();
        let _ = child.wait();
        if venv.join("sitefs.toml").is_file() {
            complete.push(venv);
        } else {
            assert!(!venv.exists(), "kill {i}: a venv without a manifest");
        }
    }
    // gc now: the killed creates' use marks are stale.
    gc(&work, &[]);
    for venv in &complete {
        // Not mounted when the kill came before the mount: fails then.
        let _ = sitefs([os("env"), os("umount"), venv.as_os_str()]);
        assert_success(&sitefs([os("env"), os("mount"), venv.as_os_str()]));
        assert_eq!(
            vpy_ok(venv, "import k0, k5; print(k0.VALUE, k5.VALUE)"),
            "v0 v5\n",
            "{} after gc",
            venv.display()
        );
    }
    // The next create beside them removes every stage they left.
    let last = work.path("envs/last");
    guards.push(work.create(
        &last,
        &wheels.iter().map(|w| w.as_os_str()).collect::<Vec<_>>(),
    ));
    let litter: Vec<String> = names_in(work.path("envs/x").parent().unwrap())
        .into_iter()
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(litter.is_empty(), "stages left: {litter:?}");
    assert!(
        !complete.is_empty() && complete.len() < 30,
        "kills spread over the run: {} complete",
        complete.len()
    );
}
