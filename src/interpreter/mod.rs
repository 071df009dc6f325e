//! Facts about a target Python interpreter, gathered by running it once.
//!
//! Everything sitefs needs to know about an interpreter (where its real
//! binary lives, which `cache_tag` its pycs use, which wheel tags it accepts,
//! the PEP 508 marker environment, its `sysconfig` paths) comes from a single
//! `python -c PROBE_SCRIPT` run. Asking the interpreter itself is the only
//! reliable way: `python3.11` on PATH may be a pyenv shim (a shell script),
//! and the tag/marker rules depend on build details (glibc, debug or
//! free-threaded builds) that cannot be guessed from the outside.
//!
//! The probe prints NUL-terminated `key=value` records after a header, so
//! values may hold any byte but NUL and no JSON parser is needed.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Output, Stdio};

/// Oldest supported Python: unchecked-hash pycs need 3.7, and 3.8 is the
/// oldest release whose ABI tags no longer carry the pymalloc `m` flag.
pub const MIN_PYTHON: (u32, u32) = (3, 8);

/// First record of the probe output; anything printed before it (a noisy
/// `sitecustomize`, say) is skipped.
const PROBE_HEADER: &[u8] = b"SITEFS-PROBE-1";

/// The probe. It must stay parseable by Python 2.7 and 3.6 (no f-strings,
/// no `yield from`, no keyword-only arguments) so that an old interpreter
/// reports its version and gets a clear "too old" error instead of a
/// SyntaxError. Passing `fallback` as argv[1] skips `packaging` (tests).
const PROBE_SCRIPT: &str = include_str!("probe.py");

/// Why an interpreter could not be probed. Each message is one line that
/// names the interpreter as the user gave it.
#[derive(Debug, thiserror::Error)]
pub enum InterpreterError {
    /// A bare name (`python3.11`) that is not on PATH, or whose pyenv shim
    /// has no installed version behind it (`note` then holds pyenv's words).
    #[error(
        "python interpreter `{python}` not found on PATH: install it or pass --python /path/to/python{note}"
    )]
    NotFoundOnPath { python: String, note: String },
    /// A path (anything with a `/`) that does not exist.
    #[error("python interpreter `{python}` not found: no such file")]
    NotFoundAtPath { python: String },
    /// The file exists but could not be executed (permissions, bad format).
    #[error("cannot run python interpreter `{python}`: {source}")]
    Spawn {
        python: String,
        #[source]
        source: io::Error,
    },
    /// The interpreter ran but the probe failed (e.g. a pyenv shim for a
    /// version that is not installed, or a broken installation).
    #[error("python interpreter `{python}` failed ({status}): {detail}")]
    Failed {
        python: String,
        status: ExitStatus,
        detail: String,
    },
    /// The probe's output could not be understood.
    #[error("python interpreter `{python}` gave unexpected probe output: {source}")]
    BadOutput {
        python: String,
        #[source]
        source: ProbeOutputError,
    },
    /// The interpreter is older than [`MIN_PYTHON`].
    #[error("python interpreter `{python}` is Python {version}; sitefs needs Python 3.8 or newer")]
    TooOld { python: String, version: String },
}

/// What is wrong with the probe's output (a broken installation, or a
/// `sitecustomize` that writes into the records).
#[derive(Debug, thiserror::Error)]
pub enum ProbeOutputError {
    #[error("missing probe header (got {0:?})")]
    MissingHeader(String),
    #[error("record without `=`: {0:?}")]
    NoEquals(String),
    #[error("missing `{0}`")]
    Missing(String),
    #[error("`{key}` is not an absolute path: {path:?}")]
    NotAbsolute { key: String, path: PathBuf },
    #[error("`{key}` is not UTF-8: {value:?}")]
    NotUtf8 { key: String, value: OsString },
    #[error("sys.implementation.cache_tag is None: this interpreter cannot use pycs")]
    NoCacheTag,
    #[error("no compatible wheel tags")]
    NoTags,
    #[error("marker python_version disagrees with sys.version_info")]
    VersionMismatch,
}

