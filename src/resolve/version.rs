//! PEP 440 versions and specifier sets, as pins, `requires-python` and
//! markers compare them.
//!
//! Parsing, normalization and ordering are `pep440_rs`'s. This module
//! owns what it gets wrong or leaves out, so each departure lives in one
//! place: three operators whose `pep440_rs` 0.7.3 results contradict
//! PEP 440 (see [`contains`]), `===` as the plain string comparison
//! PEP 440 defines, and one-line errors that name the whole specifier.

use std::str::FromStr;

pub use pep440_rs::{Operator, Version};
use pep440_rs::{
    OperatorParseError, VersionParseError, VersionPattern, VersionPatternParseError,
    VersionSpecifier, VersionSpecifierBuildError,
};

/// A version that does not parse; the text is kept for the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a valid PEP 440 version: {source}")]
pub struct VersionError {
    pub text: String,
    #[source]
    source: VersionParseError,
}

/// A specifier set (`>=3.8,<4`) that cannot be used, with the clause at
/// fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid version specifier {specifier:?}: {reason}")]
pub struct SpecifierError {
    pub specifier: String,
    #[source]
    pub reason: ClauseError,
}

/// Why one comma-separated clause of a specifier set is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClauseError {
    #[error("empty clause")]
    Empty,
    #[error("{0:?} has no comparison operator")]
    NoOperator(String),
    #[error("{clause:?} is not a valid clause: {source}")]
    Invalid {
        clause: String,
        #[source]
        source: Pep440Error,
    },
}

/// What `pep440_rs` rejected in one clause.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Pep440Error {
    #[error(transparent)]
    Operator(#[from] OperatorParseError),
    #[error(transparent)]
    Version(#[from] VersionPatternParseError),
    #[error(transparent)]
    Combination(#[from] VersionSpecifierBuildError),
}

/// Parse any spelling PEP 440 accepts (`v1.0`, `1.0-RC.1`, `1!2.0`,
/// `1.0.post1.dev2+local.7`, ...).
pub fn parse(text: &str) -> Result<Version, VersionError> {
    Version::from_str(text.trim()).map_err(|source| VersionError {
        text: text.to_string(),
        source,
    })
}

/// Whether `version` satisfies a specifier set such as `>=3.8, !=3.9.*,
/// <4` (used for `requires-python`). Pre-releases are accepted, as they
/// are when evaluating markers.
pub fn satisfies(version: &Version, specifiers: &str) -> Result<bool, SpecifierError> {
    Ok(specifiers.parse::<Specifiers>()?.contains(version))
}

/// PEP 440 semantics of `version OP text`, where `text` is the right-hand
/// side of one specifier (it may end in `.*` for `==`/`!=`). `None` when
/// `text` is not valid for `op`, so marker comparisons can fall back to
/// strings the way `packaging` does.
pub fn compare(version: &Version, op: Operator, text: &str) -> Option<bool> {
    let spec = specifier(op, text).ok()?;
    Some(contains(&spec, version))
}

/// `op` applied to the version (or `X.Y.*` prefix) in `text`.
fn specifier(op: Operator, text: &str) -> Result<VersionSpecifier, Pep440Error> {
    let pattern = VersionPattern::from_str(text.trim())?;
    Ok(VersionSpecifier::from_pattern(op, pattern)?)
}

/// A parsed specifier set; empty text means "any version".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Specifiers(Vec<Clause>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Clause {
    Pep440(VersionSpecifier),
    /// `===text`: PEP 440 makes this a string comparison that ignores
    /// version semantics (`===1.0` does not match `1.0.0`), and allows
    /// text that is no version at all; `pep440_rs` parses it as a version.
    Arbitrary(String),
}

impl Specifiers {
    /// True when every clause holds.
    pub fn contains(&self, version: &Version) -> bool {
        self.0.iter().all(|clause| match clause {
            Clause::Pep440(spec) => contains(spec, version),
            Clause::Arbitrary(text) => version.to_string().eq_ignore_ascii_case(text),
        })
    }
}

impl FromStr for Specifiers {
    type Err = SpecifierError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.trim().is_empty() {
            return Ok(Specifiers(Vec::new()));
        }
        text.split(',')
            .map(|clause| Clause::parse(clause.trim()))
            .collect::<Result<_, _>>()
            .map(Specifiers)
            .map_err(|reason| SpecifierError {
                specifier: text.to_string(),
                reason,
            })
    }
}

