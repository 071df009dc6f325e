//! The manifest: a small TOML file naming an environment's store,
//! interpreter and distributions. It is the whole truth about an env: the
//! same manifest over the same store gives the same tree anywhere.
//!
//! ```toml
//! version = 1
//! store = "/var/lib/sitefs"        # relative paths are from this file
//! on_conflict = "error"            # or "last-wins"
//!
//! [python]
//! version = "3.11"
//! cache_tag = "cpython-311"
//!
//! [[dist]]
//! name = "numpy"
//! version = "2.4.6"
//! id = "numpy-2.4.6-1f2e3d4c5b6a7980"
//! requested = true                 # optional: marks REQUESTED
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::env::record::{installed_record, InstalledExtras};
use crate::env::scripts::{env_files, EnvLayout};
use crate::resolve::interpreter::Interpreter;
use crate::store::dist_index::{DistIndex, DistMeta};
use crate::store::PycSizes;
use crate::store::{Store, StoreError};
use crate::view::{Conflict, ConflictPolicy, Lazy, View, ViewBuilder};
use crate::wheel::normalize_name;

/// The only manifest format version this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub version: u32,
    pub store: PathBuf,
    #[serde(default, skip_serializing_if = "is_default")]
    pub on_conflict: OnConflict,
    pub python: PythonSpec,
    /// Present when the manifest belongs to a venv made by `env create`:
    /// the view then also serves the RECORD of what the venv holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<EnvSpec>,
    #[serde(default, rename = "dist")]
    pub dists: Vec<DistRef>,
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum OnConflict {
    #[default]
    Error,
    LastWins,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PythonSpec {
    /// `X.Y`, names `lib/pythonX.Y/site-packages`.
    pub version: String,
    /// `sys.implementation.cache_tag`, names the pycs to serve.
    pub cache_tag: String,
    /// The interpreter the env was made with (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executable: Option<PathBuf>,
}

impl PythonSpec {
    /// Both fields become path components (`lib/pythonX.Y`, the store's
    /// `bytecode/<cache_tag>/` and pyc names), so a hand-edited manifest
    /// must not smuggle a `/` or `..` into them.
    fn check(&self) -> Result<(), String> {
        let is_xy = self.version.split_once('.').is_some_and(|(x, y)| {
            [x, y]
                .iter()
                .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        });
        if !is_xy {
            return Err(format!(
                "python version {:?} is not X.Y (e.g. \"3.11\")",
                self.version
            ));
        }
        let tag = &self.cache_tag;
        let tag_ok = !tag.is_empty()
            && !tag.starts_with('.')
            && tag
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !tag_ok {
            return Err(format!(
                "python cache_tag {tag:?} is not a plain name (e.g. \"cpython-311\")"
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EnvSpec {
    /// The venv directory (its `bin/python` is the scripts' interpreter).
    pub prefix: PathBuf,
}

impl EnvSpec {
    pub fn layout(&self, python: &PythonSpec) -> EnvLayout {
        EnvLayout {
            prefix: self.prefix.clone(),
            python_version: python.version.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DistRef {
    pub name: String,
    pub version: String,
    pub id: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub requested: bool,
}

impl DistRef {
    /// Name a store dist.
    pub fn of(meta: &DistMeta, requested: bool) -> DistRef {
        DistRef {
            name: meta.name.clone(),
            version: meta.version.clone(),
            id: meta.id.clone(),
            requested,
        }
    }
}

/// Why a manifest cannot be used. One line each, naming what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest {path}: {err}")]
    Read { path: String, err: std::io::Error },
    #[error("manifest {path}{at}: {msg}")]
    Parse {
        path: String,
        at: String,
        msg: String,
    },
    #[error("manifest {path}: {msg}")]
    Invalid { path: String, msg: String },
    #[error("manifest {path}: format version {found} is not supported (this sitefs reads version {FORMAT_VERSION})")]
    Version { path: String, found: u32 },
    #[error("manifest {path}: {err}")]
    Store { path: String, err: StoreError },
    #[error("manifest {path}: dist {id:?} is {found}, but the manifest says {wanted}")]
    Mismatch {
        path: String,
        id: String,
        found: String,
        /// `name version` as the manifest gives them.
        wanted: String,
    },
    #[error(
        "manifest {path}: {dist} has no bytecode for {cache_tag} in the store: run `{command}`"
    )]
    NoBytecode {
        path: String,
        /// `name version (id)`.
        dist: String,
        cache_tag: String,
        /// The `sitefs store compile` command that fixes it.
        command: String,
    },
    #[error("manifest {path}: {conflict}")]
    Conflict { path: String, conflict: Conflict },
    #[error("manifest {path}: {name} is listed twice")]
    Duplicate { path: String, name: String },
}

impl Manifest {
    /// A manifest for `interp` naming `dists` of the store at `store`.
    pub fn new(
        store: &Path,
        interp: &Interpreter,
        env: Option<EnvSpec>,
        dists: Vec<DistRef>,
    ) -> Manifest {
        Manifest {
            version: FORMAT_VERSION,
            store: store.to_path_buf(),
            on_conflict: OnConflict::default(),
            python: PythonSpec {
                version: interp.version.clone(),
                cache_tag: interp.cache_tag.clone(),
                executable: Some(interp.executable.clone()),
            },
            env,
            dists,
        }
    }

    /// Read and parse a manifest file.
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|err| ManifestError::Read {
            path: p.clone(),
            err,
        })?;
        Self::parse(&text, &p)
    }

    /// Parse manifest text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Manifest, ManifestError> {
        let m: Manifest = toml::from_str(text).map_err(|e| parse_error(text, origin, &e))?;
        if m.version != FORMAT_VERSION {
            return Err(ManifestError::Version {
                path: origin.to_string(),
                found: m.version,
            });
        }
        m.python.check().map_err(|msg| ManifestError::Invalid {
            path: origin.to_string(),
            msg,
        })?;
        Ok(m)
    }

    /// Write atomically (temp file + rename): readers see the old or the
    /// new manifest, never half of one.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let text = toml::to_string(self).map_err(std::io::Error::other)?;
        let tmp = path.with_extension(format!("toml.tmp.{}", std::process::id()));
        std::fs::write(
            &tmp,
            format!("# sitefs manifest: the distributions of this environment\n{text}"),
        )?;
        std::fs::rename(&tmp, path)
    }

    /// The store path, resolved against the manifest's directory.
    pub fn store_path(&self, manifest_path: &Path) -> PathBuf {
        match manifest_path.parent() {
            Some(dir) if self.store.is_relative() => dir.join(&self.store),
            _ => self.store.clone(),
        }
    }

    pub fn policy(&self) -> ConflictPolicy {
        match self.on_conflict {
            OnConflict::Error => ConflictPolicy::Error,
            OnConflict::LastWins => ConflictPolicy::LastWins,
        }
    }
}

/// Turn a TOML error into one line: position and message, no snippet.
fn parse_error(text: &str, origin: &str, e: &toml::de::Error) -> ManifestError {
    let at = e.span().map_or(String::new(), |s| {
        let before = &text.as_bytes()[..s.start.min(text.len())];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        format!(" line {line}")
    });
    ManifestError::Parse {
        path: origin.to_string(),
        at,
        msg: e.message().trim().replace('\n', " "),
    }
}

/// Threads reading dist indexes while a view is built: reading and
/// parsing them costs about 1.5x merging them into the view, so with two
/// readers the merge, on the mount's critical path, never waits.
const LOADERS: usize = 2;

/// The store a manifest names.
pub fn open_store(m: &Manifest, manifest_path: &Path) -> Result<Store, ManifestError> {
    Store::open(&m.store_path(manifest_path)).map_err(|err| ManifestError::Store {
        path: manifest_path.display().to_string(),
        err,
    })
}

/// Check a manifest against its store and build its view: every problem
/// a mount would hit, found before mounting. `dir_mtime` is what the view
/// serves as directory mtime. Indexes already in `store`'s cache (those
/// `env create` just resolved) are not read again.
pub fn build_view(
    m: &Manifest,
    store: &Store,
    manifest_path: &Path,
    dir_mtime: SystemTime,
) -> Result<View, ManifestError> {
    let path = manifest_path.display().to_string();
    let view = std::thread::scope(|scope| {
        // Reading and parsing the dists' indexes costs more than merging
        // them: LOADERS threads read dists round-robin, each in manifest
        // order on its own channel, while this thread merges in order.
        let rxs: Vec<_> = (0..LOADERS)
            .map(|k| {
                let (tx, rx) = std::sync::mpsc::channel();
                let (loader, tag) = (store, &m.python.cache_tag);
                scope.spawn(move || {
                    for d in m.dists.iter().skip(k).step_by(LOADERS) {
                        let index = loader.load(&d.id);
                        let pycs = index.is_ok().then(|| loader.pyc_sizes(tag, &d.id));
                        if tx.send((index, pycs)).is_err() {
                            break;
                        }
                    }
                });
                rx
            })
            .collect();
        let mut seen = std::collections::HashSet::new();
        let mut builder = ViewBuilder::new(m.policy(), dir_mtime, &m.python.cache_tag);
        for (i, d) in m.dists.iter().enumerate() {
            if !seen.insert(normalize_name(&d.name)) {
                return Err(ManifestError::Duplicate {
                    path,
                    name: d.name.clone(),
                });
            }
            let loaded = rxs[i % LOADERS]
                .recv()
                .expect("an index loader stops only when told");
            add_dist(m, &path, store, &mut builder, d, loaded)?;
        }
        Ok(builder.finish())
    })?;
    Ok(view)
}

/// What the loader thread found for one dist: its index, then its pyc
/// sizes (`None` when there is no bytecode for the manifest's python).
type Loaded = (
    Result<Arc<DistIndex>, StoreError>,
    Option<Result<Option<PycSizes>, StoreError>>,
);

/// Check one loaded dist against the manifest's entry and add it.
fn add_dist(
    m: &Manifest,
    path: &str,
    store: &Store,
    builder: &mut ViewBuilder,
    d: &DistRef,
    (index, pycs): Loaded,
) -> Result<(), ManifestError> {
    let store_err = |err| ManifestError::Store {
        path: path.to_string(),
        err,
    };
    let idx = index.map_err(|e| match e {
        StoreError::NoSuchDist(..) => store_err(StoreError::NoSuchDist(
            format!("{} {} ({})", d.name, d.version, d.id),
            store.root().display().to_string(),
        )),
        e => store_err(e),
    })?;
    if normalize_name(&idx.meta.name) != normalize_name(&d.name) || idx.meta.version != d.version {
        return Err(ManifestError::Mismatch {
            path: path.to_string(),
            id: d.id.clone(),
            found: format!("{} {}", idx.meta.name, idx.meta.version),
            wanted: format!("{} {}", d.name, d.version),
        });
    }
    let pycs = pycs
        .unwrap_or(Ok(None))
        .map_err(store_err)?
        .ok_or_else(|| ManifestError::NoBytecode {
            path: path.to_string(),
            dist: format!("{} {} ({})", d.name, d.version, d.id),
            cache_tag: m.python.cache_tag.clone(),
            command: format!(
                "sitefs store compile --store {} --python PYTHON {}=={}",
                store.root().display(),
                d.name,
                d.version
            ),
        })?;
    let conflict = |conflict| ManifestError::Conflict {
        path: path.to_string(),
        conflict,
    };
    builder.add_dist(&idx, &pycs).map_err(conflict)?;
    add_install_markers(builder, &idx.meta.dist_info, d.requested).map_err(conflict)?;
    if let Some(record) = lazy_record(m, store, d) {
        builder
            .add_lazy(&format!("{}/RECORD", idx.meta.dist_info), record)
            .map_err(conflict)?;
    }
    Ok(())
}

/// The RECORD of dist `d` installed in the manifest's venv, scripts and
/// data included, rendered when first read (`None` for a manifest without
/// a venv). It reads the dist's index and pyc sizes then, from the store's
/// cache of loaded indexes when the mount built its view, so a view loaded
/// from its image makes it the same way.
pub(crate) fn lazy_record(m: &Manifest, store: &Store, d: &DistRef) -> Option<Arc<Lazy>> {
    let layout = m.env.as_ref()?.layout(&m.python);
    let (store, cache_tag) = (store.clone(), m.python.cache_tag.clone());
    let (id, requested) = (d.id.clone(), d.requested);
    Some(Lazy::new(move || {
        let loaded = store.load(&id).and_then(|idx| {
            let pycs = store.pyc_sizes(&cache_tag, &id)?.unwrap_or_default();
            Ok((idx, pycs))
        });
        let (idx, pycs) = match loaded {
            Ok(l) => l,
            Err(e) => {
                log::error!("RECORD of {id}: {e}");
                return Vec::new();
            }
        };
        let files = env_files(&idx, &layout, &|d| std::fs::read(store.object_path(d)))
            .unwrap_or_else(|e| {
                log::error!("RECORD of {id}: cannot read its scripts from the store: {e}");
                Vec::new()
            });
        let extras = InstalledExtras {
            installer: INSTALLER,
            requested,
            env_files: &files,
            up_to_prefix: "../../../",
        };
        installed_record(&idx, &cache_tag, &pycs, &extras).into_bytes()
    }))
}

/// What `INSTALLER` says: pip shows it and tools use it to tell who
/// manages a dist.
pub const INSTALLER: &[u8] = b"sitefs\n";

/// INSTALLER says who installed the dist (pip shows it in `pip list -v`
/// and refuses to manage dists installed by others); REQUESTED marks dists
/// the user asked for, as pip writes it.
fn add_install_markers(
    b: &mut ViewBuilder,
    dist_info: &str,
    requested: bool,
) -> Result<(), Conflict> {
    b.add_inline(
        &format!("{dist_info}/INSTALLER"),
        Arc::from(&b"sitefs\n"[..]),
        false,
    )?;
    if requested {
        b.add_inline(
            &format!("{dist_info}/REQUESTED"),
            Arc::from(&b""[..]),
            false,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
version = 1
store = "store"
[python]
version = "3.11"
cache_tag = "cpython-311"
[[dist]]
name = "pkg"
version = "1.0"
id = "pkg-1.0-0123456789abcdef"
requested = true
"#;

    #[test]
    fn parses_and_round_trips() {
        let m = Manifest::parse(GOOD, "m.toml").unwrap();
        assert_eq!(m.dists.len(), 1);
        assert_eq!(
            m.store_path(Path::new("/envs/a/sitefs.toml")),
            Path::new("/envs/a/store")
        );
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sitefs.toml");
        m.save(&p).unwrap();
        assert_eq!(Manifest::load(&p).unwrap(), m);
    }

    #[test]
    fn errors_are_one_line_and_name_the_problem() {
        let unknown = GOOD.replace("requested = true", "requested = true\nfrobnicate = 1");
        let e = Manifest::parse(&unknown, "m.toml").unwrap_err().to_string();
        assert!(
            e.contains("unknown field") && e.contains("frobnicate") && e.contains("line "),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");
        let v2 = GOOD.replace("version = 1", "version = 2");
        let e = Manifest::parse(&v2, "m.toml").unwrap_err().to_string();
        assert!(e.contains("format version 2"), "{e}");
        let e = Manifest::parse("version = 1\n", "m.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing field"), "{e}");
    }

    #[test]
    fn python_fields_must_be_plain_path_parts() {
        for (from, to, why) in [
            ("\"3.11\"", "\"3.11/../../x\"", "not X.Y"),
            ("\"3.11\"", "\"3\"", "not X.Y"),
            ("\"cpython-311\"", "\"../../etc\"", "not a plain name"),
            ("\"cpython-311\"", "\"\"", "not a plain name"),
        ] {
            let bad = GOOD.replacen(from, to, 1);
            let e = Manifest::parse(&bad, "m.toml").unwrap_err().to_string();
            assert!(
                e.starts_with("manifest m.toml: python") && e.contains(why),
                "{e}"
            );
        }
    }
}
