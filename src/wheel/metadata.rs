//! The RFC 822-style files of a `.dist-info` (`WHEEL`, `METADATA`) and
//! `entry_points.txt`.

use std::collections::BTreeMap;

use crate::wheel::{check_safe_path, WheelError};

/// Parse RFC 822-style `Key: value` headers (WHEEL, METADATA), stopping
/// at the first blank line (the METADATA body is the description).
fn headers(text: &str) -> Vec<(&str, &str)> {
    text.lines()
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect()
}

fn header<'t>(h: &[(&str, &'t str)], key: &str) -> Option<&'t str> {
    h.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| *v)
}

/// Returns Root-Is-Purelib after checking Wheel-Version.
pub(super) fn parse_wheel_file(text: &str) -> Result<bool, WheelError> {
    let h = headers(text);
    let version = header(&h, "Wheel-Version")
        .ok_or_else(|| WheelError::BadWheelFile("no Wheel-Version".into()))?;
    if version.split('.').next() != Some("1") {
        return Err(WheelError::UnsupportedWheelVersion(version.to_string()));
    }
    match header(&h, "Root-Is-Purelib")
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        _ => Err(WheelError::BadWheelFile(
            "Root-Is-Purelib must be true or false".into(),
        )),
    }
}

/// The value of the first `key:` header of a WHEEL or METADATA file.
pub fn first_header<'t>(text: &'t str, key: &str) -> Option<&'t str> {
    header(&headers(text), key)
}

/// `Name` and `Version` of a METADATA file (a wheel's or an installed
/// dist's: they are the same file).
pub fn parse_metadata(text: &str) -> Result<(String, String), WheelError> {
    let h = headers(text);
    let name = header(&h, "Name").ok_or_else(|| WheelError::BadMetadata("no Name".into()))?;
    let version =
        header(&h, "Version").ok_or_else(|| WheelError::BadMetadata("no Version".into()))?;
    Ok((name.to_string(), version.to_string()))
}

/// Parse `entry_points.txt` (an INI file: `[group]` then `name = value`).
pub fn parse_entry_points(text: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut group: Option<String> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with(['#', ';']) {
            continue;
        }
        if let Some(g) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            group = Some(g.trim().to_string());
        } else if let (Some(g), Some((k, v))) = (&group, line.split_once('=')) {
            out.entry(g.clone())
                .or_default()
                .insert(k.trim().to_string(), v.trim().to_string());
        }
    }
    out
}

/// Whether an entry point value is `module.sub:attr.sub [extras]`, as
/// pip's and installer's grammar requires. The module and attribute are
/// pasted into the wrapper's `from {module} import {attr}`, so anything
/// else (`os import getcwd;import os;os.system(...);from os:getcwd`) would
/// be code run by every user of the script.
fn is_script_target(value: &str) -> bool {
    let (spec, extras) = match value.split_once('[') {
        Some((spec, extras)) => (spec, Some(extras)),
        None => (value, None),
    };
    let extras_ok = extras.is_none_or(|e| {
        e.trim_end().strip_suffix(']').is_some_and(|inner| {
            inner.split(',').all(|x| {
                x.trim()
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            })
        })
    });
    let Some((module, attr)) = spec.split_once(':') else {
        return false;
    };
    extras_ok && is_dotted_identifier(module.trim()) && is_dotted_identifier(attr.trim())
}

fn is_dotted_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|part| {
            let mut chars = part.chars();
            chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
                && chars.all(|c| c.is_alphanumeric() || c == '_')
        })
}

/// Console and GUI script names become files in `bin/`, so each must be
/// one plain path component (`../../.bashrc` would write outside the venv);
/// their values are pasted into Python source, so no control characters
/// (a lone `\r` ends a Python line).
pub(super) fn check_script_entry_points(
    entry_points: &BTreeMap<String, BTreeMap<String, String>>,
) -> Result<(), WheelError> {
    for group in ["console_scripts", "gui_scripts"] {
        for (name, value) in entry_points.get(group).into_iter().flatten() {
            let bad = |why: &str| WheelError::BadEntryPoint(format!("[{group}] {name:?}: {why}"));
            if name.contains('/') || check_safe_path(name).is_err() {
                return Err(bad("a script name must be a plain file name"));
            }
            if value.chars().any(char::is_control) {
                return Err(bad("control character in the value"));
            }
            if !is_script_target(value) {
                return Err(bad(&format!(
                    "{value:?} is not `module:attr` (dotted Python identifiers, optional [extras])"
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_targets_are_dotted_identifiers() {
        for good in [
            "pkg.cli:main",
            "pkg:main.run [extra]",
            "p:m[a, b-c]",
            "_x:é",
        ] {
            assert!(is_script_target(good), "{good}");
        }
        for bad in [
            "os import getcwd;import os;os.system('id');from os:getcwd",
            "pkg",
            "pkg:",
            ":main",
            "pkg.:main",
            "pkg:main()",
            "pkg:main [x",
            "pkg:main [x;y]",
            "1pkg:main",
            "pkg:ma in",
        ] {
            assert!(!is_script_target(bad), "{bad}");
        }
    }
}
