//! PEP 508 environment markers.
//!
//! Requirements files and lock files say which packages apply to which
//! interpreter with markers such as `python_version < "3.12"`. We evaluate
//! them against the *target* interpreter's marker environment
//! ([`crate::interpreter::Interpreter::marker_env`]), never our own host,
//! so the same lock gives the same answer wherever sitefs runs.
//!
//! The rules follow `packaging.markers`, which is what pip and uv agree
//! with: a comparison uses PEP 440 semantics ([`crate::resolve::version`])
//! when both sides are versions and falls back to Python string comparison
//! otherwise. The grammar is ours rather than a crate's so that every
//! error names the column of the mistake in a long requirements line.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::resolve::version::{self, Operator};
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

    /// The PEP 440 operator this stands for in a version comparison;
    /// `None` for the string-only `===`, `in` and `not in`.
    fn version_operator(self) -> Option<Operator> {
        Some(match self {
            CompareOp::Lt => Operator::LessThan,
            CompareOp::Le => Operator::LessThanEqual,
            CompareOp::Ne => Operator::NotEqual,
            CompareOp::Eq => Operator::Equal,
            CompareOp::Ge => Operator::GreaterThanEqual,
            CompareOp::Gt => Operator::GreaterThan,
            CompareOp::Compatible => Operator::TildeEqual,
            CompareOp::Arbitrary | CompareOp::In | CompareOp::NotIn => return None,
        })
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
        let result = version::parse(left)
            .ok()
            .zip(op.version_operator())
            .and_then(|(v, op)| version::compare(&v, op, right));
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
