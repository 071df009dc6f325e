//! PEP 751 lock files (`pylock.toml`).
//!
//! A lock names every package of an environment with its exact version,
//! an optional marker, and the candidate wheels with their hashes. sitefs
//! installs wheels only, so it reads the wheel entries and treats the
//! other sources (`sdist`, `vcs`, `directory`, `archive`) as "cannot
//! install" rather than guessing at a build.
//!
//! [`Lock::load`] checks everything that does not depend on the target
//! interpreter (syntax, markers, wheel file names) so a broken lock fails
//! early; [`Lock::select`] then picks, for one interpreter, the packages
//! whose markers hold and the best wheel of each, reporting every package
//! it cannot satisfy at once.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::resolve::markers::{Marker, MarkerError};
use crate::resolve::version::{self, SpecifierError, Specifiers, VersionError};
use crate::wheel::{normalize_name, WheelError, WheelName};

/// The top-level keys PEP 751 (version 1.0) defines. Anything else is
/// most likely a typo that would silently change meaning (a misspelled
/// `requires-python` would drop the check), so it is an error; tools put
/// their own data under `[tool]`.
const TOP_LEVEL_KEYS: &[&str] = &[
    "lock-version",
    "environments",
    "requires-python",
    "extras",
    "dependency-groups",
    "default-groups",
    "created-by",
    "packages",
    "tool",
];

/// Why a lock file cannot be used. Load errors name the file; selection
/// errors name the package.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: {source}", path.display())]
    Toml {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("{}: unknown top-level key `{key}` (PEP 751 allows {allowed}; tools keep their data under [tool])", path.display())]
    UnknownKey {
        path: PathBuf,
        key: String,
        allowed: String,
    },
    #[error("{}: lock-version {found:?} is not supported (sitefs reads version 1.x)", path.display())]
    LockVersion { path: PathBuf, found: String },
    #[error("{}: {context}: {source}", path.display())]
    BadMarker {
        path: PathBuf,
        context: String,
        #[source]
        source: MarkerError,
    },
    #[error("{}: {context}: {source}", path.display())]
    Invalid {
        path: PathBuf,
        context: String,
        #[source]
        source: Box<InvalidEntry>,
    },
    #[error(
        "this lock file does not support this interpreter: none of its environments holds ({0})"
    )]
    Environment(String),
    #[error("{what} requires Python {specifier}, but the interpreter is Python {python}")]
    RequiresPython {
        what: String,
        specifier: String,
        python: String,
    },
    #[error("cannot check requires-python: {0}")]
    PythonVersion(#[source] PythonCheck),
    #[error("{context}: {source}")]
    MarkerEval {
        context: String,
        #[source]
        source: MarkerError,
    },
    #[error("package {package}: no wheels ({found}); sitefs installs wheels only")]
    NoWheels { package: String, found: String },
    #[error("package {package}: no wheel fits this interpreter (wheels: {wheels}; {tags})")]
    NoFit {
        package: String,
        wheels: String,
        tags: String,
    },
    #[error("package {name} is locked more than once for this interpreter ({versions}): their markers overlap")]
    Duplicate { name: String, versions: String },
}