impl Clause {
    fn parse(clause: &str) -> Result<Clause, ClauseError> {
        if clause.is_empty() {
            return Err(ClauseError::Empty);
        }
        if let Some(text) = clause.strip_prefix("===") {
            return Ok(Clause::Arbitrary(text.trim().to_string()));
        }
        let split = clause
            .find(|c| !matches!(c, '=' | '!' | '~' | '<' | '>'))
            .unwrap_or(clause.len());
        if split == 0 {
            return Err(ClauseError::NoOperator(clause.to_string()));
        }
        let (op, text) = clause.split_at(split);
        Operator::from_str(op)
            .map_err(Pep440Error::from)
            .and_then(|op| specifier(op, text))
            .map(Clause::Pep440)
            .map_err(|source| ClauseError::Invalid {
                clause: clause.to_string(),
                source,
            })
    }
}

/// `spec.contains(version)`, except where `pep440_rs` 0.7.3 contradicts
/// PEP 440 (and `packaging`):
///
/// - `== V.*` / `!= V.*` must zero-pad the candidate's release: `3` is not
///   `3.11.*`, but `pep440_rs` only compares the common prefix.
/// - `< V` excludes pre-releases of V only when V is not itself one:
///   `3.11.0rc1 < 3.11.0rc2` and `1.0.dev1 < 1.0a1` hold, and a
///   pre-release in another epoch is never "of V"; `pep440_rs` excludes
///   every pre-release with V's release numbers.
fn contains(spec: &VersionSpecifier, version: &Version) -> bool {
    let target = spec.version();
    match spec.operator() {
        Operator::EqualStar => has_release_prefix(version, target),
        Operator::NotEqualStar => !has_release_prefix(version, target),
        Operator::LessThan => {
            version < target
                && !(!target.any_prerelease()
                    && version.any_prerelease()
                    && same_base(version, target))
        }
        _ => spec.contains(version),
    }
}

/// Whether `version`'s release, zero-padded, starts with `prefix`'s.
fn has_release_prefix(version: &Version, prefix: &Version) -> bool {
    version.epoch() == prefix.epoch()
        && prefix
            .release()
            .iter()
            .enumerate()
            .all(|(i, n)| version.release().get(i).copied().unwrap_or(0) == *n)
}

