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

use serde::{Deserialize, Serialize};

use crate::install::scripts::EnvLayout;
use crate::interpreter::Interpreter;
use crate::store::dist_index::DistMeta;

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

/// What to do when two dists provide different files at one path: fail
/// (the default), or let the later dist win as pip silently does.
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

/// Why a manifest file cannot be read as one. One line each, naming what
/// to fix; what it names in its store is checked by
/// [`crate::view::build`].
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest {}: {err}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        err: std::io::Error,
    },
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
        let text = std::fs::read_to_string(path).map_err(|err| ManifestError::Read {
            path: path.to_path_buf(),
            err,
        })?;
        Self::parse(&text, &path.display().to_string())
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

    /// What the view does when two dists provide different files at one path.
    pub fn policy(&self) -> OnConflict {
        self.on_conflict
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