/// A probed interpreter. Built once per `--python` and then trusted: the
/// store keys pycs by [`Interpreter::cache_tag`], environments link to
/// [`Interpreter::executable`], and wheels are selected by
/// [`Interpreter::tags`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Interpreter {
    /// `sys.executable`: the real binary, never a pyenv shim script (the
    /// probe runs inside the resolved interpreter, so shims are gone).
    pub executable: PathBuf,
    /// `sys._base_executable`: for a venv interpreter, the python it was
    /// created from (`pyvenv.cfg` `home`); otherwise equal to `executable`.
    pub base_executable: PathBuf,
    /// `major.minor`, e.g. "3.11" (`lib/python3.11`, `pyvenv.cfg` version).
    pub version: String,
    /// `platform.python_version()`, e.g. "3.11.7".
    pub full_version: String,
    /// `sys.implementation.cache_tag`, e.g. "cpython-311": names pycs and
    /// the store's `bytecode/<cache_tag>/` directory.
    pub cache_tag: String,
    /// `sys.implementation.name`, e.g. "cpython".
    pub implementation: String,
    /// `sys.prefix`.
    pub prefix: PathBuf,
    /// `sys.base_prefix` (differs from `prefix` inside a venv).
    pub base_prefix: PathBuf,
    /// `sysconfig.get_paths()["stdlib"]`.
    pub stdlib: String,
    /// `sysconfig.get_paths()["purelib"]`.
    pub purelib: String,
    /// `sysconfig.get_paths()["platlib"]`.
    pub platlib: String,
    /// `sysconfig.get_paths()["include"]`: Python headers, for building
    /// extension modules.
    pub include: String,
    /// `sysconfig.get_paths()["platinclude"]`.
    pub platinclude: String,
    /// `sysconfig.get_paths()["scripts"]`.
    pub scripts: String,
    /// `sysconfig.get_paths()["data"]`.
    pub data: String,
    /// `sys.abiflags`, e.g. "" or "t" for a free-threaded build.
    pub abi_flags: String,
    /// `sysconfig.get_config_var("SOABI")`, "" when unset.
    pub soabi: String,
    /// `sysconfig.get_config_var("EXT_SUFFIX")`, e.g.
    /// ".cpython-311-x86_64-linux-gnu.so".
    pub ext_suffix: String,
    /// `sysconfig.get_platform()`, e.g. "linux-x86_64".
    pub platform: String,
    /// `importlib.util.MAGIC_NUMBER` as lowercase hex (8 digits): the first
    /// four bytes of every pyc this interpreter accepts.
    pub magic_number: String,
    /// Compatible wheel tags (`interp-abi-platform`), most preferred first.
    pub tags: Vec<String>,
    /// True when [`Interpreter::tags`] came from `packaging.tags.sys_tags()`,
    /// false when from the probe's built-in equivalent.
    pub tags_from_packaging: bool,
    /// PEP 508 marker environment; see [`Interpreter::marker_env`].
    pub markers: BTreeMap<String, String>,
}

impl Interpreter {
    /// Run `python` once and collect its facts.
    ///
    /// `python` may be a name looked up on PATH (`python3.11`), a pyenv
    /// shim, or a path; the result always describes the real interpreter.
    pub fn probe(python: &OsStr) -> Result<Interpreter, InterpreterError> {
        probe_with(python, false)
    }

    /// Like [`Interpreter::probe`], but remembers the result in
    /// `cache_dir` keyed by the interpreter binary's identity (path, inode,
    /// size, mtime), so repeated commands skip starting Python. Names that
    /// resolve to scripts (pyenv shims) are probed every time: which
    /// interpreter they run depends on the caller's directory and env.
    pub fn probe_cached(
        python: &OsStr,
        cache_dir: &std::path::Path,
    ) -> Result<Interpreter, InterpreterError> {
        let Some(key) = binary_identity(python) else {
            return Self::probe(python);
        };
        let file = cache_dir.join(&crate::hashing::Digest::of(key.as_bytes()).to_hex()[..32]);
        if let Some(i) = std::fs::read_to_string(&file)
            .ok()
            .and_then(|t| toml::from_str(&t).ok())
        {
            return Ok(i);
        }
        let interp = Self::probe(python)?;
        if let Ok(text) = toml::to_string(&interp) {
            let tmp = file.with_extension(format!("tmp.{}", std::process::id()));
            let ok =
                std::fs::create_dir_all(cache_dir).is_ok() && std::fs::write(&tmp, text).is_ok();
            if !(ok && std::fs::rename(&tmp, &file).is_ok()) {
                let _ = std::fs::remove_file(&tmp);
            }
        }
        Ok(interp)
    }

