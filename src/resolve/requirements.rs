//! Pinned requirements files in pip's format (`pip freeze`, `pip-compile`,
//! `uv pip compile` output).
//!
//! sitefs builds an environment from exact versions only: it never
//! resolves dependencies, so every line must be `name==version`. Anything
//! that would need a resolver, a build, or network access (ranges,
//! editables, URLs, constraints files) is rejected with a message naming
//! the file and line, and all such problems are reported together so a
//! user can fix a file in one pass. Options that only steer pip's
//! downloads (`--index-url`, ...) are accepted and ignored because
//! generated files routinely carry them.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::resolve::markers::{CompareOp, Marker, MarkerError};
use crate::resolve::version::{self, VersionError};
use crate::wheel::is_pep508_name;

/// One pinned requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// The name as written (normalize with [`crate::wheel::normalize_name`]
    /// to compare).
    pub name: String,
    /// The version after `==`, as written.
    pub version: String,
    pub extras: Vec<String>,
    /// The marker after `;`, already checked to parse.
    pub marker: Option<String>,
    /// `--hash=sha256:` digests, lowercase hex.
    pub hashes: Vec<String>,
    /// First physical line of the (possibly continued) requirement.
    pub line: usize,
    /// The file it came from, for messages.
    pub source: PathBuf,
}

/// Everything sitefs takes from a requirements file and its includes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequirementsFile {
    /// In file order, includes expanded in place. The same requirement
    /// included twice appears twice.
    pub requirements: Vec<Requirement>,
    /// `--find-links` directories, relative ones resolved against the
    /// directory of the file that names them.
    pub find_links: Vec<PathBuf>,
}

/// A problem at one line of one file; displays as `FILE:LINE: message`
/// (or `FILE: message` for problems with the whole file, line 0).
#[derive(Debug)]
pub struct RequirementError {
    pub file: PathBuf,
    pub line: usize,
    pub kind: RequirementErrorKind,
}

impl fmt::Display for RequirementError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.display();
        if self.line == 0 {
            write!(f, "{file}: {}", self.kind)
        } else {
            write!(f, "{file}:{}: {}", self.line, self.kind)
        }
    }
}

impl std::error::Error for RequirementError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.kind)
    }
}

