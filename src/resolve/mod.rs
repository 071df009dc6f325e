//! From what the user named (wheel files, requirements files, a
//! `pylock.toml`) to store distributions, offline. Nothing is resolved
//! transitively: every source is already a complete, pinned set.
//!
//! Every unsatisfiable item is collected and reported together, so a
//! user fixes a requirements file in one pass, and nothing is created.

pub mod markers;
pub mod pylock;
pub mod requirements;
pub mod version;

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};

use crate::interpreter::Interpreter;
use crate::resolve::markers::MarkerError;
use crate::resolve::pylock::{Lock, LockError, LockedWheel, Selected};
use crate::resolve::requirements::{Requirement, RequirementError};
use crate::resolve::version::Version;
use crate::store::dist_index::DistMeta;
use crate::store::ingest::expand_sources;
use crate::store::{Store, StoreError};
use crate::wheel::{normalize_name, WheelError, WheelName};

/// What to put in an environment.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// Wheel files, or directories whose `*.whl` are all wanted.
    pub wheels: Vec<PathBuf>,
    pub requirements: Vec<PathBuf>,
    pub lock: Option<PathBuf>,
    /// Directories searched for wheels the store lacks.
    pub find_links: Vec<PathBuf>,
}

/// Everything that could not be satisfied, one line each.
#[derive(Debug, thiserror::Error)]
#[error("cannot satisfy {} requirement(s); nothing was created:\n  {}", .0.len(), one_per_line(.0))]
pub struct ResolveError(pub Vec<Problem>);

/// One thing that could not be satisfied; each displays as one line that
/// names the file (and line, or lock entry) at fault.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    /// A named wheel file or directory that cannot be listed.
    #[error(transparent)]
    Source(#[from] StoreError),
    #[error("{file}: {source}")]
    WheelName {
        file: String,
        #[source]
        source: WheelError,
    },
    #[error("{file} does not fit this interpreter ({tag})")]
    DoesNotFit { file: String, tag: String },
    #[error("{name} is requested twice, as {first} and {second}")]
    Twice {
        name: String,
        first: String,
        second: String,
    },
    /// Reported by the caller's ingest function.
    #[error(transparent)]
    Ingest(IngestFailure),
    #[error(transparent)]
    Requirement(#[from] RequirementError),
    #[error("{}:{line}: {source}", file.display())]
    Marker {
        file: PathBuf,
        line: usize,
        #[source]
        source: MarkerError,
    },
    #[error("{}:{line}: {name}=={version}: no fitting wheel{} in the store or in --find-links {}",
        file.display(), if *hashed { " with a matching --hash" } else { "" }, show_dirs(dirs))]
    NoWheel {
        file: PathBuf,
        line: usize,
        name: String,
        version: String,
        hashed: bool,
        dirs: Vec<PathBuf>,
    },
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("{}: {package}: {wheel} is neither in the store nor at its path or in --find-links {}",
        lock.display(), show_dirs(dirs))]
    LockedWheelMissing {
        lock: PathBuf,
        package: String,
        wheel: String,
        dirs: Vec<PathBuf>,
    },
    /// A wheel (in the store, or a file) that is not the one locked.
    #[error("{}: {package}: {}: {source}", lock.display(), wheel.display())]
    LockedWheel {
        lock: PathBuf,
        package: String,
        wheel: PathBuf,
        #[source]
        source: Mismatch,
    },
}

/// How a wheel differs from its lock entry.
#[derive(Debug, thiserror::Error)]
pub enum Mismatch {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("size is {actual} bytes, the lock says {locked}")]
    Size { actual: u64, locked: u64 },
    #[error("sha256 is {actual}, the lock says {locked}")]
    Sha256 { actual: String, locked: String },
}

/// Adds wheel files to the store, returning each one's dist or error.
pub type Ingest<'a> = dyn FnMut(&[PathBuf]) -> Vec<Result<DistMeta, IngestFailure>> + 'a;

/// Why the ingest function could not add a wheel; its message says which.
pub type IngestFailure = Box<dyn std::error::Error + Send + Sync>;