/// What is wrong with one entry of a lock file; [`LockError::Invalid`]
/// names the file and the entry.
#[derive(Debug, thiserror::Error)]
pub enum InvalidEntry {
    #[error("missing (expected \"1.0\")")]
    MissingLockVersion,
    #[error(transparent)]
    Specifier(#[from] SpecifierError),
    #[error("empty package name")]
    EmptyName,
    #[error(transparent)]
    Version(#[from] VersionError),
    #[error("a wheel has neither `url` nor `path`")]
    WheelWithoutSource,
    #[error("cannot tell a wheel's file name")]
    WheelFileName,
    #[error("sha256 is not 64 hex digits")]
    Sha256,
    #[error(transparent)]
    WheelName(#[from] WheelError),
    #[error("the wheel is not for package {0}")]
    WrongPackage(String),
    #[error("the wheel is version {found}, not {locked}")]
    WrongVersion { found: String, locked: String },
}

/// Why `requires-python` could not be checked against the interpreter.
#[derive(Debug, thiserror::Error)]
pub enum PythonCheck {
    #[error("python_full_version is not set")]
    NotSet,
    #[error(transparent)]
    Version(#[from] VersionError),
    #[error(transparent)]
    Specifier(#[from] SpecifierError),
}

/// A parsed, validated lock file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lock {
    pub lock_version: String,
    /// Markers of the environments the lock was made for; empty means
    /// "any".
    pub environments: Vec<String>,
    pub requires_python: Option<String>,
    /// Dependency groups installed when the user names none; they feed
    /// the `dependency_groups` marker variable.
    pub default_groups: Vec<String>,
    pub created_by: Option<String>,
    pub packages: Vec<LockedPackage>,
}

/// One `[[packages]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockedPackage {
    pub name: String,
    pub version: Option<String>,
    pub marker: Option<String>,
    pub requires_python: Option<String>,
    pub index: Option<String>,
    pub wheels: Vec<LockedWheel>,
    /// Non-wheel sources the entry has (`sdist`, `vcs`, ...), named in the
    /// error when no wheel is available.
    pub other_sources: Vec<String>,
}

/// One `[[packages.wheels]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockedWheel {
    /// The wheel file name, from `name` or the last segment of `url` /
    /// `path`; checked to be a valid wheel name for this package.
    pub file_name: String,
    pub url: Option<String>,
    /// Resolved against the lock file's directory.
    pub path: Option<PathBuf>,
    pub size: Option<u64>,
    /// Lowercase hex. PEP 751 allows locks that carry only other
    /// algorithms, so this may be absent.
    pub sha256: Option<String>,
}

/// A package chosen for an interpreter and the wheel to install for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selected<'a> {
    pub package: &'a LockedPackage,
    pub wheel: &'a LockedWheel,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RawLock {
    lock_version: String,
    #[serde(default)]
    environments: Vec<String>,
    requires_python: Option<String>,
    #[serde(default)]
    default_groups: Vec<String>,
    created_by: Option<String>,
    packages: Vec<RawPackage>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RawPackage {
    name: String,
    version: Option<String>,
    marker: Option<String>,
    requires_python: Option<String>,
    index: Option<String>,
    #[serde(default)]
    wheels: Vec<RawWheel>,
    sdist: Option<toml::Value>,
    vcs: Option<toml::Value>,
    directory: Option<toml::Value>,
    archive: Option<toml::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RawWheel {
    name: Option<String>,
    url: Option<String>,
    path: Option<String>,
    size: Option<u64>,
    hashes: BTreeMap<String, String>,
}

/// Load-time context: which file, and where relative paths start.
struct Loader<'a> {
    origin: &'a Path,
    base_dir: &'a Path,
}

impl Lock {
    /// Read and validate a lock file.
    pub fn load(path: &Path) -> Result<Lock, LockError> {
        let text = std::fs::read_to_string(path).map_err(|source| LockError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base_dir = path.parent().unwrap_or(Path::new(""));
        Loader {
            origin: path,
            base_dir,
        }
        .parse(&text)
    }

    /// Validate lock text; `origin` names it in messages and wheel `path`s
    /// are resolved against `base_dir`.
    pub fn parse_str(text: &str, origin: &str, base_dir: &Path) -> Result<Lock, LockError> {
        let origin = Path::new(origin);
        Loader { origin, base_dir }.parse(text)
    }

    /// The packages to install on an interpreter with wheel tags
    /// `interp_tags` (most preferred first) and marker environment
    /// `marker_env`, each with its best wheel.
    ///
    /// A package is skipped when its marker is false. Among its wheels the
    /// one whose best-matching tag comes earliest in `interp_tags` wins,
    /// the rule pip uses. All problems are returned together.
    pub fn select<'a>(
        &'a self,
        interp_tags: &[String],
        marker_env: &BTreeMap<String, String>,
    ) -> Result<Vec<Selected<'a>>, Vec<LockError>> {
        self.check_environment(marker_env).map_err(|e| vec![e])?;
        let priority: HashMap<&str, usize> = interp_tags
            .iter()
            .enumerate()
            .rev()
            .map(|(i, t)| (t.as_str(), i))
            .collect();
        let mut chosen = Vec::new();
        let mut errors = Vec::new();
        for package in &self.packages {
            match self.select_package(package, &priority, interp_tags, marker_env) {
                Ok(Some(selected)) => chosen.push(selected),
                Ok(None) => {}
                Err(err) => errors.push(err),
            }
        }
        errors.extend(duplicates(&chosen));
        if errors.is_empty() {
            Ok(chosen)
        } else {
            Err(errors)
        }
    }

    /// The lock-wide checks: one of `environments` must hold, and the
    /// interpreter must satisfy `requires-python`.
    fn check_environment(&self, env: &BTreeMap<String, String>) -> Result<(), LockError> {
        if !self.environments.is_empty() {
            let mut any = false;
            for text in &self.environments {
                any |= self.eval_marker(text, env, || format!("environment {text:?}"))?;
            }
            if !any {
                return Err(LockError::Environment(self.environments.join("; ")));
            }
        }
        match &self.requires_python {
            Some(spec) => check_python(spec, env, "this lock file"),
            None => Ok(()),
        }
    }

    fn eval_marker(
        &self,
        text: &str,
        env: &BTreeMap<String, String>,
        context: impl Fn() -> String,
    ) -> Result<bool, LockError> {
        let groups: Vec<&str> = self.default_groups.iter().map(String::as_str).collect();
        Marker::parse(text)
            .and_then(|m| m.evaluate_with_groups(env, &[], &groups))
            .map_err(|source| LockError::MarkerEval {
                context: context(),
                source,
            })
    }

    /// `Ok(None)` when the package's marker excludes it.
    fn select_package<'a>(
        &self,
        package: &'a LockedPackage,
        priority: &HashMap<&str, usize>,
        interp_tags: &[String],
        env: &BTreeMap<String, String>,
    ) -> Result<Option<Selected<'a>>, LockError> {
        if let Some(marker) = &package.marker {
            if !self.eval_marker(marker, env, || format!("package {}", package.label()))? {
                return Ok(None);
            }
        }
        if let Some(spec) = &package.requires_python {
            check_python(spec, env, &format!("package {}", package.label()))?;
        }
        if package.wheels.is_empty() {
            let found = match package.other_sources.is_empty() {
                true => "and no other source".to_string(),
                false => format!("only {}", package.other_sources.join(", ")),
            };
            return Err(LockError::NoWheels {
                package: package.label(),
                found,
            });
        }
        let best = package
            .wheels
            .iter()
            .filter_map(|w| wheel_priority(w, priority).map(|p| (p, w)))
            .min_by_key(|(p, _)| *p);
        match best {
            Some((_, wheel)) => Ok(Some(Selected { package, wheel })),
            None => Err(no_fit(package, interp_tags)),
        }
    }
}