/// What went wrong, without the location.
#[derive(Debug, thiserror::Error)]
pub enum RequirementErrorKind {
    #[error("cannot read: {0}")]
    Read(#[source] io::Error),
    #[error("cannot read included file {}: {source}", path.display())]
    Include {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("include cycle: {0}")]
    Cycle(String),
    #[error("only pinned `name==version` requirements are supported (got `{0}`)")]
    NotPinnedForm(String),
    #[error("`{text}` is not pinned: use {name}==VERSION")]
    NotPinned { text: String, name: String },
    #[error("invalid requirement `{text}`: {why}")]
    Invalid {
        text: String,
        #[source]
        why: InvalidRequirement,
    },
    #[error(transparent)]
    Marker(#[from] MarkerError),
    #[error("constraints files (`{0}`) are not supported: pin every package in the requirements file itself")]
    Constraints(String),
    #[error("hash algorithm `{0}` is not supported (use --hash=sha256:...)")]
    HashAlgorithm(String),
    #[error("invalid hash `{0}`: expected sha256:<64 hex digits>")]
    BadHash(String),
    #[error("unsupported option `{0}`")]
    UnknownOption(String),
    #[error("option `{0}` needs a value")]
    MissingValue(String),
    #[error("`{0}` must follow a requirement on the same line")]
    OrphanHash(String),
    #[error("option `{0}` cannot follow a requirement (only --hash can)")]
    OptionAfterRequirement(String),
    #[error("`{0}`: only local directories are supported")]
    RemoteFindLinks(String),
    #[error("`{0}`: only local files can be included")]
    RemoteInclude(String),
    #[error("--require-hashes is set but {0} has no --hash")]
    MissingHash(String),
}

/// What is wrong inside one `name[extras]==version` requirement.
#[derive(Debug, thiserror::Error)]
pub enum InvalidRequirement {
    #[error("`{0}` is not a valid package name (letters, digits, `.`, `_`, `-`; starting and ending with a letter or digit)")]
    Name(String),
    #[error("missing `]` after the extras")]
    UnclosedExtras,
    #[error("`{0}` is not a valid extra name")]
    Extra(String),
    #[error("expected `==VERSION` after the name, found `{0}`")]
    NoOperator(String),
    #[error(transparent)]
    Version(#[from] VersionError),
}

/// Read `path` and everything it includes with `-r`.
pub fn parse_file(path: &Path) -> Result<RequirementsFile, Vec<RequirementError>> {
    let mut parser = FileParser::default();
    parser.include(path, None);
    parser.finish()
}

/// Like [`parse_file`], but also returns the requirements that did parse
/// when other lines did not, so a caller can report every problem of a
/// file (unparsable lines and unsatisfiable pins) in one pass.
pub fn parse_file_partial(path: &Path) -> (RequirementsFile, Vec<RequirementError>) {
    let mut parser = FileParser::default();
    parser.include(path, None);
    if parser.require_hashes {
        parser.check_hashes();
    }
    (parser.out, parser.errors)
}

/// Parse requirements text. `origin` names it in messages; `-r` and
/// `--find-links` paths are resolved against `base_dir`.
pub fn parse_str(
    text: &str,
    origin: &str,
    base_dir: &Path,
) -> Result<RequirementsFile, Vec<RequirementError>> {
    let mut parser = FileParser::default();
    parser.parse_text(text, Path::new(origin), base_dir);
    parser.finish()
}

/// Where a line came from, for resolving paths and naming errors.
#[derive(Clone, Copy)]
struct Location<'a> {
    origin: &'a Path,
    base_dir: &'a Path,
    line: usize,
}

/// Options sitefs recognises and what each does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opt {
    Include,
    Constraint,
    FindLinks,
    Editable,
    Hash,
    RequireHashes,
    /// Download options that do not matter for a local wheel store.
    Ignored,
}

/// `(option, takes a value)` for a spelling, or `None` if unsupported.
fn lookup_option(name: &str) -> Option<(Opt, bool)> {
    Some(match name {
        "-r" | "--requirement" => (Opt::Include, true),
        "-c" | "--constraint" => (Opt::Constraint, true),
        "-f" | "--find-links" => (Opt::FindLinks, true),
        "-e" | "--editable" => (Opt::Editable, true),
        "--hash" => (Opt::Hash, true),
        "--require-hashes" => (Opt::RequireHashes, false),
        "-i" | "--index-url" | "--extra-index-url" | "--trusted-host" | "--only-binary" => {
            (Opt::Ignored, true)
        }
        "--no-index" | "--prefer-binary" | "--pre" => (Opt::Ignored, false),
        _ => return None,
    })
}

/// One option occurrence with its value.
struct OptionUse<'a> {
    spelling: &'a str,
    opt: Opt,
    value: &'a str,
}

#[derive(Default)]
struct FileParser {
    out: RequirementsFile,
    errors: Vec<RequirementError>,
    /// Canonical paths of the files being read, outermost first, to stop
    /// `-r` cycles.
    stack: Vec<PathBuf>,
    require_hashes: bool,
}

impl FileParser {
    fn finish(mut self) -> Result<RequirementsFile, Vec<RequirementError>> {
        if self.require_hashes {
            self.check_hashes();
        }
        if self.errors.is_empty() {
            Ok(self.out)
        } else {
            Err(self.errors)
        }
    }

    /// pip's `--require-hashes` applies to every requirement, wherever the
    /// option appeared.
    fn check_hashes(&mut self) {
        for req in &self.out.requirements {
            if req.hashes.is_empty() {
                self.errors.push(RequirementError {
                    file: req.source.clone(),
                    line: req.line,
                    kind: RequirementErrorKind::MissingHash(format!(
                        "{}=={}",
                        req.name, req.version
                    )),
                });
            }
        }
    }

    fn error(&mut self, at: Location<'_>, kind: RequirementErrorKind) {
        self.errors.push(RequirementError {
            file: at.origin.to_path_buf(),
            line: at.line,
            kind,
        });
    }

