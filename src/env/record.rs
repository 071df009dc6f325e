//! The installed `RECORD` of a dist in an environment: every file really
//! installed, as pip writes it (sorted, sha256 and size for files, empty
//! fields for pycs and RECORD itself, CRLF line ends: pip's `csv.writer`
//! default, so the file is byte-identical to pip's). pip reads it to
//! describe and uninstall a dist, so generated scripts must be in it too.

use crate::env::scripts::EnvFile;
use crate::hashing::Digest;
use crate::store::dist_index::DistIndex;
use crate::store::PycSizes;
use crate::view::pyc_path;
use crate::wheel::{csv_field, RecordHash};

/// Extra files the environment adds to a dist's dist-info.
pub struct InstalledExtras<'a> {
    pub installer: &'a [u8],
    pub requested: bool,
    pub env_files: &'a [EnvFile],
    /// How site-packages reaches the venv prefix, e.g. `../../../`.
    pub up_to_prefix: &'a str,
}

/// Render RECORD for `dist` with the pycs of `pycs` and the extras.
pub fn installed_record(
    dist: &DistIndex,
    cache_tag: &str,
    pycs: &PycSizes,
    extras: &InstalledExtras,
) -> String {
    let info = &dist.meta.dist_info;
    let own = format!("{info}/RECORD");
    let mut rows: Vec<(String, String)> = Vec::new();
    let mut add = |path: String, hash: Option<&Digest>, size: Option<u64>| {
        let fields = match (hash, size) {
            (Some(h), Some(s)) => format!("{},{s}", RecordHash::sha256_field(h)),
            _ => ",".to_string(),
        };
        rows.push((path, fields));
    };
    for f in dist
        .files
        .iter()
        .filter(|f| f.scheme.in_site_packages() && f.path != own)
    {
        if f.path == format!("{info}/INSTALLER") || f.path == format!("{info}/REQUESTED") {
            continue;
        }
        add(f.path.clone(), Some(&f.object), Some(f.size));
        if let Some(stem) = f.path.strip_suffix(".py") {
            if pycs.contains_key(&f.object) {
                add(pyc_path(stem, cache_tag), None, None);
            }
        }
    }
    add(
        format!("{info}/INSTALLER"),
        Some(&Digest::of(extras.installer)),
        Some(extras.installer.len() as u64),
    );
    if extras.requested {
        add(format!("{info}/REQUESTED"), Some(&Digest::of(b"")), Some(0));
    }
    for e in extras.env_files {
        add(
            format!("{}{}", extras.up_to_prefix, e.path),
            Some(&e.sha256),
            Some(e.size),
        );
    }
    add(own, None, None);
    rows.sort();
    rows.dedup();
    rows.into_iter()
        .map(|(p, f)| format!("{},{f}\r\n", csv_field(&p)))
        .collect()
}
