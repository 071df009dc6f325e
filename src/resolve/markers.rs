//! PEP 508 environment markers and the PEP 440 versions they compare.
//!
//! Requirements files and lock files say which packages apply to which
//! interpreter with markers such as `python_version < "3.12"`. We evaluate
//! them against the *target* interpreter's marker environment
//! ([`crate::resolve::interpreter::Interpreter::marker_env`]), never our own host,
//! so the same lock gives the same answer wherever sitefs runs.
//!
//! The rules follow `packaging.markers`, which is what pip and uv agree
//! with: a comparison uses PEP 440 semantics when both sides are versions
//! and falls back to Python string comparison otherwise. [`Version`] is a
//! small, complete PEP 440 implementation (parsing, ordering and the
//! specifier operators) because markers, `requires-python` and pins all
//! need it and the rules are subtle enough to get wrong piecemeal.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::wheel::normalize_name;

/// Why a marker could not be parsed or evaluated. Both variants carry the
/// full marker text and a 1-based column so a user can find the mistake in
/// a long requirements line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MarkerError {
    #[error("invalid marker {marker:?} at column {column}: {message}")]
    Syntax {
        marker: String,
        column: usize,
        message: String,
    },
    #[error("cannot evaluate marker {marker:?} at column {column}: {message}")]
    Eval {
        marker: String,
        column: usize,
        message: String,
    },
}

/// A version specifier (`>=3.8,<4`) that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid version specifier {specifier:?}: {why}")]
pub struct SpecifierError {
    pub specifier: String,
    pub why: String,
}

/// Evaluate `marker` against a marker environment.
///
/// `env` holds the PEP 508 variables (`python_version`, `sys_platform`,
/// ...); `extras` are the extras requested for the distribution whose
/// dependency carries the marker, so `extra == "socks"` is true exactly
/// when `socks` (after PEP 685 normalization) is among them.
pub fn evaluate(
    marker: &str,
    env: &BTreeMap<String, String>,
    extras: &[&str],
) -> Result<bool, MarkerError> {
    Marker::parse(marker)?.evaluate(env, extras)
}

// ---------------------------------------------------------------------------
// PEP 440 versions
// ---------------------------------------------------------------------------

/// A PEP 440 version, ordered and compared the way pip orders them.
///
/// Equality is PEP 440 equality (`1.0 == 1.0.0`, `1.0RC1 == 1.0rc1`), not
/// string equality; [`fmt::Display`] prints the normalized form.
#[derive(Debug, Clone)]
pub struct Version {
    epoch: u64,
    release: Vec<u64>,
    pre: Option<(PreKind, u64)>,
    post: Option<u64>,
    dev: Option<u64>,
    local: Vec<LocalSegment>,
}

/// Pre-release phases in their sort order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum PreKind {
    Alpha,
    Beta,
    Rc,
}

/// One dot-separated piece of a local version label. PEP 440 sorts
/// alphanumeric segments before numeric ones, which the variant order
/// gives us through the derived `Ord`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum LocalSegment {
    Str(String),
    Num(u64),
}

/// A parse failure; callers add the text and context.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a valid PEP 440 version")]
pub struct VersionError(pub String);

impl Version {
    /// Parse any spelling PEP 440 accepts (`v1.0`, `1.0-RC.1`, `1!2.0`,
    /// `1.0.post1.dev2+local.7`, ...).
    pub fn parse(text: &str) -> Result<Version, VersionError> {
        let lower = text.trim().to_ascii_lowercase();
        VersionParser::new(&lower)
            .parse()
            .ok_or_else(|| VersionError(text.to_string()))
    }

    /// The release numbers (`3.11.4` gives `[3, 11, 4]`).
    pub fn release(&self) -> &[u64] {
        &self.release
    }

    /// True for `a`/`b`/`rc` and `.dev` versions.
    pub fn is_prerelease(&self) -> bool {
        self.pre.is_some() || self.dev.is_some()
    }

    /// True for `.postN` versions.
    pub fn is_postrelease(&self) -> bool {
        self.post.is_some()
    }

    /// True when a `+local` label is present.
    pub fn has_local(&self) -> bool {
        !self.local.is_empty()
    }

    /// The version without its local label.
    pub fn public(&self) -> Version {
        Version {
            local: Vec::new(),
            ..self.clone()
        }
    }

    /// Whether `self` satisfies a comma-separated specifier set such as
    /// `>=3.8, !=3.9.*, <4` (used for `requires-python`). Pre-releases are
    /// accepted, as they are when evaluating markers.
    pub fn satisfies(&self, specifiers: &str) -> Result<bool, SpecifierError> {
        let mut all = true;
        for one in specifiers.split(',') {
            let one = one.trim();
            let err = |why: &str| SpecifierError {
                specifier: specifiers.to_string(),
                why: why.to_string(),
            };
            if one.is_empty() {
                if specifiers.trim().is_empty() {
                    break;
                }
                return Err(err("empty clause"));
            }
            let (op, rest) = CompareOp::split_prefix(one)
                .ok_or_else(|| err(&format!("{one:?} has no comparison operator")))?;
            let rest = rest.trim();
            let ok = if op == CompareOp::Arbitrary {
                self.to_string().eq_ignore_ascii_case(rest)
            } else {
                self.matches(op, rest)
                    .ok_or_else(|| err(&format!("{one:?} is not a valid clause")))?
            };
            all &= ok;
        }
        Ok(all)
    }