    /// An interpreter of `cache_tag` that a store has probed before (its
    /// probe cache), still installed and still of that tag: what `store
    /// verify --repair` compiles damaged pycs with.
    pub fn cached_for_tag(cache_dir: &std::path::Path, cache_tag: &str) -> Option<Interpreter> {
        let mut seen: Vec<Interpreter> = std::fs::read_dir(cache_dir)
            .ok()?
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .filter_map(|t| toml::from_str::<Interpreter>(&t).ok())
            .filter(|i| i.cache_tag == cache_tag && i.executable.is_file())
            .collect();
        seen.sort_by(|a, b| a.executable.cmp(&b.executable));
        seen.into_iter()
            .find_map(|i| Self::probe(i.executable.as_os_str()).ok())
            .filter(|i| i.cache_tag == cache_tag)
    }

    /// The PEP 508 marker environment (`python_version`,
    /// `python_full_version`, `sys_platform`, `platform_machine`, `os_name`,
    /// `platform_system`, `implementation_name`,
    /// `platform_python_implementation`, `platform_release`,
    /// `platform_version`, `implementation_version`), for evaluating
    /// dependency markers against this interpreter rather than our own host.
    pub fn marker_env(&self) -> BTreeMap<String, String> {
        self.markers.clone()
    }

    /// Whether the probed interpreter runs inside a virtual environment.
    pub fn is_venv(&self) -> bool {
        self.prefix != self.base_prefix
    }

    /// Whether a wheel tag (one `interp-abi-platform` triple) is accepted.
    pub fn supports_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }
}

/// Probe, optionally forcing the built-in tag computation (for tests that
/// compare it with `packaging`).
fn probe_with(python: &OsStr, force_fallback: bool) -> Result<Interpreter, InterpreterError> {
    let name = python.to_string_lossy().into_owned();
    let output = run_probe(python, &name, force_fallback)?;
    check_exit(&name, &output)?;
    let facts = Facts::parse(&output.stdout).map_err(|source| InterpreterError::BadOutput {
        python: name.clone(),
        source,
    })?;
    facts.into_interpreter(&name)
}

/// Spawn `python -E -s -c PROBE_SCRIPT`, mapping "no such file" to the
/// not-found errors. `-E -s` keep `PYTHONPATH` and user site-packages from
/// changing the answers; both flags exist in every Python we may meet.
fn run_probe(python: &OsStr, name: &str, force_fallback: bool) -> Result<Output, InterpreterError> {
    let mut cmd = Command::new(python);
    cmd.args(["-E", "-s", "-c", PROBE_SCRIPT]);
    if force_fallback {
        cmd.arg("fallback");
    }
    cmd.stdin(Stdio::null());
    match cmd.output() {
        Ok(output) => Ok(output),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(not_found(name, String::new())),
        Err(source) => Err(InterpreterError::Spawn {
            python: name.to_owned(),
            source,
        }),
    }
}

/// The not-found error matching how the interpreter was named; `note`
/// (e.g. " (pyenv: ...)") only applies to names looked up on PATH.
fn not_found(name: &str, note: String) -> InterpreterError {
    let python = name.to_owned();
    if name.contains('/') {
        InterpreterError::NotFoundAtPath { python }
    } else {
        InterpreterError::NotFoundOnPath { python, note }
    }
}

/// Turn a failed probe run into the matching error.
fn check_exit(name: &str, output: &Output) -> Result<(), InterpreterError> {
    if output.status.success() {
        return Ok(());
    }
    let detail = stderr_summary(&output.stderr);
    if is_shell_not_found(output) {
        return Err(not_found(name, format!(" ({detail})")));
    }
    Err(InterpreterError::Failed {
        python: name.to_owned(),
        status: output.status,
        detail,
    })
}

