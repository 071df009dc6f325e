//! What installing a wheel into a venv produces besides site-packages,
//! byte for byte as pip does: entry-point wrappers and `.data/` scripts,
//! headers and data ([`scripts`]), and each dist's installed `RECORD`
//! ([`record`]). Pure functions of a dist index and a venv layout: env
//! creation writes these files, the view serves the RECORDs, so the two
//! can never disagree.

pub mod record;
pub mod scripts;

/// A venv's site-packages, relative to the venv: where `python -m venv`
/// puts it on POSIX, and so where every venv tool looks for it.
pub fn site_packages(python_version: &str) -> String {
    format!("lib/python{python_version}/site-packages")
}
