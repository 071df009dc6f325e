//! Distribution names and PEP 427 wheel file names: one place decides
//! what a valid name is and how names compare (PEP 503), for file names,
//! METADATA, requirements and lock files alike.

use crate::wheel::WheelError;

/// The PEP 427 file name fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WheelName {
    pub distribution: String,
    pub version: String,
    pub build: Option<String>,
    pub python: Vec<String>,
    pub abi: Vec<String>,
    pub platform: Vec<String>,
}

impl WheelName {
    /// Parse `NAME-VERSION[-BUILD]-PY-ABI-PLAT.whl`.
    pub fn parse(file_name: &str) -> Result<Self, WheelError> {
        let bad = || WheelError::BadFileName(file_name.to_string());
        let stem = file_name.strip_suffix(".whl").ok_or_else(bad)?;
        let parts: Vec<&str> = stem.split('-').collect();
        let (build, rest) = match parts.len() {
            5 => (None, &parts[2..]),
            6 => (Some(parts[2].to_string()), &parts[3..]),
            _ => return Err(bad()),
        };
        if parts.iter().any(|p| p.is_empty()) || !is_pep508_name(parts[0]) {
            return Err(bad());
        }
        let split = |s: &str| s.split('.').map(str::to_string).collect::<Vec<_>>();
        Ok(WheelName {
            distribution: parts[0].to_string(),
            version: parts[1].to_string(),
            build,
            python: split(rest[0]),
            abi: split(rest[1]),
            platform: split(rest[2]),
        })
    }

    /// Every `python-abi-platform` triple this wheel is compatible with.
    pub fn tags(&self) -> Vec<String> {
        let mut out = Vec::new();
        for py in &self.python {
            for abi in &self.abi {
                for plat in &self.platform {
                    out.push(format!("{py}-{abi}-{plat}"));
                }
            }
        }
        out
    }

    /// The compressed tag set as written in the file name.
    pub fn tag_string(&self) -> String {
        format!(
            "{}-{}-{}",
            self.python.join("."),
            self.abi.join("."),
            self.platform.join(".")
        )
    }
}

/// A PEP 508 name: ASCII letters and digits, with `.`, `_` and `-` only
/// inside. The one rule for a distribution name, wherever it comes from
/// (a wheel's file name, METADATA, a requirement, a lock): METADATA's
/// `Name` names the headers directory of a venv, so a name like `..` must
/// not get through.
pub fn is_pep508_name(name: &str) -> bool {
    let b = name.as_bytes();
    b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

/// PEP 503 normalization: lowercase, runs of `-_.` become one `-`. Used to
/// compare names from file names, METADATA and requirements.
pub fn normalize_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut sep = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            sep = true;
        } else {
            if sep && !out.is_empty() {
                out.push('-');
            }
            sep = false;
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}