/// Whether a wrapper script (a pyenv shim) said the command does not
/// exist: exit status 127 is the shell's "command not found".
fn is_shell_not_found(output: &Output) -> bool {
    output.status.code() == Some(127)
        && String::from_utf8_lossy(&output.stderr).contains("command not found")
}

/// One line explaining a failed run: a Python traceback's last line, or
/// the first line of anything else (pyenv's "command not found").
fn stderr_summary(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let line = if text.contains("Traceback (most recent call last)") {
        lines.last()
    } else {
        lines.first()
    };
    match line {
        Some(l) => (*l).to_owned(),
        None => "no error output".to_owned(),
    }
}

/// The raw records of one probe run.
/// `path:inode:size:mtime` of the ELF binary `python` names, or None
/// when it is not found or is a script.
fn binary_identity(python: &OsStr) -> Option<String> {
    use std::io::Read;
    let given = std::path::Path::new(python);
    let path = if given.components().count() > 1 {
        given.to_path_buf()
    } else {
        std::env::split_paths(&std::env::var_os("PATH")?)
            .map(|d| d.join(given))
            .find(|p| p.is_file())?
    };
    let real = std::fs::canonicalize(path).ok()?;
    let mut magic = [0u8; 4];
    std::fs::File::open(&real)
        .ok()?
        .read_exact(&mut magic)
        .ok()?;
    if &magic != b"\x7fELF" {
        return None;
    }
    let stamp = crate::stamp::FileStamp::read(&real)?;
    Some(format!("{}:{}", real.display(), stamp.key()))
}

#[derive(Debug, Default)]
struct Facts {
    values: BTreeMap<String, OsString>,
    markers: BTreeMap<String, String>,
    tags: Vec<String>,
}

impl Facts {
    /// Parse `HEADER\0key=value\0...`, ignoring anything before the header.
    fn parse(stdout: &[u8]) -> Result<Facts, ProbeOutputError> {
        let start = find(stdout, PROBE_HEADER).ok_or_else(|| {
            let shown = String::from_utf8_lossy(&stdout[..stdout.len().min(200)]);
            ProbeOutputError::MissingHeader(shown.into_owned())
        })?;
        let mut facts = Facts::default();
        let body = &stdout[start + PROBE_HEADER.len()..];
        for record in body.split(|&b| b == 0).filter(|r| !r.is_empty()) {
            facts.add(record)?;
        }
        Ok(facts)
    }

    /// File one `key=value` record.
    fn add(&mut self, record: &[u8]) -> Result<(), ProbeOutputError> {
        let eq = record.iter().position(|&b| b == b'=').ok_or_else(|| {
            ProbeOutputError::NoEquals(String::from_utf8_lossy(record).into_owned())
        })?;
        let key = String::from_utf8_lossy(&record[..eq]).into_owned();
        let value = OsString::from_vec(record[eq + 1..].to_vec());
        if key == "tag" {
            self.tags.push(utf8(&key, value)?);
        } else if let Some(marker) = key.strip_prefix("marker.") {
            self.markers.insert(marker.to_owned(), utf8(&key, value)?);
        } else {
            self.values.insert(key, value);
        }
        Ok(())
    }

    /// A required value as raw OS string.
    fn os(&self, key: &str) -> Result<OsString, ProbeOutputError> {
        self.values
            .get(key)
            .cloned()
            .ok_or_else(|| ProbeOutputError::Missing(key.to_owned()))
    }

    /// A required value that must be UTF-8.
    fn string(&self, key: &str) -> Result<String, ProbeOutputError> {
        utf8(key, self.os(key)?)
    }

    /// A required value that must be a non-empty absolute path.
    fn abs_path(&self, key: &str) -> Result<PathBuf, ProbeOutputError> {
        let path = PathBuf::from(self.os(key)?);
        if path.is_absolute() {
            Ok(path)
        } else {
            let key = key.to_owned();
            Err(ProbeOutputError::NotAbsolute { key, path })
        }
    }