impl LockedPackage {
    /// `name version` for messages.
    pub fn label(&self) -> String {
        match &self.version {
            Some(v) => format!("{} {v}", self.name),
            None => self.name.clone(),
        }
    }
}

/// The index in the interpreter's tag list of the wheel's best tag, or
/// `None` if no tag is supported.
fn wheel_priority(wheel: &LockedWheel, priority: &HashMap<&str, usize>) -> Option<usize> {
    let name = WheelName::parse(&wheel.file_name).ok()?;
    name.tags()
        .iter()
        .filter_map(|t| priority.get(t.as_str()).copied())
        .min()
}

fn no_fit(package: &LockedPackage, interp_tags: &[String]) -> LockError {
    let wheels: Vec<&str> = package
        .wheels
        .iter()
        .map(|w| w.file_name.as_str())
        .collect();
    let tags = match interp_tags.first() {
        Some(first) => format!("interpreter tags start with {first}"),
        None => "the interpreter has no tags".to_string(),
    };
    LockError::NoFit {
        package: package.label(),
        wheels: wheels.join(", "),
        tags,
    }
}

/// Two selected entries for one name mean the lock's markers overlap;
/// installing either would be a guess.
fn duplicates(chosen: &[Selected<'_>]) -> Vec<LockError> {
    let mut by_name: BTreeMap<String, Vec<&LockedPackage>> = BTreeMap::new();
    for s in chosen {
        by_name
            .entry(normalize_name(&s.package.name))
            .or_default()
            .push(s.package);
    }
    by_name
        .into_values()
        .filter(|entries| entries.len() > 1)
        .map(|entries| LockError::Duplicate {
            name: entries[0].name.clone(),
            versions: entries
                .iter()
                .map(|p| p.version.as_deref().unwrap_or("unversioned"))
                .collect::<Vec<_>>()
                .join(", "),
        })
        .collect()
}

/// Check the interpreter's `python_full_version` against a specifier.
fn check_python(spec: &str, env: &BTreeMap<String, String>, what: &str) -> Result<(), LockError> {
    let check = || -> Result<bool, PythonCheck> {
        let full = env.get("python_full_version").ok_or(PythonCheck::NotSet)?;
        Ok(version::satisfies(&version::parse(full)?, spec)?)
    };
    if check().map_err(LockError::PythonVersion)? {
        Ok(())
    } else {
        Err(LockError::RequiresPython {
            what: what.to_string(),
            specifier: spec.to_string(),
            python: env["python_full_version"].clone(),
        })
    }
}

impl Loader<'_> {
    fn parse(&self, text: &str) -> Result<Lock, LockError> {
        let toml_error = |source| LockError::Toml {
            path: self.origin.to_path_buf(),
            source,
        };
        let table: toml::Table = toml::from_str(text).map_err(toml_error)?;
        self.check_top_level(&table)?;
        let raw: RawLock = toml::from_str(text).map_err(toml_error)?;
        self.lock(raw)
    }

    fn invalid(&self, context: impl Into<String>, source: impl Into<InvalidEntry>) -> LockError {
        LockError::Invalid {
            path: self.origin.to_path_buf(),
            context: context.into(),
            source: Box::new(source.into()),
        }
    }

    /// Reject unsupported major versions before anything else (PEP 751
    /// requires it), and unknown top-level keys in 1.0 files. A newer 1.x
    /// may add keys, so there they only earn a warning.
    fn check_top_level(&self, table: &toml::Table) -> Result<(), LockError> {
        let found = match table.get("lock-version") {
            Some(toml::Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => return Err(self.invalid("lock-version", InvalidEntry::MissingLockVersion)),
        };
        let (major, minor) = split_lock_version(&found).ok_or_else(|| LockError::LockVersion {
            path: self.origin.to_path_buf(),
            found: found.clone(),
        })?;
        if major != 1 {
            return Err(LockError::LockVersion {
                path: self.origin.to_path_buf(),
                found,
            });
        }
        if minor > 0 {
            log::warn!("{}: lock-version {found} is newer than 1.0, the version sitefs knows; reading it as 1.0", self.origin.display());
        }
        for key in table.keys() {
            if TOP_LEVEL_KEYS.contains(&key.as_str()) {
                continue;
            }
            if minor > 0 {
                log::warn!(
                    "{}: ignoring unknown top-level key `{key}`",
                    self.origin.display()
                );
                continue;
            }
            return Err(LockError::UnknownKey {
                path: self.origin.to_path_buf(),
                key: key.clone(),
                allowed: TOP_LEVEL_KEYS.join(", "),
            });
        }
        Ok(())
    }

    fn lock(&self, raw: RawLock) -> Result<Lock, LockError> {
        for env in &raw.environments {
            self.marker(env, "environments")?;
        }
        if let Some(spec) = &raw.requires_python {
            self.specifier(spec, "requires-python")?;
        }
        let packages = raw
            .packages
            .into_iter()
            .map(|p| self.package(p))
            .collect::<Result<_, _>>()?;
        Ok(Lock {
            lock_version: raw.lock_version,
            environments: raw.environments,
            requires_python: raw.requires_python,
            default_groups: raw.default_groups,
            created_by: raw.created_by,
            packages,
        })
    }

    fn marker(&self, text: &str, context: &str) -> Result<(), LockError> {
        Marker::parse(text)
            .map(drop)
            .map_err(|source| LockError::BadMarker {
                path: self.origin.to_path_buf(),
                context: context.to_string(),
                source,
            })
    }

    fn specifier(&self, spec: &str, context: &str) -> Result<(), LockError> {
        spec.parse::<Specifiers>()
            .map(drop)
            .map_err(|e| self.invalid(context, e))
    }

    fn package(&self, raw: RawPackage) -> Result<LockedPackage, LockError> {
        let label = match &raw.version {
            Some(v) => format!("package {} {v}", raw.name),
            None => format!("package {}", raw.name),
        };
        if normalize_name(&raw.name).is_empty() {
            return Err(self.invalid(label, InvalidEntry::EmptyName));
        }
        if let Some(v) = &raw.version {
            version::parse(v).map_err(|e| self.invalid(&label, e))?;
        }
        if let Some(marker) = &raw.marker {
            self.marker(marker, &label)?;
        }
        if let Some(spec) = &raw.requires_python {
            self.specifier(spec, &format!("{label}: requires-python"))?;
        }
        let wheels = raw
            .wheels
            .into_iter()
            .map(|w| self.wheel(w, &raw.name, raw.version.as_deref(), &label))
            .collect::<Result<_, _>>()?;
        let other_sources = [
            ("sdist", &raw.sdist),
            ("vcs", &raw.vcs),
            ("directory", &raw.directory),
            ("archive", &raw.archive),
        ]
        .into_iter()
        .filter(|(_, v)| v.is_some())
        .map(|(k, _)| k.to_string())
        .collect();
        Ok(LockedPackage {
            name: raw.name,
            version: raw.version,
            marker: raw.marker,
            requires_python: raw.requires_python,
            index: raw.index,
            wheels,
            other_sources,
        })
    }

    fn wheel(
        &self,
        raw: RawWheel,
        package: &str,
        version: Option<&str>,
        label: &str,
    ) -> Result<LockedWheel, LockError> {
        if raw.url.is_none() && raw.path.is_none() {
            return Err(self.invalid(label, InvalidEntry::WheelWithoutSource));
        }
        let file_name = raw
            .name
            .clone()
            .or_else(|| raw.url.as_deref().and_then(url_file_name))
            .or_else(|| raw.path.as_deref().and_then(path_file_name))
            .ok_or_else(|| self.invalid(label, InvalidEntry::WheelFileName))?;
        let context = format!("{label}: wheel {file_name}");
        self.check_wheel_name(&file_name, package, version, &context)?;
        let sha256 = raw
            .hashes
            .get("sha256")
            .map(|h| check_sha256(h).ok_or_else(|| self.invalid(&context, InvalidEntry::Sha256)))
            .transpose()?;
        Ok(LockedWheel {
            file_name,
            url: raw.url,
            path: raw.path.map(|p| self.base_dir.join(p)),
            size: raw.size,
            sha256,
        })
    }

    /// A wheel listed under the wrong package (or version) would install
    /// something the lock does not say, so the names must agree.
    fn check_wheel_name(
        &self,
        file_name: &str,
        package: &str,
        version: Option<&str>,
        context: &str,
    ) -> Result<(), LockError> {
        let name = WheelName::parse(file_name).map_err(|e| self.invalid(context, e))?;
        if normalize_name(&name.distribution) != normalize_name(package) {
            return Err(self.invalid(context, InvalidEntry::WrongPackage(package.to_string())));
        }
        if let Some(version) = version {
            let same = match (version::parse(&name.version), version::parse(version)) {
                (Ok(a), Ok(b)) => a == b,
                _ => name.version == version,
            };
            if !same {
                return Err(self.invalid(
                    context,
                    InvalidEntry::WrongVersion {
                        found: name.version,
                        locked: version.to_string(),
                    },
                ));
            }
        }
        Ok(())
    }
}

/// `"1.0"` to `(1, 0)`.
fn split_lock_version(text: &str) -> Option<(u64, u64)> {
    let (major, minor) = text.split_once('.').unwrap_or((text, "0"));
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// A sha256 in hex (any case) as lowercase hex; `None` if it is not one.
fn check_sha256(hex: &str) -> Option<String> {
    hex.parse::<crate::hashing::Digest>()
        .ok()
        .map(|d| d.to_hex())
}

/// The last path segment of a URL, without query or fragment and with
/// percent-escapes decoded (`%2B` for a local version's `+` is common).
fn url_file_name(url: &str) -> Option<String> {
    let end = url.find(['?', '#']).unwrap_or(url.len());
    let segment = url[..end].rsplit('/').next()?;
    let decoded = percent_decode(segment);
    (!decoded.is_empty()).then_some(decoded)
}

fn path_file_name(path: &str) -> Option<String> {
    Path::new(path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCK: &str = r#"
lock-version = "1.0"
created-by = "uv"
requires-python = ">=3.9"
default-groups = ["dev"]

[[packages]]
name = "certifi"
version = "2024.8.30"
index = "https://pypi.org/simple"
wheels = [{ url = "https://files.pythonhosted.org/packages/12/90/certifi-2024.8.30-py3-none-any.whl", upload-time = 2024-08-30T01:55:02Z, size = 167321, hashes = { sha256 = "922820B53DB7A7257FFBDA3F597266D435245903D80737E34F8A45FF3E3230D8" } }]

[[packages]]
name = "charset-normalizer"
version = "3.4.0"
sdist = { url = "https://example.com/charset_normalizer-3.4.0.tar.gz", hashes = { sha256 = "223217c3d4f82c3ac5e29032b3f1c2eb0fb591b72161f86d93f5719079dae93e" } }

[[packages.wheels]]
name = "charset_normalizer-3.4.0-py3-none-any.whl"
url = "https://example.com/charset_normalizer-3.4.0-py3-none-any.whl"
hashes = { sha256 = "fe9f97feb71aa9896b81973a7bbada8c49501dc73e58a10fcef6663af95e5079" }

[[packages.wheels]]
url = "https://example.com/charset_normalizer-3.4.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
size = 142000
hashes = { sha256 = "0de7b687289d3c1b3e8660d0741874abe7888100efe14bd0f9fd7141bcbda92b" }

[[packages.wheels]]
path = "wheels/charset_normalizer-3.4.0-cp311-cp311-win_amd64.whl"
hashes = { sha512 = "abc" }

[[packages]]
name = "colorama"
version = "0.4.6"
marker = "sys_platform == 'win32'"
wheels = [{ name = "colorama-0.4.6-py2.py3-none-any.whl", url = "https://example.com/colorama-0.4.6-py2.py3-none-any.whl", hashes = { sha256 = "4f1d9991f5acc0ca119f9d443620b77f9d6b33703e51011c16baf57afb285fc6" } }]

[[packages]]
name = "pytest"
version = "8.3.3"
marker = "'dev' in dependency_groups"
wheels = [{ url = "https://example.com/pytest-8.3.3-py3-none-any.whl", hashes = { sha256 = "a6853c7375b2663155079443d2e45de913a911a11d669df02a50814944db57b2" } }]

[tool.uv]
requires-python = ">=3.9"
"#;

    fn tags() -> Vec<String> {
        [
            "cp311-cp311-manylinux_2_36_x86_64",
            "cp311-cp311-manylinux_2_17_x86_64",
            "cp311-abi3-manylinux_2_17_x86_64",
            "cp311-none-any",
            "py3-none-any",
        ]
        .map(String::from)
        .to_vec()
    }

    fn linux_env() -> BTreeMap<String, String> {
        [
            ("python_version", "3.11"),
            ("python_full_version", "3.11.4"),
            ("sys_platform", "linux"),
            ("platform_machine", "x86_64"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn parse(text: &str) -> Result<Lock, LockError> {
        Lock::parse_str(text, "pylock.toml", Path::new("/locks"))
    }

    #[test]
    fn loads_a_realistic_lock() {
        let lock = parse(LOCK).unwrap();
        assert_eq!(lock.lock_version, "1.0");
        assert_eq!(lock.requires_python.as_deref(), Some(">=3.9"));
        assert_eq!(lock.packages.len(), 4);
        let certifi = &lock.packages[0];
        assert_eq!(
            certifi.wheels[0].file_name,
            "certifi-2024.8.30-py3-none-any.whl"
        );
        assert_eq!(certifi.wheels[0].size, Some(167321));
        assert_eq!(
            certifi.wheels[0].sha256.as_deref(),
            Some("922820b53db7a7257ffbda3f597266d435245903d80737e34f8a45ff3e3230d8")
        );
        let charset = &lock.packages[1];
        assert_eq!(charset.other_sources, ["sdist"]);
        assert_eq!(
            charset.wheels[2].path.as_deref(),
            Some(Path::new(
                "/locks/wheels/charset_normalizer-3.4.0-cp311-cp311-win_amd64.whl"
            ))
        );
        assert_eq!(charset.wheels[2].sha256, None);
    }

    #[test]
    fn selects_best_wheels_and_skips_excluded_packages() {
        let lock = parse(LOCK).unwrap();
        let selected = lock.select(&tags(), &linux_env()).unwrap();
        let picked: Vec<(&str, &str)> = selected
            .iter()
            .map(|s| (s.package.name.as_str(), s.wheel.file_name.as_str()))
            .collect();
        assert_eq!(
            picked,
            [
                ("certifi", "certifi-2024.8.30-py3-none-any.whl"),
                (
                    "charset-normalizer",
                    "charset_normalizer-3.4.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
                ),
                ("pytest", "pytest-8.3.3-py3-none-any.whl"),
            ]
        );

        let mut windows = linux_env();
        windows.insert("sys_platform".into(), "win32".into());
        let win_tags = vec![
            "cp311-cp311-win_amd64".to_string(),
            "py3-none-any".to_string(),
        ];
        let selected = lock.select(&win_tags, &windows).unwrap();
        let names: Vec<&str> = selected
            .iter()
            .map(|s| s.wheel.file_name.as_str())
            .collect();
        assert!(names.contains(&"charset_normalizer-3.4.0-cp311-cp311-win_amd64.whl"));
        assert!(names.contains(&"colorama-0.4.6-py2.py3-none-any.whl"));
    }

    #[test]
    fn reports_every_unsatisfiable_package() {
        let text = format!(
            "{LOCK}\n{}",
            r#"
[[packages]]
name = "pywin32"
version = "306"
wheels = [
  { url = "https://example.com/pywin32-306-cp311-cp311-win_amd64.whl", hashes = { sha256 = "a7639f51c184c0272e93f244eb24dafca9b1855707d94c192d4a0b4c01e1100e" } },
  { url = "https://example.com/pywin32-306-cp311-cp311-win32.whl", hashes = { sha256 = "b7639f51c184c0272e93f244eb24dafca9b1855707d94c192d4a0b4c01e1100e" } },
]

[[packages]]
name = "pyyaml"
version = "6.0.2"
sdist = { url = "https://example.com/PyYAML-6.0.2.tar.gz", hashes = { sha256 = "d584d9ec91ad65861cc08d42e834324ef890a082e591037abe114850ff7bbc3e" } }
"#
        )
        .replace("[tool.uv]\nrequires-python = \">=3.9\"\n", "");
        let lock = parse(&text).unwrap();
        let errs: Vec<String> = lock
            .select(&tags(), &linux_env())
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            errs,
            [
                "package pywin32 306: no wheel fits this interpreter (wheels: pywin32-306-cp311-cp311-win_amd64.whl, pywin32-306-cp311-cp311-win32.whl; interpreter tags start with cp311-cp311-manylinux_2_36_x86_64)",
                "package pyyaml 6.0.2: no wheels (only sdist); sitefs installs wheels only",
            ]
        );
    }

    #[test]
    fn lock_wide_requirements() {
        let mut old = linux_env();
        old.insert("python_full_version".into(), "3.8.10".into());
        let errs = parse(LOCK).unwrap().select(&tags(), &old).unwrap_err();
        assert_eq!(
            errs[0].to_string(),
            "this lock file requires Python >=3.9, but the interpreter is Python 3.8.10"
        );
        let text = LOCK.replace(
            "default-groups",
            "environments = [\"sys_platform == 'darwin'\"]\ndefault-groups",
        );
        let errs = parse(&text)
            .unwrap()
            .select(&tags(), &linux_env())
            .unwrap_err();
        assert!(matches!(errs[..], [LockError::Environment(_)]), "{errs:?}");
    }

    #[test]
    fn overlapping_markers_are_an_error() {
        let text = r#"
lock-version = "1.0"
[[packages]]
name = "numpy"
version = "1.26.4"
marker = "python_version < '3.12'"
wheels = [{ url = "https://example.com/numpy-1.26.4-py3-none-any.whl", hashes = {} }]
[[packages]]
name = "NumPy"
version = "2.1.0"
marker = "python_version >= '3.10'"
wheels = [{ url = "https://example.com/numpy-2.1.0-py3-none-any.whl", hashes = {} }]
"#;
        let errs = parse(text)
            .unwrap()
            .select(&tags(), &linux_env())
            .unwrap_err();
        assert!(
            matches!(&errs[..], [LockError::Duplicate { .. }]),
            "{errs:?}"
        );
    }

    #[test]
    fn load_errors() {
        let cases: &[(&str, &str)] = &[
            ("lock-version = \"2.0\"\npackages = []", "lock-version \"2.0\" is not supported"),
            ("packages = []", "lock-version: missing"),
            ("lock-version = \"1.0\"\nrequires_python = \">=3\"\npackages = []", "unknown top-level key `requires_python`"),
            ("lock-version = \"1.0\"\npackages = [", "pylock.toml: TOML parse error"),
            ("lock-version = \"1.0\"\nenvironments = [\"os_name = 'nt'\"]\npackages = []", "environments: invalid marker"),
            ("lock-version = \"1.0\"\nrequires-python = \"3\"\npackages = []", "requires-python: invalid version specifier"),
            (
                "lock-version = \"1.0\"\n[[packages]]\nname = \"a\"\nversion = \"1\"\nwheels = [{ url = \"https://x/b-1-py3-none-any.whl\", hashes = {} }]",
                "package a 1: wheel b-1-py3-none-any.whl: the wheel is not for package a",
            ),
            (
                "lock-version = \"1.0\"\n[[packages]]\nname = \"a\"\nversion = \"1\"\nwheels = [{ url = \"https://x/a-2-py3-none-any.whl\", hashes = {} }]",
                "the wheel is version 2, not 1",
            ),
            (
                "lock-version = \"1.0\"\n[[packages]]\nname = \"a\"\nwheels = [{ name = \"a-1-py3-none-any.whl\", hashes = {} }]",
                "neither `url` nor `path`",
            ),
            (
                "lock-version = \"1.0\"\n[[packages]]\nname = \"a\"\nwheels = [{ url = \"https://x/a-1.tar.gz\", hashes = {} }]",
                "invalid wheel file name",
            ),
            (
                "lock-version = \"1.0\"\n[[packages]]\nname = \"a\"\nwheels = [{ url = \"https://x/a-1-py3-none-any.whl\", hashes = { sha256 = \"xyz\" } }]",
                "sha256 is not 64 hex digits",
            ),
        ];
        for (text, expected) in cases {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(expected), "{text}\n=> {err}");
        }
    }

    #[test]
    fn newer_minor_versions_and_encoded_urls() {
        let text = "lock-version = \"1.1\"\nfuture-key = 1\n[[packages]]\nname = \"torch\"\nversion = \"2.1.0+cpu\"\nwheels = [{ url = \"https://x/torch-2.1.0%2Bcpu-cp311-cp311-linux_x86_64.whl?x=1#frag\", hashes = {} }]\n";
        let lock = parse(text).unwrap();
        assert_eq!(
            lock.packages[0].wheels[0].file_name,
            "torch-2.1.0+cpu-cp311-cp311-linux_x86_64.whl"
        );
    }

    #[test]
    fn load_reads_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pylock.toml");
        std::fs::write(&path, LOCK).unwrap();
        let lock = Lock::load(&path).unwrap();
        assert_eq!(
            lock.packages[1].wheels[2].path.as_deref(),
            Some(
                dir.path()
                    .join("wheels/charset_normalizer-3.4.0-cp311-cp311-win_amd64.whl")
                    .as_path()
            )
        );
        let err = Lock::load(&dir.path().join("missing.toml")).unwrap_err();
        assert!(matches!(err, LockError::Read { .. }), "{err}");
    }
}