/// Resolve sources to `(dist, requested)` pairs, ingesting wheels the
/// store lacks through `ingest`.
pub fn resolve(
    store: &Store,
    interp: &Interpreter,
    sources: &Sources,
    ingest: &mut Ingest,
) -> Result<Vec<(DistMeta, bool)>, ResolveError> {
    let mut r = Resolver {
        store,
        interp,
        problems: Vec::new(),
        chosen: BTreeMap::new(),
        known: None,
    };
    let wheels = r.explicit_wheels(&sources.wheels);
    r.ingest_all(&wheels, ingest);
    for file in &sources.requirements {
        r.requirements_file(file, &sources.find_links, ingest);
    }
    if let Some(lock) = &sources.lock {
        r.lock_file(lock, &sources.find_links, ingest);
    }
    if !r.problems.is_empty() {
        return Err(ResolveError(r.problems));
    }
    Ok(r.chosen.into_values().map(|m| (m, true)).collect())
}

struct Resolver<'a> {
    store: &'a Store,
    interp: &'a Interpreter,
    problems: Vec<Problem>,
    chosen: BTreeMap<String, DistMeta>,
    known: Option<Vec<DistMeta>>,
}

impl Resolver<'_> {
    /// The best (lowest) priority index of a wheel's tags for this
    /// interpreter, or None when it does not fit.
    fn fit(&self, tags: &[String]) -> Option<usize> {
        tags.iter()
            .filter_map(|t| self.interp.tags.iter().position(|x| x == t))
            .min()
    }

    fn choose(&mut self, meta: DistMeta) {
        let key = normalize_name(&meta.name);
        match self.chosen.get(&key) {
            Some(prev) if prev.version != meta.version => self.problems.push(Problem::Twice {
                name: meta.name.clone(),
                first: prev.version.clone(),
                second: meta.version,
            }),
            _ => {
                self.chosen.insert(key, meta);
            }
        }
    }

    /// Wheel files named directly; in directories, the wheels that fit
    /// this interpreter (the best fitting build of each name).
    fn explicit_wheels(&mut self, paths: &[PathBuf]) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for p in paths {
            let files = match expand_sources(std::slice::from_ref(p)) {
                Ok(f) => f,
                Err(e) => {
                    self.problems.push(e.into());
                    continue;
                }
            };
            let in_dir = p.is_dir();
            let mut best: HashMap<String, (usize, PathBuf)> = HashMap::new();
            for f in files {
                let name = f
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default()
                    .to_string();
                let parsed = WheelName::parse(&name);
                match parsed
                    .as_ref()
                    .ok()
                    .and_then(|w| self.fit(&w.tags()).map(|s| (w, s)))
                {
                    Some((w, score)) => {
                        let key = normalize_name(&w.distribution);
                        if best.get(&key).is_none_or(|(s, _)| score < *s) {
                            best.insert(key, (score, f));
                        }
                    }
                    None if in_dir => {
                        log::debug!("skipping {name}: does not fit {}", self.interp.cache_tag)
                    }
                    None => self.problems.push(match parsed {
                        Err(source) => Problem::WheelName { file: name, source },
                        Ok(_) => Problem::DoesNotFit {
                            file: name,
                            tag: self.interp.tags.first().cloned().unwrap_or_default(),
                        },
                    }),
                }
            }
            out.extend(best.into_values().map(|(_, f)| f));
        }
        out
    }

    fn ingest_all(&mut self, wheels: &[PathBuf], ingest: &mut Ingest) {
        if wheels.is_empty() {
            return;
        }
        for r in ingest(wheels) {
            match r {
                Ok(m) => self.choose(m),
                Err(e) => self.problems.push(Problem::Ingest(e)),
            }
        }
        self.known = None;
    }

    fn store_dists(&mut self) -> &[DistMeta] {
        if self.known.is_none() {
            self.known = Some(self.store.list().unwrap_or_default());
        }
        self.known.as_deref().unwrap_or_default()
    }

    fn requirements_file(&mut self, file: &Path, find_links: &[PathBuf], ingest: &mut Ingest) {
        let (parsed, errors) = requirements::parse_file_partial(file);
        self.problems.extend(errors.into_iter().map(Problem::from));
        let links: Vec<PathBuf> = find_links
            .iter()
            .chain(&parsed.find_links)
            .cloned()
            .collect();
        let env = self.interp.marker_env();
        let mut to_ingest = Vec::new();
        for req in &parsed.requirements {
            if let Some(m) = &req.marker {
                match markers::evaluate(m, &env, &[]) {
                    Ok(false) => continue,
                    Ok(true) => {}
                    Err(source) => {
                        self.problems.push(Problem::Marker {
                            file: req.source.clone(),
                            line: req.line,
                            source,
                        });
                        continue;
                    }
                }
            }
            if let Some(meta) = self.in_store(req) {
                self.choose(meta);
            } else if let Some(wheel) = self.in_find_links(req, &links) {
                to_ingest.push(wheel);
            } else {
                self.problems.push(Problem::NoWheel {
                    file: req.source.clone(),
                    line: req.line,
                    name: req.name.clone(),
                    version: req.version.clone(),
                    hashed: !req.hashes.is_empty(),
                    dirs: links.clone(),
                });
            }
        }
        self.ingest_all(&to_ingest, ingest);
    }

    fn in_store(&mut self, req: &Requirement) -> Option<DistMeta> {
        let want = normalize_name(&req.name);
        let version = version::parse(&req.version).ok();
        let hashes = req.hashes.clone();
        let candidates: Vec<DistMeta> = self
            .store_dists()
            .iter()
            .filter(|m| {
                normalize_name(&m.name) == want
                    && same_version(&m.version, &req.version, version.as_ref())
            })
            .filter(|m| hashes.is_empty() || hashes.contains(&m.wheel_sha256))
            .cloned()
            .collect();
        candidates
            .into_iter()
            .filter_map(|m| self.fit(&m.tags).map(|s| (s, m)))
            .min_by_key(|(s, _)| *s)
            .map(|(_, m)| m)
    }

    fn in_find_links(&self, req: &Requirement, dirs: &[PathBuf]) -> Option<PathBuf> {
        let want = normalize_name(&req.name);
        let version = version::parse(&req.version).ok();
        let mut best: Option<(usize, PathBuf)> = None;
        for dir in dirs {
            for f in expand_sources(std::slice::from_ref(dir)).unwrap_or_default() {
                let Some(w) = f
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| WheelName::parse(n).ok())
                else {
                    continue;
                };
                if normalize_name(&w.distribution) != want
                    || !same_version(&w.version, &req.version, version.as_ref())
                {
                    continue;
                }
                let Some(score) = self.fit(&w.tags()) else {
                    continue;
                };
                if !req.hashes.is_empty()
                    && !file_sha256(&f).is_some_and(|h| req.hashes.contains(&h))
                {
                    continue;
                }
                if best.as_ref().is_none_or(|(s, _)| score < *s) {
                    best = Some((score, f));
                }
            }
        }
        best.map(|(_, f)| f)
    }

    fn lock_file(&mut self, path: &Path, find_links: &[PathBuf], ingest: &mut Ingest) {
        let lock = match Lock::load(path) {
            Ok(l) => l,
            Err(e) => {
                self.problems.push(e.into());
                return;
            }
        };
        let selected = match lock.select(&self.interp.tags, &self.interp.marker_env()) {
            Ok(s) => s,
            Err(errors) => {
                self.problems.extend(errors.into_iter().map(Problem::from));
                return;
            }
        };
        let mut to_ingest = Vec::new();
        for selected in selected {
            match self.locked_wheel(path, find_links, selected) {
                Ok(Some(file)) => to_ingest.push(file),
                Ok(None) => {}
                Err(problem) => self.problems.push(problem),
            }
        }
        self.ingest_all(&to_ingest, ingest);
    }

    /// Choose a locked wheel the store has, or return the file to ingest.
    fn locked_wheel(
        &mut self,
        lock: &Path,
        find_links: &[PathBuf],
        Selected { package, wheel }: Selected<'_>,
    ) -> Result<Option<PathBuf>, Problem> {
        let problem = |wheel_path: &Path, source: Mismatch| Problem::LockedWheel {
            lock: lock.to_path_buf(),
            package: package.label(),
            wheel: wheel_path.to_path_buf(),
            source,
        };
        let by_hash = wheel.sha256.as_deref().map(str::to_ascii_lowercase);
        if let Some(m) = self.locked_in_store(wheel, by_hash.as_deref()) {
            if let Some(locked) = wheel.size.filter(|&s| s != m.wheel_size) {
                let actual = m.wheel_size;
                return Err(problem(
                    Path::new(&wheel.file_name),
                    Mismatch::Size { actual, locked },
                ));
            }
            self.choose(m);
            return Ok(None);
        }
        let candidates = wheel
            .path
            .iter()
            .cloned()
            .chain(find_links.iter().map(|d| d.join(&wheel.file_name)));
        let Some(file) = candidates.into_iter().find(|p| p.is_file()) else {
            return Err(Problem::LockedWheelMissing {
                lock: lock.to_path_buf(),
                package: package.label(),
                wheel: wheel.file_name.clone(),
                dirs: find_links.to_vec(),
            });
        };
        check_locked_file(&file, wheel.size, by_hash.as_deref())
            .map_err(|source| problem(&file, source))?;
        Ok(Some(file))
    }

    /// The store's dist of a locked wheel: by hash when the lock has one.
    fn locked_in_store(&mut self, wheel: &LockedWheel, sha256: Option<&str>) -> Option<DistMeta> {
        self.store_dists()
            .iter()
            .find(|m| match sha256 {
                Some(h) => m.wheel_sha256 == h,
                None => m.wheel == wheel.file_name,
            })
            .cloned()
    }
}