    /// Read one file; `from` is the `-r` line that names it, if any, and
    /// gets the blame when it cannot be read.
    fn include(&mut self, path: &Path, from: Option<Location<'_>>) {
        let read = std::fs::canonicalize(path)
            .and_then(|canonical| std::fs::read_to_string(path).map(|t| (canonical, t)));
        let (canonical, text) = match read {
            Ok(ok) => ok,
            Err(source) => {
                let path = path.to_path_buf();
                match from {
                    Some(at) => self.error(at, RequirementErrorKind::Include { path, source }),
                    None => self.errors.push(RequirementError {
                        file: path,
                        line: 0,
                        kind: RequirementErrorKind::Read(source),
                    }),
                }
                return;
            }
        };
        if let Some(start) = self.stack.iter().position(|p| *p == canonical) {
            let chain: Vec<String> = self.stack[start..]
                .iter()
                .chain(std::iter::once(&canonical))
                .map(|p| p.display().to_string())
                .collect();
            if let Some(at) = from {
                self.error(at, RequirementErrorKind::Cycle(chain.join(" -> ")));
            }
            return;
        }
        let base_dir = path.parent().unwrap_or(Path::new("")).to_path_buf();
        self.stack.push(canonical);
        self.parse_text(&text, path, &base_dir);
        self.stack.pop();
    }

    fn parse_text(&mut self, text: &str, origin: &Path, base_dir: &Path) {
        for (line, content) in logical_lines(text) {
            let at = Location {
                origin,
                base_dir,
                line,
            };
            self.parse_line(&content, at);
        }
    }

    /// A line is either only options, or a requirement followed by
    /// per-requirement options (pip splits at the first word starting
    /// with `-`).
    fn parse_line(&mut self, line: &str, at: Location<'_>) {
        let words = words_with_offsets(line);
        let Some(&(first_at, _)) = words.first() else {
            return;
        };
        let split = words
            .iter()
            .position(|(_, w)| w.starts_with('-'))
            .unwrap_or(words.len());
        let options = match self.parse_options(&words[split..], at) {
            Some(options) => options,
            None => return,
        };
        if split == 0 {
            for option in options {
                self.file_option(option, at);
            }
            return;
        }
        let end = words.get(split).map_or(line.len(), |(i, _)| *i);
        self.requirement_line(line[first_at..end].trim(), &options, at);
    }

    fn requirement_line(&mut self, text: &str, options: &[OptionUse<'_>], at: Location<'_>) {
        let mut hashes = Vec::new();
        for option in options {
            match option.opt {
                Opt::Hash => match parse_hash(option.value) {
                    Ok(hash) => hashes.push(hash),
                    Err(kind) => self.error(at, kind),
                },
                _ => self.error(
                    at,
                    RequirementErrorKind::OptionAfterRequirement(option.spelling.to_string()),
                ),
            }
        }
        match parse_requirement(text) {
            Ok(parsed) => self.out.requirements.push(Requirement {
                name: parsed.name,
                version: parsed.version,
                extras: parsed.extras,
                marker: parsed.marker,
                hashes,
                line: at.line,
                source: at.origin.to_path_buf(),
            }),
            Err(kind) => self.error(at, kind),
        }
    }

    /// Parse option words into uses; records an error and returns `None`
    /// at the first word that is not a usable option (after an unknown
    /// option we cannot tell whether the next word is its value).
    fn parse_options<'w>(
        &mut self,
        words: &[(usize, &'w str)],
        at: Location<'_>,
    ) -> Option<Vec<OptionUse<'w>>> {
        let mut uses = Vec::new();
        let mut iter = words.iter().map(|(_, w)| *w);
        while let Some(word) = iter.next() {
            let (spelling, inline) = split_option(word);
            let Some((opt, takes_value)) = lookup_option(spelling) else {
                self.error(
                    at,
                    RequirementErrorKind::UnknownOption(spelling.to_string()),
                );
                return None;
            };
            let value = match (takes_value, inline) {
                (false, _) => "",
                (true, Some(v)) => v,
                (true, None) => match iter.next() {
                    Some(v) => v,
                    None => {
                        self.error(at, RequirementErrorKind::MissingValue(spelling.to_string()));
                        return None;
                    }
                },
            };
            uses.push(OptionUse {
                spelling,
                opt,
                value,
            });
        }
        Some(uses)
    }

    /// Options on a line of their own.
    fn file_option(&mut self, option: OptionUse<'_>, at: Location<'_>) {
        let value = option.value;
        match option.opt {
            Opt::Include if value.contains("://") => {
                self.error(at, RequirementErrorKind::RemoteInclude(value.to_string()))
            }
            Opt::Include => self.include(&at.base_dir.join(value), Some(at)),
            Opt::Constraint => self.error(at, RequirementErrorKind::Constraints(value.to_string())),
            Opt::FindLinks => match find_links_dir(value, at.base_dir) {
                Some(dir) => self.out.find_links.push(dir),
                None => self.error(at, RequirementErrorKind::RemoteFindLinks(value.to_string())),
            },
            Opt::Editable => self.error(
                at,
                RequirementErrorKind::NotPinnedForm(format!("{} {value}", option.spelling)),
            ),
            Opt::Hash => self.error(
                at,
                RequirementErrorKind::OrphanHash(option.spelling.to_string()),
            ),
            Opt::RequireHashes => self.require_hashes = true,
            Opt::Ignored => log::debug!(
                "{}:{}: ignoring `{} {value}`: sitefs installs from its local wheel store",
                at.origin.display(),
                at.line,
                option.spelling
            ),
        }
    }
}

/// `--name=value` / `-Xvalue` split into the option and its inline value.
fn split_option(word: &str) -> (&str, Option<&str>) {
    if word.starts_with("--") {
        match word.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (word, None),
        }
    } else {
        let cut = word.char_indices().nth(2).map_or(word.len(), |(i, _)| i);
        let (name, rest) = word.split_at(cut);
        (name, (!rest.is_empty()).then_some(rest))
    }
}