    /// PEP 440 semantics of `self OP spec`, where `spec` is the right-hand
    /// side of a specifier (it may end in `.*` for `==`/`!=`). `None` when
    /// `spec` is not valid for `op`, so callers can fall back the way
    /// `packaging` does.
    fn matches(&self, op: CompareOp, spec: &str) -> Option<bool> {
        match op {
            CompareOp::Eq => self.equals_spec(spec),
            CompareOp::Ne => self.equals_spec(spec).map(|b| !b),
            CompareOp::Compatible => self.compatible_with(spec),
            CompareOp::Le | CompareOp::Ge | CompareOp::Lt | CompareOp::Gt => {
                let spec = Version::parse(spec).ok().filter(|v| !v.has_local())?;
                Some(self.ordered_matches(op, &spec))
            }
            CompareOp::Arbitrary | CompareOp::In | CompareOp::NotIn => None,
        }
    }

    /// `== spec`: prefix match for `X.Y.*`, otherwise equality that ignores
    /// our local label unless the specifier has one.
    fn equals_spec(&self, spec: &str) -> Option<bool> {
        if let Some(prefix) = spec.trim().strip_suffix(".*") {
            let prefix = Version::parse(prefix).ok()?;
            if !prefix.is_bare_release() {
                return None;
            }
            return Some(self.has_release_prefix(prefix.epoch, &prefix.release));
        }
        let spec = Version::parse(spec).ok()?;
        if spec.has_local() {
            Some(*self == spec)
        } else {
            Some(self.public() == spec)
        }
    }

    /// `~= spec`: at least `spec`, and the same release series
    /// (`~=2.2.1` means `>=2.2.1, ==2.2.*`).
    fn compatible_with(&self, spec: &str) -> Option<bool> {
        let spec = Version::parse(spec).ok()?;
        if spec.has_local() || spec.release.len() < 2 {
            return None;
        }
        let series = &spec.release[..spec.release.len() - 1];
        Some(self.public() >= spec && self.has_release_prefix(spec.epoch, series))
    }

    /// The ordered comparisons, with PEP 440's exclusions: `<V` excludes
    /// pre-releases of V and `>V` excludes post-releases and local
    /// versions of V, unless V itself is one.
    fn ordered_matches(&self, op: CompareOp, spec: &Version) -> bool {
        let same_base = self.same_base(spec);
        match op {
            CompareOp::Le => self.public() <= *spec,
            CompareOp::Ge => self.public() >= *spec,
            CompareOp::Lt => {
                *self < *spec && !(!spec.is_prerelease() && self.is_prerelease() && same_base)
            }
            CompareOp::Gt => {
                *self > *spec
                    && !(!spec.is_postrelease() && self.is_postrelease() && same_base)
                    && !(self.has_local() && same_base)
            }
            _ => false,
        }
    }

    fn is_bare_release(&self) -> bool {
        self.pre.is_none() && self.post.is_none() && self.dev.is_none() && !self.has_local()
    }

    /// Whether our release, zero-padded, starts with `prefix`.
    fn has_release_prefix(&self, epoch: u64, prefix: &[u64]) -> bool {
        self.epoch == epoch
            && prefix
                .iter()
                .enumerate()
                .all(|(i, n)| self.release.get(i).copied().unwrap_or(0) == *n)
    }

    fn same_base(&self, other: &Version) -> bool {
        self.epoch == other.epoch && cmp_release(&self.release, &other.release).is_eq()
    }

    /// Sort key of the pre-release part: a bare `.devN` sorts before any
    /// pre-release of the same release, a final release after all of them.
    fn pre_key(&self) -> (u8, Option<PreKind>, u64) {
        match self.pre {
            Some((kind, n)) => (1, Some(kind), n),
            None if self.post.is_none() && self.dev.is_some() => (0, None, 0),
            None => (2, None, 0),
        }
    }

    /// Sort key of the dev part: `.devN` sorts before the same version
    /// without it.
    fn dev_key(&self) -> (u8, u64) {
        match self.dev {
            Some(n) => (0, n),
            None => (1, 0),
        }
    }
}