    /// Check the version, then build the [`Interpreter`].
    fn into_interpreter(self, name: &str) -> Result<Interpreter, InterpreterError> {
        let bad = |source| InterpreterError::BadOutput {
            python: name.to_owned(),
            source,
        };
        let version = self.string("version").map_err(bad)?;
        if !version_at_least(&version, MIN_PYTHON) {
            let version = self.string("full_version").unwrap_or(version);
            return Err(InterpreterError::TooOld {
                python: name.to_owned(),
                version,
            });
        }
        self.build(version).map_err(bad)
    }

    /// Assemble the struct from a complete (3.8+) probe.
    fn build(self, version: String) -> Result<Interpreter, ProbeOutputError> {
        let s = |k: &str| self.string(k);
        let interp = Interpreter {
            executable: self.abs_path("executable")?,
            base_executable: self.abs_path("base_executable")?,
            version,
            full_version: s("full_version")?,
            cache_tag: s("cache_tag")?,
            implementation: s("implementation")?,
            prefix: self.abs_path("prefix")?,
            base_prefix: self.abs_path("base_prefix")?,
            stdlib: s("path.stdlib")?,
            purelib: s("path.purelib")?,
            platlib: s("path.platlib")?,
            include: s("path.include")?,
            platinclude: s("path.platinclude")?,
            scripts: s("path.scripts")?,
            data: s("path.data")?,
            abi_flags: s("abi_flags")?,
            soabi: s("soabi")?,
            ext_suffix: s("ext_suffix")?,
            platform: s("platform")?,
            magic_number: s("magic_number")?,
            tags_from_packaging: s("tags_source")? == "packaging",
            tags: self.tags.clone(),
            markers: self.markers.clone(),
        };
        validate(&interp)?;
        Ok(interp)
    }
}

/// Sanity checks that would otherwise surface later as confusing errors.
fn validate(interp: &Interpreter) -> Result<(), ProbeOutputError> {
    if interp.cache_tag.is_empty() {
        return Err(ProbeOutputError::NoCacheTag);
    }
    if interp.tags.is_empty() {
        return Err(ProbeOutputError::NoTags);
    }
    if interp.markers.get("python_version") != Some(&interp.version) {
        return Err(ProbeOutputError::VersionMismatch);
    }
    Ok(())
}

/// Decode a value that must be UTF-8 (tags, markers, sysconfig paths).
fn utf8(key: &str, value: OsString) -> Result<String, ProbeOutputError> {
    value
        .into_string()
        .map_err(|value| ProbeOutputError::NotUtf8 {
            key: key.to_owned(),
            value,
        })
}

/// Whether "X.Y" is at least `min`.
fn version_at_least(version: &str, min: (u32, u32)) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= min,
        _ => false,
    }
}

/// Position of `needle` in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The `python3` on PATH, probed once for all the tests that need a real
/// interpreter.
#[cfg(test)]
pub(crate) fn host_python3() -> &'static Interpreter {
    static PYTHON3: std::sync::LazyLock<Interpreter> = std::sync::LazyLock::new(|| {
        Interpreter::probe(OsStr::new("python3")).expect("probe python3")
    });
    &PYTHON3
}

