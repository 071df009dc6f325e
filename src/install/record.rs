//! The installed `RECORD` of a dist in an environment: every file really
//! installed, as pip writes it (sorted, sha256 and size for files, empty
//! fields for pycs and RECORD itself, CRLF line ends: pip's `csv.writer`
//! default, so the file is byte-identical to pip's). pip reads it to
//! describe and uninstall a dist, so generated scripts must be in it too.

use crate::hashing::Digest;
use crate::install::scripts::EnvFile;
use crate::store::dist_index::DistIndex;
use crate::store::pyc::pyc_path;
use crate::store::PycSizes;
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
    let site_files = || {
        dist.files
            .iter()
            .filter(|f| f.scheme.in_site_packages() && f.path != own)
    };
    // The pycs compiled for the store; one the wheel shipped at the same
    // path is replaced by it (as pip compiles over it), so listed once.
    let compiled: std::collections::HashSet<String> = site_files()
        .filter(|f| pycs.contains_key(&f.object))
        .filter_map(|f| f.path.strip_suffix(".py"))
        .map(|stem| pyc_path(stem, cache_tag))
        .collect();
    for f in site_files() {
        let installer_file =
            f.path == format!("{info}/INSTALLER") || f.path == format!("{info}/REQUESTED");
        if !installer_file && !compiled.contains(&f.path) {
            add(f.path.clone(), Some(&f.object), Some(f.size));
        }
    }
    for path in compiled {
        add(path, None, None);
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::install::scripts::EnvContent;
    use crate::store::dist_index::{DistMeta, FileEntry};
    use crate::wheel::Scheme;

    const INIT: &[u8] = b"VALUE = 1\n";
    const UTIL: &[u8] = b"def f():\n    return 2\n";
    const METADATA: &[u8] = b"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n";
    const SCRIPT: &[u8] = b"#!/venv/bin/python\nimport demo\n";

    fn file(scheme: Scheme, path: &str, content: &[u8]) -> FileEntry {
        FileEntry {
            scheme,
            executable: false,
            size: content.len() as u64,
            object: Digest::of(content),
            path: path.to_string(),
        }
    }

    /// demo 1.0 as the store holds it: two modules (one with a pyc), a
    /// data file whose name needs CSV quoting, the wheel's own RECORD and
    /// INSTALLER (both replaced) and a script outside site-packages.
    fn demo() -> (DistIndex, PycSizes) {
        let info = "demo-1.0.dist-info";
        let files = vec![
            file(Scheme::Purelib, "demo/__init__.py", INIT),
            file(Scheme::Purelib, "demo/util.py", UTIL),
            file(Scheme::Purelib, "demo/data,1.txt", b"x"),
            file(Scheme::Purelib, &format!("{info}/METADATA"), METADATA),
            file(Scheme::Purelib, &format!("{info}/RECORD"), b"wheel's own"),
            file(Scheme::Purelib, &format!("{info}/INSTALLER"), b"pip\n"),
            file(Scheme::Scripts, "demo-cli", SCRIPT),
        ];
        let meta = DistMeta {
            id: "demo-1.0-0123".into(),
            name: "demo".into(),
            version: "1.0".into(),
            wheel: "demo-1.0-py3-none-any.whl".into(),
            wheel_sha256: String::new(),
            wheel_size: 0,
            tags: vec!["py3-none-any".into()],
            root_is_purelib: true,
            dist_info: info.into(),
            ingested: 0,
            file_count: files.len(),
            unpacked_size: 0,
            entry_points: Default::default(),
        };
        let mut pycs = PycSizes::default();
        pycs.insert(Digest::of(INIT), 123);
        (DistIndex { meta, files }, pycs)
    }

    fn script() -> EnvFile {
        EnvFile {
            path: "bin/demo-cli".into(),
            content: EnvContent::Generated(Arc::from(SCRIPT)),
            size: SCRIPT.len() as u64,
            sha256: Digest::of(SCRIPT),
            executable: true,
        }
    }

    /// The expected text was written by hand, with hashes from Python's
    /// hashlib and base64, in the format pip's installer writes.
    #[test]
    fn renders_pips_format() {
        let (dist, pycs) = demo();
        let env_files = [script()];
        let extras = InstalledExtras {
            installer: b"sitefs\n",
            requested: true,
            env_files: &env_files,
            up_to_prefix: "../../../",
        };
        let record = installed_record(&dist, "cpython-311", &pycs, &extras);
        let expected = [
            "../../../bin/demo-cli,sha256=22rssIoQ5ubuJAvQyJjT8DC2UCpr_Al3euXEim5E-6Y,31",
            "demo-1.0.dist-info/INSTALLER,sha256=dPr3le-3CqN0OXiG9cd2RTb5mBI2b_qwBzunv5cb9Y0,7",
            "demo-1.0.dist-info/METADATA,sha256=NKonpgZPlYtBt4GiF_KQ_Qq1-WUeK25Kzas0G3uTwwU,46",
            "demo-1.0.dist-info/RECORD,,",
            "demo-1.0.dist-info/REQUESTED,sha256=47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU,0",
            "demo/__init__.py,sha256=4T34xEr13qHkEkA5ELmcxaSPLMv2imazN01quc75_GU,10",
            "demo/__pycache__/__init__.cpython-311.pyc,,",
            "\"demo/data,1.txt\",sha256=LXEWQrcmsEQBYnyp-6wy9chTD7GQPMTbAiWHF5IaSIE,1",
            "demo/util.py,sha256=t_3u_S_y_TavtZGcd4kFN6jXTBWx_DFgWfxp37UnqT8,22",
        ];
        let expected: String = expected.iter().map(|row| format!("{row}\r\n")).collect();
        assert_eq!(record, expected);
    }

    #[test]
    fn unrequested_dists_have_no_requested_row() {
        let (dist, _) = demo();
        let extras = InstalledExtras {
            installer: b"sitefs\n",
            requested: false,
            env_files: &[],
            up_to_prefix: "../../../",
        };
        let record = installed_record(&dist, "cpython-311", &PycSizes::default(), &extras);
        let paths: Vec<&str> = record
            .split_terminator("\r\n")
            .map(|row| row.rsplitn(3, ',').last().unwrap_or(row))
            .collect();
        assert_eq!(
            paths,
            [
                "demo-1.0.dist-info/INSTALLER",
                "demo-1.0.dist-info/METADATA",
                "demo-1.0.dist-info/RECORD",
                "demo/__init__.py",
                "\"demo/data,1.txt\"",
                "demo/util.py",
            ]
        );
    }
}