/// A `--find-links` directory: a path (relative to the file) or a
/// `file://` URL. Remote indexes return `None`.
fn find_links_dir(value: &str, base_dir: &Path) -> Option<PathBuf> {
    if let Some(path) = value.strip_prefix("file://") {
        return Some(base_dir.join(path));
    }
    if value.contains("://") {
        return None;
    }
    Some(base_dir.join(value))
}

/// `sha256:<hex>` to lowercase hex.
fn parse_hash(value: &str) -> Result<String, RequirementErrorKind> {
    let bad = || RequirementErrorKind::BadHash(value.to_string());
    let (algorithm, hex) = value.split_once(':').ok_or_else(bad)?;
    if !algorithm.eq_ignore_ascii_case("sha256") {
        return Err(RequirementErrorKind::HashAlgorithm(algorithm.to_string()));
    }
    let digest: crate::hashing::Digest = hex.parse().map_err(|_| bad())?;
    Ok(digest.to_hex())
}

/// Whitespace-separated words with their byte offsets, so the
/// requirement part of a line can be sliced out with its spacing intact.
fn words_with_offsets(line: &str) -> Vec<(usize, &str)> {
    let mut words = Vec::new();
    let mut start = None;
    for (i, c) in line.char_indices() {
        match (c.is_whitespace(), start) {
            (true, Some(s)) => {
                words.push((s, &line[s..i]));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        words.push((s, &line[s..]));
    }
    words
}

/// Byte offset where a comment starts: `#` at the start of the line or
/// after whitespace (so `url#egg=x` is not a comment), as pip reads it.
fn comment_start(line: &str) -> Option<usize> {
    let mut prev_space = true;
    for (i, c) in line.char_indices() {
        if c == '#' && prev_space {
            return Some(i);
        }
        prev_space = c.is_whitespace();
    }
    None
}

/// Join `\`-continued lines and drop comments, numbering each logical
/// line by its first physical line. As in pip, a line with a comment never
/// continues, even if it ends in `\`.
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let comment = comment_start(raw);
        if let (Some(body), None) = (raw.strip_suffix('\\'), comment) {
            pending
                .get_or_insert_with(|| (i + 1, String::new()))
                .1
                .push_str(body);
            continue;
        }
        let body = &raw[..comment.unwrap_or(raw.len())];
        match pending.take() {
            Some((start, mut joined)) => {
                joined.push_str(body);
                out.push((start, joined));
            }
            None => out.push((i + 1, body.to_string())),
        }
    }
    out.extend(pending);
    out
}

/// The parts of a pinned requirement.
struct Parsed {
    name: String,
    version: String,
    extras: Vec<String>,
    marker: Option<String>,
}

