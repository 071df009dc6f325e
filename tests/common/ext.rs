//! A real CPython extension module, compiled for the test interpreter.
//!
//! Serving compiled modules is where FUSE views differ from plain trees
//! (dlopen, mmap PROT_EXEC, inode identity), so tests need a genuine `.so`
//! rather than a stub. It is compiled with the system C compiler against the
//! interpreter's own headers; `$CC` overrides the compiler.

use std::path::Path;
use std::process::Command;

/// The constant the module exports as `MAGIC`.
pub const EXT_MAGIC: i64 = 42;

/// C source of a module `name` exposing `add(a, b)` and `MAGIC`.
fn c_source(name: &str) -> String {
    format!(
        r#"#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *add(PyObject *self, PyObject *args) {{
    long a, b;
    if (!PyArg_ParseTuple(args, "ll", &a, &b))
        return NULL;
    return PyLong_FromLong(a + b);
}}

static PyMethodDef methods[] = {{
    {{"add", add, METH_VARARGS, "Return a + b."}},
    {{NULL, NULL, 0, NULL}}
}};

static struct PyModuleDef moddef = {{
    PyModuleDef_HEAD_INIT, "{name}", "sitefs test extension", -1, methods
}};

PyMODINIT_FUNC PyInit_{name}(void) {{
    PyObject *m = PyModule_Create(&moddef);
    if (m != NULL && PyModule_AddIntConstant(m, "MAGIC", {EXT_MAGIC}) < 0) {{
        Py_DECREF(m);
        return NULL;
    }}
    return m;
}}
"#
    )
}

/// Runs `python -c code` and returns its trimmed stdout; panics on failure.
pub fn python_eval(python: &str, code: &str) -> String {
    let out = Command::new(python)
        .args(["-c", code])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    assert!(
        out.status.success(),
        "{python} -c {code:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The interpreter's preferred extension suffix,
/// e.g. ".cpython-311-x86_64-linux-gnu.so".
pub fn ext_suffix(python: &str) -> String {
    python_eval(
        python,
        "import importlib.machinery as m; print(m.EXTENSION_SUFFIXES[0])",
    )
}

/// Directory holding `Python.h` for this interpreter.
pub fn python_include_dir(python: &str) -> String {
    python_eval(
        python,
        "import sysconfig; print(sysconfig.get_paths()['include'])",
    )
}

/// Compiles module `module_name` into `out_dir/<module_name><ext_suffix>`
/// and returns the shared object's bytes (put them in a wheel at
/// `<module_name><ext_suffix>`, or import from `out_dir` directly).
pub fn build_extension_module(python: &str, module_name: &str, out_dir: &Path) -> Vec<u8> {
    let source = out_dir.join(format!("{module_name}.c"));
    std::fs::write(&source, c_source(module_name)).expect("write C source");
    let object = out_dir.join(format!("{module_name}{}", ext_suffix(python)));
    let compiler = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let out = Command::new(&compiler)
        .args(["-shared", "-fPIC", "-O1"])
        .arg(format!("-I{}", python_include_dir(python)))
        .arg("-o")
        .arg(&object)
        .arg(&source)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {compiler}: {e}"));
    assert!(
        out.status.success(),
        "compiling {module_name} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(&object).expect("read compiled module")
}