/// Same epoch and release numbers (zero-padded), whatever the rest.
fn same_base(a: &Version, b: &Version) -> bool {
    a.epoch() == b.epoch() && a.only_release() == b.only_release()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Whether `ver` satisfies the (valid) specifier set `spec`.
    fn ok(ver: &str, spec: &str) -> bool {
        satisfies(&v(ver), spec).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn version_parsing_normalizes_spellings() {
        assert_eq!(v("1.0RC1").to_string(), "1.0rc1");
        assert_eq!(v("v1.0-alpha.2").to_string(), "1.0a2");
        assert_eq!(v("1.0c1").to_string(), "1.0rc1");
        assert_eq!(v("1.0-1").to_string(), "1.0.post1");
        assert_eq!(v("1.0.rev2").to_string(), "1.0.post2");
        assert_eq!(v("1.0-dev").to_string(), "1.0.dev0");
        assert_eq!(
            v("2!1.0.post1.dev3+Ubuntu-1.2").to_string(),
            "2!1.0.post1.dev3+ubuntu.1.2"
        );
        assert_eq!(v(" 3.11.0rc1 ").to_string(), "3.11.0rc1");
        // The PEP 440 regex lets a separator dangle after a keyword.
        assert_eq!(v("1.0a.").to_string(), "1.0a0");
        assert_eq!(v("1.0a.post1").to_string(), "1.0a0.post1");
        for bad in [
            "",
            "1.",
            "a1",
            "1.0+",
            "1.0 beta",
            "1..0",
            "3.*",
            "1.0+a..b",
            "99999999999999999999",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn version_ordering_follows_pep440() {
        let ordered = [
            "1.0.dev0",
            "1.0a1.dev1",
            "1.0a1",
            "1.0a2",
            "1.0b1",
            "1.0rc1",
            "1.0",
            "1.0+abc",
            "1.0+abc.5",
            "1.0+5",
            "1.0.post1.dev0",
            "1.0.post1",
            "1.1",
            "1!0.1",
        ];
        for pair in ordered.windows(2) {
            assert!(v(pair[0]) < v(pair[1]), "{} < {}", pair[0], pair[1]);
        }
        assert_eq!(v("1.0"), v("1.0.0"));
        assert_eq!(v("1.0a"), v("1.0a0"));
        assert!(v("3.9") < v("3.10"));
    }

    #[test]
    fn specifier_operators() {
        assert!(ok("3.11.4", ">=3.8"));
        assert!(ok("3.11.4", ">=3.8, <4"));
        assert!(!ok("3.7.1", ">=3.8"));
        assert!(ok("3.11.4", "==3.11.*"));
        assert!(ok("3.11.0rc1", "==3.11.*"));
        assert!(!ok("3.1.4", "==3.11.*"));
        assert!(ok("3.12", "!=3.11.*"));
        assert!(ok("3", "==3.0.*"));
        assert!(ok("2.2.5", "~=2.2.1"));
        assert!(!ok("2.3", "~=2.2.1"));
        assert!(ok("2.9", "~=2.2"));
        assert!(!ok("3.0", "~=2.2"));
        assert!(ok("1.0+local", "==1.0"));
        assert!(!ok("1.0", "==1.0+local"));
        // `<V` excludes pre-releases of V, `>V` post-releases and locals.
        assert!(!ok("3.11.0rc1", "<3.11"));
        assert!(ok("3.11.0rc1", "<3.11.0rc2"));
        assert!(!ok("1.0.post1", ">1.0"));
        assert!(!ok("1.0+local", ">1.0"));
        assert!(ok("1.0.post1", ">=1.0"));
        assert!(ok("1.0", "===1.0"));
        assert!(ok("1.0", ""));
        assert!(satisfies(&v("1.0"), "~=1").is_err());
        assert!(satisfies(&v("1.0"), ">=1.0,,<2").is_err());
        assert!(satisfies(&v("1.0"), "1.0").is_err());
    }

    /// The cases where `pep440_rs` 0.7.3 alone answers the opposite of
    /// PEP 440 and `packaging`; [`contains`] corrects each.
    #[test]
    fn corrections_to_pep440_rs() {
        assert!(!ok("3", "==3.11.*"));
        assert!(ok("3", "!=3.11.*"));
        assert!(ok("1.0.dev1", "<1.0a1"));
        assert!(ok("1.0a1", "<1!1.0"));
        assert!(!ok("1.0", "===v1.0"));
        assert!(ok("1.0", "  "));
        let err = satisfies(&v("1.0"), ">=3.8, ~=1").unwrap_err().to_string();
        assert!(!err.contains('\n'), "{err}");
        assert!(
            err.starts_with("invalid version specifier \">=3.8, ~=1\": \"~=1\""),
            "{err}"
        );
    }

    #[test]
    fn single_comparisons_reject_what_the_operator_cannot_take() {
        assert_eq!(compare(&v("3.11"), Operator::Equal, "3.11.*"), Some(true));
        assert_eq!(compare(&v("3.11"), Operator::LessThan, "3.12+local"), None);
        assert_eq!(compare(&v("3.11"), Operator::TildeEqual, "3"), None);
        assert_eq!(compare(&v("3.11"), Operator::GreaterThan, "3.*"), None);
        assert_eq!(compare(&v("3.11"), Operator::Equal, "x86"), None);
    }
}