/// PEP 440 equality when both parse, else exact text.
fn same_version(have: &str, want: &str, want_parsed: Option<&Version>) -> bool {
    match (version::parse(have).ok(), want_parsed) {
        (Some(h), Some(w)) => h == *w,
        _ => have == want,
    }
}

fn check_locked_file(file: &Path, size: Option<u64>, sha256: Option<&str>) -> Result<(), Mismatch> {
    let actual = std::fs::metadata(file)?.len();
    if let Some(locked) = size.filter(|&s| s != actual) {
        return Err(Mismatch::Size { actual, locked });
    }
    if let Some(locked) = sha256 {
        let actual = crate::hashing::hash_file(file)?.0.to_hex();
        if actual != locked {
            return Err(Mismatch::Sha256 {
                actual,
                locked: locked.to_string(),
            });
        }
    }
    Ok(())
}

fn file_sha256(file: &Path) -> Option<String> {
    crate::hashing::hash_file(file)
        .ok()
        .map(|(d, _)| d.to_hex())
}

/// One problem per line, for [`ResolveError`]'s message.
fn one_per_line(problems: &[Problem]) -> String {
    let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
    lines.join("\n  ")
}

fn show_dirs(dirs: &[PathBuf]) -> String {
    if dirs.is_empty() {
        return "(none given)".to_string();
    }
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::io::Write;

    use super::*;
    use crate::hashing::Digest;
    use crate::interpreter::host_python3 as python3;
    use crate::store::bytecode::CompilerPool;
    use crate::store::ingest::{add_wheels, IngestOptions};
    use crate::wheel::RecordHash;

    /// A pure-Python `{name}-{version}-py3-none-any.whl` in `dir`, with
    /// METADATA, WHEEL and a RECORD that matches.
    fn wheel(dir: &Path, name: &str, version: &str) -> PathBuf {
        let info = format!("{name}-{version}.dist-info");
        let mut members = vec![
            (
                format!("{name}/__init__.py"),
                format!("VERSION = {version:?}\n"),
            ),
            (
                format!("{info}/METADATA"),
                format!("Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"),
            ),
            (
                format!("{info}/WHEEL"),
                "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n".to_string(),
            ),
        ];
        let mut record: String = members
            .iter()
            .map(|(path, text)| {
                let hash = RecordHash::sha256_field(&Digest::of(text.as_bytes()));
                format!("{path},{hash},{}\n", text.len())
            })
            .collect();
        record += &format!("{info}/RECORD,,\n");
        members.push((format!("{info}/RECORD"), record));
        fs::create_dir_all(dir).expect("mkdir");
        let file = dir.join(format!("{name}-{version}-py3-none-any.whl"));
        let mut zw = zip::ZipWriter::new(fs::File::create(&file).expect("create wheel"));
        for (path, text) in &members {
            zw.start_file(path.as_str(), zip::write::SimpleFileOptions::default())
                .expect("zip entry");
            zw.write_all(text.as_bytes()).expect("zip write");
        }
        zw.finish().expect("zip finish");
        file
    }

    /// A store holding `wheels`, ingested the way `env create` does.
    fn store_with(root: &Path, wheels: &[PathBuf]) -> Store {
        let store = Store::create(&root.join("store")).expect("create store");
        ingest(&store, &mut Vec::new())(wheels);
        store
    }

    /// The real ingest, recording the file names of every call in `calls`.
    fn ingest<'a>(
        store: &'a Store,
        calls: &'a mut Vec<Vec<String>>,
    ) -> impl FnMut(&[PathBuf]) -> Vec<Result<DistMeta, IngestFailure>> + 'a {
        move |wheels: &[PathBuf]| {
            calls.push(wheels.iter().map(|w| file_name(w)).collect());
            let pools = [CompilerPool::lazy(python3(), 1)];
            let opts = IngestOptions {
                quiet: true,
                ..Default::default()
            };
            add_wheels(store, wheels, &pools, &opts)
                .into_iter()
                .map(|r| r.result.map(|o| o.meta().clone()).map_err(Into::into))
                .collect()
        }
    }

    fn file_name(path: &Path) -> String {
        path.file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned()
    }

    fn sha256_hex(file: &Path) -> String {
        file_sha256(file).expect("hash wheel")
    }

    /// One `[[packages]]` entry of a pylock.toml for `wheel`.
    fn locked(name: &str, version: &str, wheel: &Path, size: u64, sha256: &str) -> String {
        format!(
            "[[packages]]\nname = {name:?}\nversion = {version:?}\n\
             wheels = [{{ path = {:?}, size = {size}, hashes = {{ sha256 = {sha256:?} }} }}]\n",
            wheel.display().to_string()
        )
    }

    #[test]
    fn every_source_resolves_to_store_dists() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let a = wheel(&root.join("built"), "a", "1.0");
        let b = wheel(&root.join("built"), "b", "2.0");
        let store = store_with(root, &[a, b.clone()]);
        let c = wheel(&root.join("incoming"), "c", "3.0");
        wheel(&root.join("links"), "d", "4.0");
        let requirements = root.join("requirements.txt");
        fs::write(&requirements, "A==1.0.0\nd==4.0\n").expect("write requirements");
        let lock = root.join("pylock.toml");
        let size = fs::metadata(&b).expect("stat").len();
        // The locked path does not exist: b must be found in the store by hash.
        let gone = root.join("gone/b-2.0-py3-none-any.whl");
        let text = locked("b", "2.0", &gone, size, &sha256_hex(&b));
        fs::write(&lock, format!("lock-version = \"1.0\"\n{text}")).expect("write lock");
        let sources = Sources {
            wheels: vec![c],
            requirements: vec![requirements],
            lock: Some(lock),
            find_links: vec![root.join("links")],
        };
        let mut calls = Vec::new();
        let chosen = resolve(&store, python3(), &sources, &mut ingest(&store, &mut calls))
            .unwrap_or_else(|e| panic!("{e}"));
        let got: Vec<(&str, &str, bool)> = chosen
            .iter()
            .map(|(m, requested)| (m.name.as_str(), m.version.as_str(), *requested))
            .collect();
        assert_eq!(
            got,
            [
                ("a", "1.0", true),
                ("b", "2.0", true),
                ("c", "3.0", true),
                ("d", "4.0", true)
            ]
        );
        // a and b came from the store; only c and d were ingested.
        assert_eq!(
            calls,
            [
                vec!["c-3.0-py3-none-any.whl".to_string()],
                vec!["d-4.0-py3-none-any.whl".to_string()]
            ]
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let a = wheel(&root.join("built"), "a", "1.0");
        let store = store_with(root, std::slice::from_ref(&a));
        let a2 = wheel(&root.join("incoming"), "a", "2.0");
        let misfit = root.join("x-1.0-cp27-cp27m-win32.whl");
        let bad_name = root.join("notawheel.whl");
        for f in [&misfit, &bad_name] {
            fs::write(f, b"").expect("write");
        }
        wheel(&root.join("links"), "c", "1.0");
        let requirements = root.join("req.txt");
        let zeros = "0".repeat(64);
        fs::write(
            &requirements,
            format!(
                "a==1.0\nnope==1.0\nb==1.0 ; platform_machine ~= 'x86'\n\
                 c==1.0 --hash=sha256:{zeros}\nflask\n"
            ),
        )
        .expect("write requirements");
        let size = fs::metadata(&a).expect("stat").len();
        let lock = root.join("pylock.toml");
        let text = [
            locked("a", "1.0", &a, size + 1, &sha256_hex(&a)),
            locked("e", "5.0", &root.join("e-5.0-py3-none-any.whl"), 1, &zeros),
        ]
        .concat();
        fs::write(&lock, format!("lock-version = \"1.0\"\n{text}")).expect("write lock");
        let sources = Sources {
            wheels: vec![a2, misfit, bad_name, root.join("missing.whl")],
            requirements: vec![requirements.clone()],
            lock: Some(lock.clone()),
            find_links: vec![root.join("links")],
        };
        let mut calls = Vec::new();
        let err = resolve(&store, python3(), &sources, &mut ingest(&store, &mut calls))
            .expect_err("unsatisfiable");
        let lines: Vec<String> = err.0.iter().map(ToString::to_string).collect();
        let (req, lock, links) = (
            requirements.display(),
            lock.display(),
            root.join("links").display().to_string(),
        );
        let tag = &python3().tags[0];
        let expected = [
            format!("x-1.0-cp27-cp27m-win32.whl does not fit this interpreter ({tag})"),
            format!("{req}:5: `flask` is not pinned: use flask==VERSION"),
            "a is requested twice, as 2.0 and 1.0".to_string(),
            format!("{req}:2: nope==1.0: no fitting wheel in the store or in --find-links {links}"),
            format!("{req}:4: c==1.0: no fitting wheel with a matching --hash in the store or in --find-links {links}"),
            format!("{lock}: a 1.0: a-1.0-py3-none-any.whl: size is {size} bytes, the lock says {}", size + 1),
            format!("{lock}: e 5.0: e-5.0-py3-none-any.whl is neither in the store nor at its path or in --find-links {links}"),
        ];
        for want in &expected {
            assert!(lines.contains(want), "missing {want:?} in {lines:#?}");
        }
        let starts = [
            "notawheel.whl: ",
            &format!("{}: ", root.join("missing.whl").display()),
            &format!("{req}:3: cannot evaluate marker"),
        ];
        for start in starts {
            assert!(
                lines.iter().any(|l| l.starts_with(start)),
                "no line starts with {start:?} in {lines:#?}"
            );
        }
        assert_eq!(lines.len(), expected.len() + starts.len(), "{lines:#?}");
        let shown = err.to_string();
        assert!(
            shown.starts_with("cannot satisfy 10 requirement(s); nothing was created:\n  "),
            "{shown}"
        );
        assert_eq!(shown.lines().count(), 11, "{shown}");
    }

    #[test]
    fn versions_compare_by_pep440_then_text() {
        let same =
            |have: &str, want: &str| same_version(have, want, version::parse(want).ok().as_ref());
        assert!(same("1.0", "1.0.0"));
        assert!(same("1.0RC1", "1.0rc1"));
        assert!(!same("1.0", "1.0.post1"));
        assert!(same("not.a-version!", "not.a-version!"));
        assert!(!same("not.a-version!", "Not.a-version!"));
    }

    #[test]
    fn locked_files_are_checked_for_size_and_hash() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("w.whl");
        fs::write(&file, b"abc").expect("write");
        let sha = sha256_hex(&file);
        assert!(check_locked_file(&file, Some(3), Some(&sha)).is_ok());
        assert!(check_locked_file(&file, None, None).is_ok());
        assert_eq!(
            check_locked_file(&file, Some(4), None)
                .unwrap_err()
                .to_string(),
            "size is 3 bytes, the lock says 4"
        );
        let zeros = "0".repeat(64);
        assert_eq!(
            check_locked_file(&file, None, Some(&zeros))
                .unwrap_err()
                .to_string(),
            format!("sha256 is {sha}, the lock says {zeros}")
        );
        let missing = check_locked_file(&dir.path().join("nope.whl"), None, None).unwrap_err();
        assert!(matches!(missing, Mismatch::Io(_)), "{missing}");
        assert_eq!(show_dirs(&[]), "(none given)");
        assert_eq!(
            show_dirs(&[PathBuf::from("/a"), PathBuf::from("b")]),
            "/a, b"
        );
    }
}
