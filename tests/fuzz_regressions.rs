//! Every input the fuzzers (tests/fuzz/) ever crashed, replayed on stable
//! Rust through the same checks the fuzz targets run, so a fixed bug stays
//! fixed without cargo-fuzz or nightly. Crashes live in
//! `tests/fuzz/regressions/<target>/`, one file each, named after the bug;
//! the seed inputs in `tests/fuzz/seeds/<target>/` replay too, as a check
//! that the checks themselves accept valid input.

#[path = "fuzz/checks.rs"]
mod checks;

use std::path::{Path, PathBuf};

/// Replay every input of `target`: none may panic, and every seed must
/// be accepted (a seed that is rejected would fuzz only the error paths).
fn replay(target: &str, check: fn(&[u8]) -> bool) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz");
    for kind in ["seeds", "regressions"] {
        for file in inputs(&root.join(kind).join(target)) {
            let data = std::fs::read(&file).unwrap();
            let outcome = std::panic::catch_unwind(|| check(&data));
            assert!(outcome.is_ok(), "{} panics", file.display());
            if kind == "seeds" {
                assert!(outcome.unwrap(), "{} is rejected", file.display());
            }
        }
    }
}

/// The files of `dir`, sorted; none when it does not exist.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

#[test]
fn wheel_bytes() {
    replay("wheel_bytes", checks::wheel_bytes);
}

#[test]
fn wheel_parts() {
    replay("wheel_parts", checks::wheel_parts);
}

#[test]
fn manifest() {
    replay("manifest", checks::manifest);
}

#[test]
fn requirements() {
    replay("requirements", checks::requirements);
}

#[test]
fn pylock() {
    replay("pylock", checks::pylock);
}