/// Parse `name[extras] == version ; marker`, rejecting every other form.
fn parse_requirement(text: &str) -> Result<Parsed, RequirementErrorKind> {
    let invalid = |why| RequirementErrorKind::Invalid {
        text: text.to_string(),
        why,
    };
    let (head, marker) = match text.split_once(';') {
        Some((head, marker)) => (head.trim(), Some(parse_marker(marker.trim())?)),
        None => (text.trim(), None),
    };
    if is_url_or_path(head) {
        return Err(RequirementErrorKind::NotPinnedForm(text.to_string()));
    }
    let name_len = head
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        .unwrap_or(head.len());
    let name = &head[..name_len];
    if !is_pep508_name(name) {
        return Err(invalid(InvalidRequirement::Name(name.to_string())));
    }
    let (extras, spec) = parse_extras(head[name_len..].trim_start()).map_err(invalid)?;
    let version = parse_pin(spec).map_err(|why| match why {
        None => RequirementErrorKind::NotPinned {
            text: text.to_string(),
            name: name.to_string(),
        },
        Some(why) => invalid(why),
    })?;
    Ok(Parsed {
        name: name.to_string(),
        version,
        extras,
        marker,
    })
}

fn parse_marker(marker: &str) -> Result<String, RequirementErrorKind> {
    Marker::parse(marker)
        .map(|m| m.as_str().to_string())
        .map_err(RequirementErrorKind::Marker)
}