/// Compare releases as if the shorter were padded with zeros.
fn cmp_release(a: &[u64], b: &[u64]) -> Ordering {
    let len = a.len().max(b.len());
    (0..len)
        .map(|i| {
            let x = a.get(i).copied().unwrap_or(0);
            let y = b.get(i).copied().unwrap_or(0);
            x.cmp(&y)
        })
        .find(|o| o.is_ne())
        .unwrap_or(Ordering::Equal)
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| cmp_release(&self.release, &other.release))
            .then_with(|| self.pre_key().cmp(&other.pre_key()))
            .then_with(|| self.post.cmp(&other.post))
            .then_with(|| self.dev_key().cmp(&other.dev_key()))
            .then_with(|| self.local.cmp(&other.local))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for Version {}

impl FromStr for Version {
    type Err = VersionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Version::parse(s)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.epoch != 0 {
            write!(f, "{}!", self.epoch)?;
        }
        let release: Vec<String> = self.release.iter().map(u64::to_string).collect();
        f.write_str(&release.join("."))?;
        if let Some((kind, n)) = self.pre {
            let tag = match kind {
                PreKind::Alpha => "a",
                PreKind::Beta => "b",
                PreKind::Rc => "rc",
            };
            write!(f, "{tag}{n}")?;
        }
        if let Some(n) = self.post {
            write!(f, ".post{n}")?;
        }
        if let Some(n) = self.dev {
            write!(f, ".dev{n}")?;
        }
        for (i, seg) in self.local.iter().enumerate() {
            f.write_str(if i == 0 { "+" } else { "." })?;
            match seg {
                LocalSegment::Str(s) => f.write_str(s)?,
                LocalSegment::Num(n) => write!(f, "{n}")?,
            }
        }
        Ok(())
    }
}

/// A cursor over a lowercased version string, one method per PEP 440
/// component in the order they may appear.
struct VersionParser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl<'a> VersionParser<'a> {
    fn new(s: &'a str) -> Self {
        VersionParser {
            s: s.as_bytes(),
            pos: 0,
        }
    }

