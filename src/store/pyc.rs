//! How pycs are named (PEP 3147), in one place: the view places them,
//! RECORD lists them, the compiler's tests look for them. (Where the
//! store keeps them, by source digest, is [`crate::store::layout`]'s.)

/// `<stem>.<cache_tag>.pyc`, the file name of a pyc inside `__pycache__`
/// (e.g. `pyc_name("mod", "cpython-311")` is "mod.cpython-311.pyc").
pub fn pyc_name(stem: &str, cache_tag: &str) -> String {
    let mut out = String::new();
    push_pyc_name(&mut out, stem, cache_tag);
    out
}

/// [`pyc_name`] appended to `out`, for callers naming thousands of pycs
/// into one reused buffer (building a view).
pub fn push_pyc_name(out: &mut String, stem: &str, cache_tag: &str) {
    out.push_str(stem);
    out.push('.');
    out.push_str(cache_tag);
    out.push_str(".pyc");
}

/// Where the pyc of a source sits in its tree (PEP 3147):
/// `dir/stem` -> `dir/__pycache__/stem.<tag>.pyc`.
pub fn pyc_path(stem_path: &str, cache_tag: &str) -> String {
    let (dir, stem) = match stem_path.rsplit_once('/') {
        Some((dir, stem)) => (format!("{dir}/"), stem),
        None => (String::new(), stem_path),
    };
    format!("{dir}__pycache__/{}", pyc_name(stem, cache_tag))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pyc_names() {
        assert_eq!(pyc_name("mod", "cpython-311"), "mod.cpython-311.pyc");
        assert_eq!(
            pyc_name("__init__", "cpython-313"),
            "__init__.cpython-313.pyc"
        );
    }

    #[test]
    fn pyc_paths_go_in_pycache_beside_the_source() {
        assert_eq!(pyc_path("pkg/mod", "t"), "pkg/__pycache__/mod.t.pyc");
        assert_eq!(pyc_path("top", "t"), "__pycache__/top.t.pyc");
        let mut buf = String::from("x");
        push_pyc_name(&mut buf, "m", "t");
        assert_eq!(buf, "xm.t.pyc");
    }
}
