//! The files a wheel installs outside site-packages: entry-point wrappers
//! and `.data/scripts` in `bin/`, `.data/headers` and `.data/data`.
//!
//! Byte-for-byte what pip writes (its vendored distlib `ScriptMaker` and
//! `fix_script`), so `pip show -f`, RECORD hashes and a diff against a pip
//! venv all agree. One function computes them; env creation writes them
//! and the view lists them in RECORD, so the two can never disagree.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::hashing::Digest;
use crate::store::dist_index::DistIndex;
use crate::wheel::Scheme;

/// distlib's SCRIPT_TEMPLATE, as pip 23-25 use it.
const SCRIPT_TEMPLATE: &str = "# -*- coding: utf-8 -*-\nimport re\nimport sys\nfrom {module} import {import_name}\nif __name__ == '__main__':\n    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])\n    sys.exit({func}())\n";

/// Linux's limit on a `#!` line, as distlib counts it.
const MAX_SHEBANG: usize = 127;

/// Where a venv's files go for one interpreter version.
#[derive(Debug, Clone)]
pub struct EnvLayout {
    pub prefix: PathBuf,
    /// `X.Y`.
    pub python_version: String,
}

impl EnvLayout {
    /// `<prefix>/bin/python`: what pip's `sys.executable` is in a venv.
    pub fn python(&self) -> PathBuf {
        self.prefix.join("bin/python")
    }

    pub fn site_packages(&self) -> PathBuf {
        self.prefix
            .join(crate::install::site_packages(&self.python_version))
    }

    /// The venv-relative directory of a non-site-packages scheme.
    fn scheme_dir(&self, scheme: Scheme, dist_name: &str) -> String {
        match scheme {
            Scheme::Scripts => "bin".to_string(),
            Scheme::Headers => format!("include/site/python{}/{dist_name}", self.python_version),
            Scheme::Data => String::new(),
            Scheme::Purelib | Scheme::Platlib => {
                crate::install::site_packages(&self.python_version)
            }
        }
    }
}

/// Bytes of an env file: a store object to copy, or generated content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvContent {
    Object(Digest),
    Generated(Arc<[u8]>),
}

/// One file a dist installs outside site-packages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvFile {
    /// Relative to the venv prefix, `/`-separated.
    pub path: String,
    pub content: EnvContent,
    pub size: u64,
    pub sha256: Digest,
    pub executable: bool,
}

/// The shebang pip writes for `python`: plain when short and space-free,
/// else the `/bin/sh` exec trick that works for any path.
pub fn shebang(python: &Path) -> String {
    let exe = python.display().to_string();
    let quoted = if exe.contains(' ') {
        format!("\"{exe}\"")
    } else {
        exe
    };
    if !quoted.contains(' ') && quoted.len() + 3 <= MAX_SHEBANG {
        format!("#!{quoted}\n")
    } else {
        format!("#!/bin/sh\n'''exec' {quoted} \"$0\" \"$@\"\n' '''\n")
    }
}

/// A console/gui script wrapper for `module:attr[.sub]` (extras ignored,
/// as pip does).
pub fn entry_point_script(python: &Path, spec: &str) -> Option<Vec<u8>> {
    let spec = spec.split('[').next()?.trim();
    let (module, func) = spec.split_once(':')?;
    let (module, func) = (module.trim(), func.trim());
    if module.is_empty() || func.is_empty() {
        return None;
    }
    let import_name = func.split('.').next()?;
    let body = SCRIPT_TEMPLATE
        .replace("{module}", module)
        .replace("{import_name}", import_name)
        .replace("{func}", func);
    Some(format!("{}{body}", shebang(python)).into_bytes())
}

/// pip's `fix_script`: a first line starting `#!python` becomes
/// `#!<python>`; anything else is left alone (returns None).
pub fn fix_script(content: &[u8], python: &Path) -> Option<Vec<u8>> {
    if !content.starts_with(b"#!python") {
        return None;
    }
    let rest = content
        .iter()
        .position(|&b| b == b'\n')
        .map_or(&[][..], |i| &content[i + 1..]);
    let mut out = format!("#!{}\n", python.display()).into_bytes();
    out.extend_from_slice(rest);
    Some(out)
}

/// Every file `dist` installs outside site-packages. `read_object` gives
/// a store object's bytes (needed only for `.data/scripts` files, to see
/// whether their first line needs rewriting).
pub fn env_files(
    dist: &DistIndex,
    layout: &EnvLayout,
    read_object: &dyn Fn(&Digest) -> std::io::Result<Vec<u8>>,
) -> std::io::Result<Vec<EnvFile>> {
    let mut out = Vec::new();
    let python = layout.python();
    for f in dist.files.iter().filter(|f| !f.scheme.in_site_packages()) {
        let dir = layout.scheme_dir(f.scheme, &dist.meta.name);
        let path = if dir.is_empty() {
            f.path.clone()
        } else {
            format!("{dir}/{}", f.path)
        };
        let fixed = if f.scheme == Scheme::Scripts {
            fix_script(&read_object(&f.object)?, &python)
        } else {
            None
        };
        let executable = f.executable || f.scheme == Scheme::Scripts;
        out.push(match fixed {
            Some(bytes) => generated(path, bytes, executable),
            None => EnvFile {
                path,
                content: EnvContent::Object(f.object),
                size: f.size,
                sha256: f.object,
                executable,
            },
        });
    }
    // On POSIX, console and gui wrappers are identical.
    for group in ["console_scripts", "gui_scripts"] {
        for (name, spec) in dist.meta.entry_points.get(group).into_iter().flatten() {
            if let Some(bytes) = entry_point_script(&python, spec) {
                out.push(generated(format!("bin/{name}"), bytes, true));
            }
        }
    }
    Ok(out)
}

fn generated(path: String, bytes: Vec<u8>, executable: bool) -> EnvFile {
    EnvFile {
        path,
        size: bytes.len() as u64,
        sha256: Digest::of(&bytes),
        content: EnvContent::Generated(Arc::from(bytes)),
        executable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shebangs_follow_distlib() {
        assert_eq!(shebang(Path::new("/v/bin/python")), "#!/v/bin/python\n");
        let spaced = shebang(Path::new("/my env/bin/python"));
        assert_eq!(
            spaced,
            "#!/bin/sh\n'''exec' \"/my env/bin/python\" \"$0\" \"$@\"\n' '''\n"
        );
        let long = format!("/{}/bin/python", "x".repeat(130));
        assert!(shebang(Path::new(&long)).starts_with("#!/bin/sh\n'''exec' /x"));
    }

    #[test]
    fn entry_point_wrapper_matches_pip() {
        let s = String::from_utf8(
            entry_point_script(Path::new("/v/bin/python"), "pkg.cli:main.run [extra]").unwrap(),
        )
        .unwrap();
        assert!(s.starts_with("#!/v/bin/python\n# -*- coding: utf-8 -*-\n"));
        assert!(s.contains("from pkg.cli import main\n"));
        assert!(s.ends_with("    sys.exit(main.run())\n"));
        assert!(entry_point_script(Path::new("/p"), "nocolon").is_none());
    }

    #[test]
    fn fixes_only_python_shebangs() {
        let fixed = fix_script(b"#!python -u\nprint(1)\n", Path::new("/v/bin/python")).unwrap();
        assert_eq!(fixed, b"#!/v/bin/python\nprint(1)\n");
        assert!(fix_script(b"#!/bin/sh\necho\n", Path::new("/p")).is_none());
    }
}