    fn parse(mut self) -> Option<Version> {
        self.eat(b"v");
        let epoch = self.epoch()?;
        let release = self.release()?;
        let pre = self.pre();
        let post = self.post();
        let dev = self.dev();
        let local = self.local()?;
        if self.pos != self.s.len() {
            return None;
        }
        Some(Version {
            epoch,
            release,
            pre,
            post,
            dev,
            local,
        })
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn eat(&mut self, word: &[u8]) -> bool {
        if self.s[self.pos..].starts_with(word) {
            self.pos += word.len();
            true
        } else {
            false
        }
    }

    fn eat_separator(&mut self) -> bool {
        if matches!(self.peek(), Some(b'.' | b'-' | b'_')) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Digits at the cursor; `None` when there are none or they overflow.
    fn number(&mut self) -> Option<u64> {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        std::str::from_utf8(&self.s[start..self.pos])
            .ok()?
            .parse()
            .ok()
    }

    fn epoch(&mut self) -> Option<u64> {
        let start = self.pos;
        match self.number() {
            Some(n) if self.eat(b"!") => Some(n),
            _ => {
                self.pos = start;
                Some(0)
            }
        }
    }

    fn release(&mut self) -> Option<Vec<u64>> {
        let mut parts = vec![self.number()?];
        loop {
            let save = self.pos;
            if self.eat(b".") {
                if let Some(n) = self.number() {
                    parts.push(n);
                    continue;
                }
            }
            self.pos = save;
            return Some(parts);
        }
    }

    /// The number after a pre/post/dev keyword: an optional separator and
    /// optional digits (`rc`, `rc1`, `rc.1`, `rc-1` all parse). A lone
    /// separator stays consumed, as in the PEP 440 regex (`1.0a.` is
    /// `1.0a0`); every later component allows a missing separator.
    fn implicit_number(&mut self) -> u64 {
        self.eat_separator();
        self.number().unwrap_or(0)
    }

    /// Try `[sep] keyword N` for the first matching keyword, restoring the
    /// cursor when none matches.
    fn keyword<T: Copy>(&mut self, words: &[(&[u8], T)]) -> Option<(T, u64)> {
        let save = self.pos;
        self.eat_separator();
        for (word, value) in words {
            if self.eat(word) {
                return Some((*value, self.implicit_number()));
            }
        }
        self.pos = save;
        None
    }

    fn pre(&mut self) -> Option<(PreKind, u64)> {
        self.keyword(&[
            (b"alpha", PreKind::Alpha),
            (b"beta", PreKind::Beta),
            (b"preview", PreKind::Rc),
            (b"pre", PreKind::Rc),
            (b"rc", PreKind::Rc),
            (b"a", PreKind::Alpha),
            (b"b", PreKind::Beta),
            (b"c", PreKind::Rc),
        ])
    }

    /// `.postN`, `.revN`, `.rN`, or the implicit `-N` form.
    fn post(&mut self) -> Option<u64> {
        let save = self.pos;
        if self.eat(b"-") {
            if let Some(n) = self.number() {
                return Some(n);
            }
            self.pos = save;
        }
        self.keyword(&[(b"post", ()), (b"rev", ()), (b"r", ())])
            .map(|(_, n)| n)
    }

    fn dev(&mut self) -> Option<u64> {
        self.keyword(&[(b"dev", ())]).map(|(_, n)| n)
    }

    fn local(&mut self) -> Option<Vec<LocalSegment>> {
        if !self.eat(b"+") {
            return Some(Vec::new());
        }
        let mut segments = Vec::new();
        loop {
            let start = self.pos;
            while self.peek().is_some_and(|c| c.is_ascii_alphanumeric()) {
                self.pos += 1;
            }
            let seg = std::str::from_utf8(&self.s[start..self.pos]).ok()?;
            if seg.is_empty() {
                return None;
            }
            segments.push(match seg.parse() {
                Ok(n) if seg.bytes().all(|c| c.is_ascii_digit()) => LocalSegment::Num(n),
                _ => LocalSegment::Str(seg.to_string()),
            });
            if !self.eat_separator() {
                return Some(segments);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Markers: syntax
// ---------------------------------------------------------------------------

/// A comparison operator of the marker grammar (and of version
/// specifiers, which share all but `in`/`not in`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Lt,
    Le,
    Ne,
    Eq,
    Ge,
    Gt,
    Compatible,
    Arbitrary,
    In,
    NotIn,
}

impl CompareOp {
    /// Symbolic operators, longest first so `===` is not read as `==`.
    const SYMBOLS: [(&'static str, CompareOp); 8] = [
        ("===", CompareOp::Arbitrary),
        ("~=", CompareOp::Compatible),
        ("==", CompareOp::Eq),
        ("!=", CompareOp::Ne),
        ("<=", CompareOp::Le),
        (">=", CompareOp::Ge),
        ("<", CompareOp::Lt),
        (">", CompareOp::Gt),
    ];

    /// Split a leading symbolic operator off `text`.
    pub fn split_prefix(text: &str) -> Option<(CompareOp, &str)> {
        Self::SYMBOLS
            .iter()
            .find_map(|(sym, op)| text.strip_prefix(sym).map(|rest| (*op, rest)))
    }

    fn as_str(self) -> &'static str {
        match self {
            CompareOp::In => "in",
            CompareOp::NotIn => "not in",
            other => Self::SYMBOLS
                .iter()
                .find(|(_, op)| *op == other)
                .map_or("?", |(sym, _)| *sym),
        }
    }
}

/// The marker variables of PEP 508, plus the `extras` and
/// `dependency_groups` sets PEP 751 lock files use.
const VARIABLES: &[&str] = &[
    "python_version",
    "python_full_version",
    "os_name",
    "sys_platform",
    "platform_release",
    "platform_system",
    "platform_version",
    "platform_machine",
    "platform_python_implementation",
    "implementation_name",
    "implementation_version",
    "extra",
    "extras",
    "dependency_groups",
];

/// Legacy spellings that old metadata still carries; `packaging` accepts
/// them, so rejecting them would break real packages.
const ALIASES: &[(&str, &str)] = &[
    ("os.name", "os_name"),
    ("sys.platform", "sys_platform"),
    ("platform.version", "platform_version"),
    ("platform.machine", "platform_machine"),
    (
        "platform.python_implementation",
        "platform_python_implementation",
    ),
    ("python_implementation", "platform_python_implementation"),
];

/// Variables whose values are versions, so comparisons with them use
/// PEP 440 ordering when both sides parse.
const VERSION_VARIABLES: &[&str] = &[
    "python_version",
    "python_full_version",
    "implementation_version",
    "platform_release",
];

fn canonical_variable(name: &str) -> Option<&'static str> {
    VARIABLES
        .iter()
        .find(|v| **v == name)
        .copied()
        .or_else(|| ALIASES.iter().find(|(a, _)| *a == name).map(|(_, v)| *v))
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Variable(&'static str),
    Literal(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Expr {
    Or(Vec<Expr>),
    And(Vec<Expr>),
    Compare {
        lhs: Value,
        op: CompareOp,
        rhs: Value,
        /// Byte offset of the comparison, for evaluation errors.
        at: usize,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum TokenKind {
    LParen,
    RParen,
    Str(String),
    Ident(String),
    Op(CompareOp),
}

#[derive(Debug, Clone)]
struct Token {
    kind: TokenKind,
    at: usize,
}

/// A parsed marker. Parsing once lets callers reject a malformed marker
/// when a file is read, long before it is evaluated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    text: String,
    expr: Expr,
}

impl Marker {
    /// Parse a marker (the part after `;` in a requirement).
    pub fn parse(text: &str) -> Result<Marker, MarkerError> {
        let tokens = tokenize(text)?;
        let mut parser = Parser {
            text,
            tokens: &tokens,
            pos: 0,
        };
        let expr = parser.or_expr()?;
        if let Some(tok) = parser.tokens.get(parser.pos) {
            return Err(syntax(
                text,
                tok.at,
                "unexpected text after a complete marker (missing `and`/`or`?)",
            ));
        }
        Ok(Marker {
            text: text.to_string(),
            expr,
        })
    }

    /// The marker as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Evaluate with no dependency groups selected.
    pub fn evaluate(
        &self,
        env: &BTreeMap<String, String>,
        extras: &[&str],
    ) -> Result<bool, MarkerError> {
        self.evaluate_with_groups(env, extras, &[])
    }

    /// Evaluate with `extras` feeding both `extra` and the PEP 751
    /// `extras` set, and `groups` feeding `dependency_groups`.
    ///
    /// Every comparison is evaluated (no short-circuit), so a marker that
    /// cannot be evaluated fails on every interpreter, not only on those
    /// that happen to reach the bad clause.
    pub fn evaluate_with_groups(
        &self,
        env: &BTreeMap<String, String>,
        extras: &[&str],
        groups: &[&str],
    ) -> Result<bool, MarkerError> {
        let ctx = EvalContext {
            text: &self.text,
            env,
            extras: extras.iter().map(|e| normalize_name(e)).collect(),
            groups: groups.iter().map(|g| normalize_name(g)).collect(),
        };
        ctx.eval(&self.expr)
    }
}

impl fmt::Display for Marker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for Marker {
    type Err = MarkerError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Marker::parse(s)
    }
}

/// 1-based character column of byte offset `at`.
fn column(text: &str, at: usize) -> usize {
    text.get(..at).map_or(at, |s| s.chars().count()) + 1
}

fn syntax(text: &str, at: usize, message: impl Into<String>) -> MarkerError {
    MarkerError::Syntax {
        marker: text.to_string(),
        column: column(text, at),
        message: message.into(),
    }
}

fn tokenize(text: &str) -> Result<Vec<Token>, MarkerError> {
    let mut tokens = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some(&(at, c)) = chars.peek() {
        let kind = match c {
            c if c.is_whitespace() => {
                chars.next();
                continue;
            }
            '(' | ')' => {
                chars.next();
                if c == '(' {
                    TokenKind::LParen
                } else {
                    TokenKind::RParen
                }
            }
            '"' | '\'' => TokenKind::Str(quoted(text, at, c, &mut chars)?),
            c if c.is_ascii_alphabetic() || c == '_' => {
                let end = scan_while(&mut chars, |c| {
                    c.is_ascii_alphanumeric() || c == '_' || c == '.'
                });
                TokenKind::Ident(text[at..end.unwrap_or(text.len())].to_string())
            }
            _ => {
                let (op, rest) = CompareOp::split_prefix(&text[at..])
                    .ok_or_else(|| syntax(text, at, format!("unexpected character {c:?}")))?;
                let end = text.len() - rest.len();
                while chars.peek().is_some_and(|(i, _)| *i < end) {
                    chars.next();
                }
                TokenKind::Op(op)
            }
        };
        tokens.push(Token { kind, at });
    }
    Ok(tokens)
}

/// Advance while `keep` holds; return the byte offset where it stopped.
fn scan_while(
    chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>,
    keep: impl Fn(char) -> bool,
) -> Option<usize> {
    while let Some(&(i, c)) = chars.peek() {
        if !keep(c) {
            return Some(i);
        }
        chars.next();
    }
    None
}

/// Read a quoted string starting at the quote at byte `at`. PEP 508
/// strings have no escapes: they end at the next matching quote.
fn quoted(
    text: &str,
    at: usize,
    quote: char,
    chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>,
) -> Result<String, MarkerError> {
    chars.next();
    let start = at + 1;
    let end =
        scan_while(chars, |c| c != quote).ok_or_else(|| syntax(text, at, "unterminated string"))?;
    chars.next();
    Ok(text[start..end].to_string())
}

/// Recursive descent over the tokens: `or` binds looser than `and`.
struct Parser<'a> {
    text: &'a str,
    tokens: &'a [Token],
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    /// Byte offset of the current token, or the end of the text.
    fn here(&self) -> usize {
        self.peek().map_or(self.text.len(), |t| t.at)
    }

    fn error(&self, message: impl Into<String>) -> MarkerError {
        syntax(self.text, self.here(), message)
    }

    fn eat_keyword(&mut self, word: &str) -> bool {
        match self.peek() {
            Some(Token {
                kind: TokenKind::Ident(w),
                ..
            }) if w == word => {
                self.pos += 1;
                true
            }
            _ => false,
        }
    }

    fn or_expr(&mut self) -> Result<Expr, MarkerError> {
        let mut terms = vec![self.and_expr()?];
        while self.eat_keyword("or") {
            terms.push(self.and_expr()?);
        }
        Ok(if terms.len() == 1 {
            terms.remove(0)
        } else {
            Expr::Or(terms)
        })
    }

    fn and_expr(&mut self) -> Result<Expr, MarkerError> {
        let mut terms = vec![self.atom()?];
        while self.eat_keyword("and") {
            terms.push(self.atom()?);
        }
        Ok(if terms.len() == 1 {
            terms.remove(0)
        } else {
            Expr::And(terms)
        })
    }

    fn atom(&mut self) -> Result<Expr, MarkerError> {
        if matches!(self.peek().map(|t| &t.kind), Some(TokenKind::LParen)) {
            self.pos += 1;
            let inner = self.or_expr()?;
            if !matches!(self.peek().map(|t| &t.kind), Some(TokenKind::RParen)) {
                return Err(self.error("expected `)`"));
            }
            self.pos += 1;
            return Ok(inner);
        }
        let at = self.here();
        let lhs = self.value()?;
        let op = self.operator()?;
        let rhs = self.value()?;
        Ok(Expr::Compare { lhs, op, rhs, at })
    }

    fn value(&mut self) -> Result<Value, MarkerError> {
        let expected = "expected a marker variable or a quoted string";
        let Some(tok) = self.peek() else {
            return Err(self.error(format!("{expected}, found the end of the marker")));
        };
        let value = match &tok.kind {
            TokenKind::Str(s) => Value::Literal(s.clone()),
            TokenKind::Ident(name) => match canonical_variable(name) {
                Some(var) => Value::Variable(var),
                None => return Err(self.error(format!("unknown marker variable `{name}`"))),
            },
            _ => return Err(self.error(expected)),
        };
        self.pos += 1;
        Ok(value)
    }

    fn operator(&mut self) -> Result<CompareOp, MarkerError> {
        let expected = "expected a comparison operator (<, <=, ==, !=, >=, >, ~=, ===, in, not in)";
        let op = match self.peek().map(|t| &t.kind) {
            Some(TokenKind::Op(op)) => *op,
            Some(TokenKind::Ident(w)) if w == "in" => CompareOp::In,
            Some(TokenKind::Ident(w)) if w == "not" => {
                self.pos += 1;
                if !self.eat_keyword("in") {
                    return Err(self.error("expected `in` after `not`"));
                }
                return Ok(CompareOp::NotIn);
            }
            _ => return Err(self.error(expected)),
        };
        self.pos += 1;
        Ok(op)
    }
}

// ---------------------------------------------------------------------------
// Markers: evaluation
// ---------------------------------------------------------------------------

struct EvalContext<'a> {
    text: &'a str,
    env: &'a BTreeMap<String, String>,
    extras: Vec<String>,
    groups: Vec<String>,
}

impl EvalContext<'_> {
    fn eval(&self, expr: &Expr) -> Result<bool, MarkerError> {
        match expr {
            Expr::Or(terms) => self.all_terms(terms).map(|v| v.contains(&true)),
            Expr::And(terms) => self.all_terms(terms).map(|v| !v.contains(&false)),
            Expr::Compare { lhs, op, rhs, at } => {
                self.compare(lhs, *op, rhs)
                    .map_err(|message| MarkerError::Eval {
                        marker: self.text.to_string(),
                        column: column(self.text, *at),
                        message,
                    })
            }
        }
    }

    fn all_terms(&self, terms: &[Expr]) -> Result<Vec<bool>, MarkerError> {
        terms.iter().map(|t| self.eval(t)).collect()
    }

    fn compare(&self, lhs: &Value, op: CompareOp, rhs: &Value) -> Result<bool, String> {
        if let Some(result) = self.compare_sets(lhs, op, rhs)? {
            return Ok(result);
        }
        let left = self.resolve(lhs)?;
        let right = self.resolve(rhs)?;
        let versions = [lhs, rhs].iter().any(|v| is_version_variable(v))
            || [lhs, rhs].iter().all(|v| matches!(v, Value::Literal(_)));
        compare_strings(left, op, right, versions)
    }

    /// `extra`, `extras` and `dependency_groups` are compared as sets of
    /// normalized names, not as strings. `None` when neither side is one.
    fn compare_sets(
        &self,
        lhs: &Value,
        op: CompareOp,
        rhs: &Value,
    ) -> Result<Option<bool>, String> {
        let (var, other, var_on_right) = match (lhs, rhs) {
            (Value::Variable(v), Value::Literal(s)) => (*v, s, false),
            (Value::Literal(s), Value::Variable(v)) => (*v, s, true),
            (Value::Variable(a), Value::Variable(b)) => {
                if [a, b].iter().any(|v| is_set_variable(v)) {
                    return Err(format!("cannot compare `{a}` with `{b}`"));
                }
                return Ok(None);
            }
            _ => return Ok(None),
        };
        let set = match var {
            "extra" => return self.compare_extra(other, op).map(Some),
            "extras" => &self.extras,
            "dependency_groups" => &self.groups,
            _ => return Ok(None),
        };
        if !var_on_right || !matches!(op, CompareOp::In | CompareOp::NotIn) {
            return Err(format!(
                "`{var}` is a set: use `\"name\" in {var}` or `\"name\" not in {var}`"
            ));
        }
        let found = set.contains(&normalize_name(other));
        Ok(Some(found == (op == CompareOp::In)))
    }

    fn compare_extra(&self, name: &str, op: CompareOp) -> Result<bool, String> {
        let found = self.extras.contains(&normalize_name(name));
        match op {
            CompareOp::Eq => Ok(found),
            CompareOp::Ne => Ok(!found),
            _ => Err(format!(
                "`extra` can only be compared with == or !=, not `{}`",
                op.as_str()
            )),
        }
    }

    fn resolve<'v>(&'v self, value: &'v Value) -> Result<&'v str, String> {
        match value {
            Value::Literal(s) => Ok(s),
            Value::Variable(name) => {
                self.env.get(*name).map(String::as_str).ok_or_else(|| {
                    format!("marker variable `{name}` is not set in the environment")
                })
            }
        }
    }
}

fn is_version_variable(value: &Value) -> bool {
    matches!(value, Value::Variable(v) if VERSION_VARIABLES.contains(v))
}

fn is_set_variable(name: &str) -> bool {
    matches!(name, "extra" | "extras" | "dependency_groups")
}

/// Compare two resolved values: PEP 440 when `versions` allows it and both
/// sides are versions (the right side may be a `.*` prefix), otherwise
/// Python's string operators. Like `packaging`, pre-releases match (a
/// 3.13 release candidate satisfies `python_full_version >= "3.13.0rc1"`).
/// Unlike it, a version variable whose value is not a version (a Debian
/// `platform_release` such as `6.1.0-13-amd64`) falls back to string
/// comparison, as PEP 508 prescribes, instead of comparing false.
fn compare_strings(left: &str, op: CompareOp, right: &str, versions: bool) -> Result<bool, String> {
    match op {
        CompareOp::In => return Ok(right.contains(left)),
        CompareOp::NotIn => return Ok(!right.contains(left)),
        CompareOp::Arbitrary => return Ok(left.to_lowercase() == right.to_lowercase()),
        _ => {}
    }
    if versions {
        let result = Version::parse(left).ok().and_then(|v| v.matches(op, right));
        if let Some(result) = result {
            return Ok(result);
        }
    }
    match op {
        CompareOp::Eq => Ok(left == right),
        CompareOp::Ne => Ok(left != right),
        CompareOp::Lt => Ok(left < right),
        CompareOp::Le => Ok(left <= right),
        CompareOp::Gt => Ok(left > right),
        CompareOp::Ge => Ok(left >= right),
        _ => Err(format!(
            "`{left}` {} `{right}` needs PEP 440 versions on both sides",
            op.as_str()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_311() -> BTreeMap<String, String> {
        [
            ("python_version", "3.11"),
            ("python_full_version", "3.11.4"),
            ("os_name", "posix"),
            ("sys_platform", "linux"),
            ("platform_release", "6.1.0-13-amd64"),
            ("platform_system", "Linux"),
            ("platform_version", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.55-1"),
            ("platform_machine", "x86_64"),
            ("platform_python_implementation", "CPython"),
            ("implementation_name", "cpython"),
            ("implementation_version", "3.11.4"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn eval(marker: &str) -> bool {
        evaluate(marker, &env_311(), &[]).unwrap_or_else(|e| panic!("{e}"))
    }

    fn eval_with(marker: &str, key: &str, value: &str) -> bool {
        let mut env = env_311();
        env.insert(key.to_string(), value.to_string());
        evaluate(marker, &env, &[]).unwrap_or_else(|e| panic!("{e}"))
    }

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap_or_else(|e| panic!("{e}"))
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
            assert!(Version::parse(bad).is_err(), "{bad:?} parsed");
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
        let ok = |ver: &str, spec: &str| v(ver).satisfies(spec).unwrap();
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
        assert!(v("1.0").satisfies("~=1").is_err());
        assert!(v("1.0").satisfies(">=1.0,,<2").is_err());
        assert!(v("1.0").satisfies("1.0").is_err());
    }

    #[test]
    fn python_version_comparisons() {
        assert!(eval(r#"python_version < "3.12""#));
        assert!(!eval(r#"python_version < "3.11""#));
        assert!(eval(r#"python_version >= "3.8""#));
        // Version, not string, ordering: "3.11" < "3.9" as strings.
        assert!(eval(r#"python_version > "3.9""#));
        assert!(eval(r#""3.8" <= python_version"#));
        assert!(eval(r#"python_version == "3.11.*""#));
        assert!(eval(r#"python_version ~= "3.7""#));
        assert!(eval(r#"python_version in "3.10 3.11 3.12""#));
    }

    #[test]
    fn release_candidates() {
        assert!(eval(r#"python_full_version >= "3.11.0rc1""#));
        assert!(!eval_with(
            r#"python_full_version >= "3.11.0""#,
            "python_full_version",
            "3.11.0rc1"
        ));
        assert!(eval_with(
            r#"python_full_version >= "3.11.0rc1""#,
            "python_full_version",
            "3.11.0rc1"
        ));
        assert!(eval_with(
            r#"python_full_version >= "3.11.0b1""#,
            "python_full_version",
            "3.11.0rc1"
        ));
    }

    #[test]
    fn precedence_and_parentheses() {
        let m = r#"sys_platform == "win32" or (python_version >= "3.8" and platform_machine == 'x86_64')"#;
        assert!(eval(m));
        assert!(!eval_with(m, "platform_machine", "aarch64"));
        assert!(eval_with(m, "sys_platform", "win32"));
        // `and` binds tighter than `or`: true or (false and false).
        assert!(eval(
            r#"os_name == "posix" or os_name == "nt" and sys_platform == "win32""#
        ));
        // Without the implicit grouping this would be (true or false) and false.
        assert!(!eval(
            r#"(os_name == "posix" or os_name == "nt") and sys_platform == "win32""#
        ));
        assert!(eval(r#"((python_version>"3"))and(os_name=='posix')"#));
    }

    #[test]
    fn string_comparisons() {
        assert!(eval(r#""linux" in sys_platform"#));
        assert!(eval(r#""win" not in sys_platform"#));
        assert!(eval(r#"platform_system != "Windows""#));
        assert!(eval(r#"platform_python_implementation == 'CPython'"#));
        // Non-version variables compare as Python strings.
        assert!(eval(r#"platform_machine < "y""#));
        // platform_release falls back to strings when not a version...
        assert!(eval(r#"platform_release >= "6.1""#));
        // ...and uses versions when it is one.
        assert!(eval_with(
            r#"platform_release >= "5.9""#,
            "platform_release",
            "5.15.0"
        ));
        assert!(eval(r#"platform_machine === "X86_64""#));
        // Legacy alias.
        assert!(eval(
            r#"python_implementation == "CPython" and os.name == "posix""#
        ));
        let err = evaluate(r#"platform_machine ~= "x86""#, &env_311(), &[]).unwrap_err();
        assert!(matches!(err, MarkerError::Eval { .. }), "{err}");
    }

    #[test]
    fn extras() {
        let env = env_311();
        assert!(evaluate("extra == 'socks'", &env, &["socks"]).unwrap());
        assert!(!evaluate("extra == 'socks'", &env, &[]).unwrap());
        assert!(evaluate("extra == 'Socks_Proxy'", &env, &["socks-proxy"]).unwrap());
        assert!(evaluate("'socks' == extra", &env, &["socks", "http2"]).unwrap());
        assert!(evaluate("extra != 'socks'", &env, &["http2"]).unwrap());
        assert!(evaluate(
            r#"python_version >= "3.8" and extra == "test""#,
            &env,
            &["test"]
        )
        .unwrap());
        assert!(evaluate("extra < 'x'", &env, &["x"]).is_err());
    }

    #[test]
    fn lock_file_sets() {
        let m = Marker::parse(r#"'dev' in dependency_groups or "cli" in extras"#).unwrap();
        let env = env_311();
        assert!(m.evaluate_with_groups(&env, &[], &["dev"]).unwrap());
        assert!(m.evaluate_with_groups(&env, &["CLI"], &[]).unwrap());
        assert!(!m.evaluate(&env, &[]).unwrap());
        assert!(evaluate("dependency_groups == 'dev'", &env, &[]).is_err());
    }

    #[test]
    fn malformed_markers_name_the_position() {
        let cases = [
            (r#"python_version < 3.12"#, 18),
            (r#"python_version < "3.12"#, 18),
            (r#"python_versio < "3.12""#, 1),
            (r#"python_version "3.12""#, 16),
            (r#"(python_version < "3.12""#, 25),
            (r#"python_version < "3.12" and"#, 28),
            (r#"python_version < "3.12" os_name == "nt""#, 25),
            (r#"os_name not "nt""#, 13),
            (r#"os_name = "nt""#, 9),
            (r#""#, 1),
        ];
        for (marker, col) in cases {
            match Marker::parse(marker) {
                Err(MarkerError::Syntax {
                    column, marker: m, ..
                }) => {
                    assert_eq!(m, marker);
                    assert_eq!(column, col, "{marker}");
                }
                other => panic!("{marker}: {other:?}"),
            }
        }
        let err = Marker::parse(r#"os_name == "nt" or"#)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(r#""os_name == \"nt\" or""#) && err.contains("column 19"),
            "{err}"
        );
    }

    #[test]
    fn missing_environment_variable_is_an_error() {
        let env = BTreeMap::new();
        let err = evaluate(r#"os_name == "nt" or python_version < "3""#, &env, &[]).unwrap_err();
        assert!(matches!(err, MarkerError::Eval { column: 1, .. }), "{err}");
        assert!(err.to_string().contains("os_name"), "{err}");
    }
}