/// Direct references (`name @ url`), URLs and local paths: all would need
/// a download or a build.
fn is_url_or_path(head: &str) -> bool {
    const ARCHIVES: [&str; 6] = [".whl", ".zip", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz"];
    head.contains('@')
        || head.contains("://")
        || head.starts_with(['.', '/', '~'])
        || head.contains(std::path::MAIN_SEPARATOR)
        || ARCHIVES.iter().any(|ext| head.ends_with(ext))
}

/// `[a, b] rest` to the extras and `rest`; no brackets means no extras.
fn parse_extras(text: &str) -> Result<(Vec<String>, &str), InvalidRequirement> {
    let Some(inner) = text.strip_prefix('[') else {
        return Ok((Vec::new(), text));
    };
    let (list, rest) = inner
        .split_once(']')
        .ok_or(InvalidRequirement::UnclosedExtras)?;
    let mut extras = Vec::new();
    for extra in list.split(',').map(str::trim) {
        if extra.is_empty() && list.trim().is_empty() {
            break;
        }
        if !is_pep508_name(extra) {
            return Err(InvalidRequirement::Extra(extra.to_string()));
        }
        extras.push(extra.to_string());
    }
    Ok((extras, rest.trim()))
}

/// The version of `==VERSION` (optionally in parentheses). `Err(None)`
/// means a valid but unpinned specifier, `Err(Some(why))` a malformed one.
fn parse_pin(spec: &str) -> Result<String, Option<InvalidRequirement>> {
    let spec = spec
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .unwrap_or(spec)
        .trim();
    if spec.is_empty() || spec.contains(',') {
        return Err(None);
    }
    let Some((op, version)) = CompareOp::split_prefix(spec) else {
        return Err(Some(InvalidRequirement::NoOperator(spec.to_string())));
    };
    let version = version.trim();
    if op != CompareOp::Eq || version.ends_with(".*") {
        return Err(None);
    }
    version::parse(version).map_err(|e| Some(e.into()))?;
    Ok(version.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH_A: &str = "4f0c5d3e1f6a3b7a5c2b1d8e9f0a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2";
    const HASH_B: &str = "0000000000000000000000000000000000000000000000000000000000000abc";

    fn parse(text: &str) -> Result<RequirementsFile, Vec<RequirementError>> {
        parse_str(text, "req.txt", Path::new("/base"))
    }

    fn ok(text: &str) -> RequirementsFile {
        parse(text).unwrap_or_else(|errs| {
            let msgs: Vec<String> = errs.iter().map(ToString::to_string).collect();
            panic!("{}", msgs.join("\n"))
        })
    }

    fn errors(text: &str) -> Vec<String> {
        match parse(text) {
            Ok(file) => panic!("parsed: {file:?}"),
            Err(errs) => errs.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn pinned_lines_comments_and_blanks() {
        let file = ok("# header\n\nrequests==2.31.0  # pinned\nUrllib3 == 2.0.7\n   \n");
        let reqs = &file.requirements;
        assert_eq!(reqs.len(), 2);
        assert_eq!(reqs[0].name, "requests");
        assert_eq!(reqs[0].version, "2.31.0");
        assert_eq!(reqs[0].line, 3);
        assert_eq!(reqs[0].source, Path::new("req.txt"));
        assert_eq!(reqs[1].name, "Urllib3");
        assert_eq!(reqs[1].version, "2.0.7");
        assert!(reqs[1].extras.is_empty() && reqs[1].marker.is_none());
    }

    #[test]
    fn extras_and_markers() {
        let file = ok(concat!(
            "requests[socks, security]==2.31.0\n",
            "colorama==0.4.6 ; sys_platform == \"win32\"\n",
            "tomli==2.0.1; python_version < '3.11'\n",
        ));
        let reqs = &file.requirements;
        assert_eq!(reqs[0].extras, ["socks", "security"]);
        assert_eq!(reqs[1].marker.as_deref(), Some("sys_platform == \"win32\""));
        assert_eq!(reqs[2].marker.as_deref(), Some("python_version < '3.11'"));
        let errs = errors("tomli==2.0.1 ; python_version < 3.11\n");
        assert!(errs[0].starts_with("req.txt:1: invalid marker"), "{errs:?}");
    }

    #[test]
    fn hashes_and_continuations() {
        let text = format!(
            "certifi==2023.7.22 \\\n    --hash=sha256:{HASH_A} \\\n    --hash sha256:{}\nidna==3.4 --hash=sha256:{HASH_B}\n",
            HASH_B.to_uppercase()
        );
        let file = ok(&text);
        let reqs = &file.requirements;
        assert_eq!(reqs[0].hashes, [HASH_A, HASH_B]);
        assert_eq!(reqs[0].line, 1);
        assert_eq!(reqs[1].line, 4);
        assert_eq!(reqs[1].hashes, [HASH_B]);
    }

    #[test]
    fn bad_hashes() {
        let errs = errors(&format!(
            "a==1 --hash=md5:abcd\nb==1 --hash=sha256:xyz\n--hash=sha256:{HASH_A}\n"
        ));
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(
            errs[0].starts_with("req.txt:1: hash algorithm `md5`"),
            "{errs:?}"
        );
        assert!(errs[1].starts_with("req.txt:2: invalid hash"), "{errs:?}");
        assert!(
            errs[2].starts_with("req.txt:3: `--hash` must follow"),
            "{errs:?}"
        );
    }

    #[test]
    fn require_hashes() {
        let errs = errors(&format!(
            "--require-hashes\na==1 --hash=sha256:{HASH_A}\nb==2\n"
        ));
        assert_eq!(
            errs,
            ["req.txt:3: --require-hashes is set but b==2 has no --hash"]
        );
    }

    #[test]
    fn unpinned_and_unsupported_forms() {
        let errs = errors(concat!(
            "requests>=2\n",
            "flask\n",
            "django==4.*\n",
            "numpy>=1,<2\n",
            "-e .\n",
            "pkg @ https://example.com/pkg-1.0-py3-none-any.whl\n",
            "./local/pkg-1.0-py3-none-any.whl\n",
            "https://example.com/x.tar.gz\n",
            "-c constraints.txt\n",
            "--no-binary :all:\n",
        ));
        let expected = [
            "req.txt:1: `requests>=2` is not pinned: use requests==VERSION",
            "req.txt:2: `flask` is not pinned: use flask==VERSION",
            "req.txt:3: `django==4.*` is not pinned: use django==VERSION",
            "req.txt:4: `numpy>=1,<2` is not pinned: use numpy==VERSION",
            "req.txt:5: only pinned `name==version` requirements are supported (got `-e .`)",
            "req.txt:6: only pinned `name==version` requirements are supported (got `pkg @ https://example.com/pkg-1.0-py3-none-any.whl`)",
            "req.txt:7: only pinned `name==version` requirements are supported (got `./local/pkg-1.0-py3-none-any.whl`)",
            "req.txt:8: only pinned `name==version` requirements are supported (got `https://example.com/x.tar.gz`)",
        ];
        assert_eq!(errs[..8], expected);
        assert!(errs[8]
            .starts_with("req.txt:9: constraints files (`constraints.txt`) are not supported"));
        assert_eq!(errs[9], "req.txt:10: unsupported option `--no-binary`");
        assert_eq!(errs.len(), 10);
    }

    #[test]
    fn invalid_names_and_versions() {
        let errs = errors("-bad==1\nfoo_==1\nfoo[b@d]==1\nfoo==1.0.x\nfoo=1\nfoo[x==1\n");
        assert_eq!(errs.len(), 6, "{errs:?}");
        assert!(errs[0].contains("unsupported option `-b`"), "{errs:?}");
        assert!(
            errs[1].contains("`foo_` is not a valid package name"),
            "{errs:?}"
        );
        assert!(errs[2].contains("only pinned"), "{errs:?}");
        assert!(errs[3].contains("not a valid PEP 440 version"), "{errs:?}");
        assert!(errs[4].contains("expected `==VERSION`"), "{errs:?}");
        assert!(errs[5].contains("missing `]`"), "{errs:?}");
        let file = ok("zope.interface==6.0\nfoo (==1.0)\nfoo[]==1\ntorch==2.1.0+cpu\n");
        assert_eq!(file.requirements[0].name, "zope.interface");
        assert_eq!(file.requirements[1].version, "1.0");
        assert_eq!(file.requirements[3].version, "2.1.0+cpu");
    }

    #[test]
    fn ignored_options_and_find_links() {
        let file = ok(concat!(
            "--index-url https://pypi.org/simple\n",
            "--extra-index-url=https://example.com/simple\n",
            "-i https://pypi.org/simple\n",
            "--no-index\n",
            "--only-binary :all:\n",
            "--prefer-binary\n",
            "--trusted-host example.com\n",
            "--find-links wheels\n",
            "-f/abs/wheels\n",
            "--find-links=file:///srv/wheels\n",
            "six==1.16.0\n",
        ));
        assert_eq!(
            file.find_links,
            [
                PathBuf::from("/base/wheels"),
                PathBuf::from("/abs/wheels"),
                PathBuf::from("/srv/wheels")
            ]
        );
        assert_eq!(file.requirements.len(), 1);
        let errs = errors("--find-links https://example.com/wheels\n--index-url\n");
        assert!(errs[0].contains("only local directories"), "{errs:?}");
        assert_eq!(errs[1], "req.txt:2: option `--index-url` needs a value");
    }

    #[test]
    fn includes_are_relative_and_cycle_safe() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        std::fs::write(
            dir.path().join("main.txt"),
            "a==1\n-r sub/more.txt\nz==26\n",
        )
        .unwrap();
        std::fs::write(
            sub.join("more.txt"),
            "b==2\n--requirement ../main.txt\n-f wheels\n",
        )
        .unwrap();
        let errs = parse_file(&dir.path().join("main.txt")).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].line, 2);
        assert!(errs[0].file.ends_with("more.txt"), "{errs:?}");
        assert!(
            matches!(errs[0].kind, RequirementErrorKind::Cycle(_)),
            "{errs:?}"
        );

        std::fs::write(sub.join("more.txt"), "b==2\n-f wheels\n").unwrap();
        let file = parse_file(&dir.path().join("main.txt")).unwrap();
        let names: Vec<&str> = file.requirements.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "z"]);
        assert_eq!(file.find_links, [sub.join("wheels")]);
        assert!(file.requirements[1].source.ends_with("more.txt"));
    }

    #[test]
    fn missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let errs = parse_file(&dir.path().join("nope.txt")).unwrap_err();
        assert_eq!(errs[0].line, 0);
        assert!(
            errs[0].to_string().contains("nope.txt: cannot read:"),
            "{errs:?}"
        );
        let errs = parse_str("-r missing.txt\nok==1\nbad\n", "req.txt", dir.path()).unwrap_err();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs[0]
            .to_string()
            .starts_with("req.txt:1: cannot read included file"));
        assert!(errs[1]
            .to_string()
            .starts_with("req.txt:3: `bad` is not pinned"));
    }

    #[test]
    fn logical_line_rules() {
        assert_eq!(
            logical_lines("a \\\nb\n# c \\\nd\nurl#frag\ne # x\n\\"),
            [
                (1, "a b".to_string()),
                (3, String::new()),
                (4, "d".to_string()),
                (5, "url#frag".to_string()),
                (6, "e ".to_string()),
                (7, String::new()),
            ]
        );
    }
}