/// Fail unless `python3 -m py_compile` accepts `source`: the Python
/// scripts sitefs embeds are only run long after the build, so their
/// syntax is checked by a test instead.
#[cfg(test)]
pub(crate) fn assert_py_compiles(name: &str, source: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join(name);
    std::fs::write(&file, source).expect("write script");
    let out = Command::new("python3")
        .args(["-m", "py_compile"])
        .arg(&file)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "{name} does not compile: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn pyenv_python(version: &str) -> Option<PathBuf> {
        let home = std::env::var_os("HOME")?;
        let dir = Path::new(&home).join(".pyenv/versions").join(version);
        let bin = dir.join("bin/python");
        bin.exists().then_some(bin)
    }

    #[test]
    fn probes_python3() {
        let interp = Interpreter::probe(OsStr::new("python3")).expect("probe python3");
        assert!(
            interp.cache_tag.starts_with("cpython-3"),
            "{}",
            interp.cache_tag
        );
        assert_eq!(interp.implementation, "cpython");
        assert!(interp
            .full_version
            .starts_with(&format!("{}.", interp.version)));
        assert!(interp.executable.is_absolute());
        let head = std::fs::read(&interp.executable).expect("read executable");
        assert_eq!(&head[..4], b"\x7fELF", "executable is not a binary (shim?)");
        assert!(interp.base_executable.exists());
        assert!(interp.supports_tag("py3-none-any"));
        assert_eq!(
            interp.tags.last().map(String::as_str),
            Some("py30-none-any")
        );
        assert!(Path::new(&interp.include).join("Python.h").exists());
        assert_eq!(interp.magic_number.len(), 8);
        let env = interp.marker_env();
        assert_eq!(env["python_version"], interp.version);
        assert_eq!(env["python_full_version"], interp.full_version);
        assert_eq!(env["implementation_name"], "cpython");
        assert_eq!(env.len(), 11);
    }

    #[test]
    fn fallback_tags_look_right() {
        let interp = probe_with(OsStr::new("python3"), true).expect("probe");
        assert!(!interp.tags_from_packaging);
        let nodot = interp.version.replace('.', "");
        let first = format!("cp{nodot}-cp{nodot}{}-", interp.abi_flags);
        assert!(interp.tags[0].starts_with(&first), "{}", interp.tags[0]);
        assert!(interp.supports_tag("py3-none-any"));
        assert!(interp.supports_tag(&format!("cp{nodot}-none-any")));
        if interp.platform == "linux-x86_64" {
            assert!(interp.supports_tag(&format!("cp{nodot}-abi3-manylinux2014_x86_64")));
            assert!(interp.supports_tag("cp32-abi3-manylinux_2_17_x86_64"));
            assert!(interp.supports_tag("py3-none-linux_x86_64"));
        }
    }

    /// The built-in tag list must equal `packaging`'s where a recent
    /// `packaging` (>= 24, which adds `cpXY-none-any`) is at hand via pip.
    #[test]
    fn fallback_tags_match_packaging() {
        let Some(python) = pyenv_python("3.13.0") else {
            return;
        };
        let script = "from pip._vendor.packaging.tags import sys_tags\n\
                      print('\\n'.join(map(str, sys_tags())))";
        let out = Command::new(&python)
            .args(["-c", script])
            .output()
            .expect("run");
        if !out.status.success() {
            return;
        }
        let expected: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect();
        let interp = probe_with(python.as_os_str(), true).expect("probe");
        assert_eq!(interp.tags, expected);
    }

    /// With `packaging` importable the probe uses it (and agrees with the
    /// fallback): a venv whose site-packages links pip's vendored copy.
    #[test]
    fn uses_packaging_when_importable() {
        let Some(python) = pyenv_python("3.13.0") else {
            return;
        };
        let lib = python.parent().and_then(Path::parent).expect("prefix");
        let vendored = lib.join("lib/python3.13/site-packages/pip/_vendor/packaging");
        if !vendored.is_dir() {
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let venv = dir.path().join("venv");
        let status = Command::new(&python)
            .args(["-m", "venv", "--without-pip"])
            .arg(&venv)
            .status()
            .expect("venv");
        assert!(status.success());
        let link = venv.join("lib/python3.13/site-packages/packaging");
        std::os::unix::fs::symlink(&vendored, link).expect("symlink");
        let venv_python = venv.join("bin/python");
        let with = Interpreter::probe(venv_python.as_os_str()).expect("probe");
        let without = probe_with(venv_python.as_os_str(), true).expect("probe");
        assert!(with.tags_from_packaging);
        assert!(!without.tags_from_packaging);
        assert_eq!(with.tags, without.tags);
        assert_eq!(
            with.base_executable,
            python.canonicalize().expect("realpath")
        );
    }

    #[test]
    fn bogus_name_is_not_found_on_path() {
        let err = Interpreter::probe(OsStr::new("python-sitefs-bogus")).unwrap_err();
        assert!(matches!(err, InterpreterError::NotFoundOnPath { .. }));
        assert_eq!(
            err.to_string(),
            "python interpreter `python-sitefs-bogus` not found on PATH: \
             install it or pass --python /path/to/python"
        );
    }

    /// A pyenv shim whose version is not installed is "not found" too.
    #[test]
    fn uninstalled_pyenv_shim_is_not_found() {
        let dir = tempfile::tempdir().expect("tempdir");
        let shim = dir.path().join("python3.1");
        let script = "#!/bin/sh\necho 'pyenv: python3.1: command not found' >&2\nexit 127\n";
        std::fs::write(&shim, script).expect("write shim");
        let chmod = Command::new("chmod").arg("+x").arg(&shim).status();
        assert!(chmod.expect("chmod").success());
        let output = Command::new(&shim).output().expect("run shim");
        let err = check_exit("python3.1", &output).unwrap_err();
        assert!(
            matches!(err, InterpreterError::NotFoundOnPath { .. }),
            "{err}"
        );
        assert!(
            err.to_string()
                .ends_with("(pyenv: python3.1: command not found)"),
            "{err}"
        );
        let err = Interpreter::probe(shim.as_os_str()).unwrap_err();
        assert!(
            matches!(err, InterpreterError::NotFoundAtPath { .. }),
            "{err}"
        );
    }

    #[test]
    fn bogus_path_is_not_found() {
        let err = Interpreter::probe(OsStr::new("/nonexistent/python3")).unwrap_err();
        assert!(
            matches!(err, InterpreterError::NotFoundAtPath { .. }),
            "{err}"
        );
    }

    #[test]
    fn non_python_is_bad_output_or_failure() {
        let err = Interpreter::probe(OsStr::new("/bin/true")).unwrap_err();
        assert!(matches!(err, InterpreterError::BadOutput { .. }), "{err}");
        let err = Interpreter::probe(OsStr::new("/bin/false")).unwrap_err();
        assert!(matches!(err, InterpreterError::Failed { .. }), "{err}");
    }

    #[test]
    fn old_pythons_are_too_old() {
        for version in ["2.7.18", "3.6.15", "3.7.16"] {
            let Some(python) = pyenv_python(version) else {
                continue;
            };
            let err = Interpreter::probe(python.as_os_str()).unwrap_err();
            match err {
                InterpreterError::TooOld { version: v, .. } => assert_eq!(v, version),
                other => panic!("{version}: {other}"),
            }
        }
    }

    #[test]
    fn venv_reports_base_executable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let venv = dir.path().join("venv");
        let status = Command::new("python3")
            .args(["-m", "venv", "--without-pip"])
            .arg(&venv)
            .status()
            .expect("venv");
        assert!(status.success());
        let interp = Interpreter::probe(venv.join("bin/python").as_os_str()).expect("probe");
        assert!(interp.is_venv());
        assert_eq!(interp.prefix, venv);
        assert!(
            !interp.base_executable.starts_with(&venv),
            "{:?}",
            interp.base_executable
        );
    }

    #[test]
    fn probe_script_compiles() {
        assert_py_compiles("probe.py", PROBE_SCRIPT);
    }

    #[test]
    fn parses_records_after_noise() {
        let out = b"noise\nSITEFS-PROBE-1\0version=3.7\0full_version=3.7.1\0";
        let facts = Facts::parse(out).expect("parse");
        let err = facts.into_interpreter("py").unwrap_err();
        assert_eq!(
            err.to_string(),
            "python interpreter `py` is Python 3.7.1; sitefs needs Python 3.8 or newer"
        );
        assert!(Facts::parse(b"hello").is_err());
    }

    #[test]
    fn version_comparison() {
        assert!(version_at_least("3.8", MIN_PYTHON));
        assert!(version_at_least("3.13", MIN_PYTHON));
        assert!(!version_at_least("3.7", MIN_PYTHON));
        assert!(!version_at_least("2.7", MIN_PYTHON));
        assert!(!version_at_least("x", MIN_PYTHON));
    }
}
