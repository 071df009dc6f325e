"""Compare two venvs file by file, or dump what importlib.metadata sees.

Used by benches/differential.sh (a pip venv against a sitefs env made
from the same wheels); runs on the standard library only.

    python3 difftree.py tree PIP OURS  every path of a pip venv and a sitefs venv
    python3 difftree.py text PIP OURS  two outputs (pip show, ...), line by line
    VENV/bin/python difftree.py meta  importlib.metadata of VENV, as text

`tree` compares type, mode (& 0o7777), symlink targets and bytes, each
venv's own path replaced by @VENV@, and prints one line per difference.
The differences that are by design are listed in EXPECTED with their
reason; it prints how often each was seen, and exits 1 if any other
difference is found.
"""

import csv
import difflib
import hashlib
import io
import os
import re
import sys
from base64 import urlsafe_b64encode

# What pip and sitefs do differently on purpose. Path patterns are checked
# by `expected_reason`; keep this list and that function in step.
EXPECTED = {
    "manifest": "sitefs.toml is the sitefs manifest; a pip venv has none",
    "pyc": "pycs: pip writes timestamp pycs at install; sitefs's are symlinks "
    "to the unchecked-hash pycs compiled once in the store (-o pyc=link). "
    "Names must match, and each link must resolve to a pyc of the same interpreter",
    "installer": "INSTALLER names the installer: pip / sitefs",
    "script-pyc": "pip byte-compiles every .py it installs, also .data/scripts "
    "files in bin/ (bin/__pycache__/X.cpython-3Y.pyc, listed in RECORD); "
    "nothing imports them (bin/ is not on sys.path, a script runs from "
    "source as __main__), so sitefs (like uv) writes none",
    "installer-line": "`pip show -v` prints the INSTALLER: pip / sitefs",
}

# A pyc (or its __pycache__ directory) outside site-packages, as a path
# relative to the venv or as RECORD spells it from site-packages.
OUTSIDE_PYC = re.compile(r"^(?!lib/python[0-9.]+/site-packages/)(.*/)?__pycache__(/[^/]+\.pyc)?$")
RECORD_OUTSIDE_PYC = re.compile(r"(^|\s)\.\./\S*__pycache__/\S+\.pyc(\s|$)")


def expected_reason(rel, pip, ours):
    """The EXPECTED key that explains a difference at `rel` between the
    pip venv's entry and the sitefs venv's (None: absent), else None."""
    if rel == "sitefs.toml" and pip is None and ours is not None:
        return "manifest"
    if ours is None and OUTSIDE_PYC.match(rel):
        return "script-pyc"
    if pip is None or ours is None:
        return None
    parts = rel.split("/")
    if len(parts) > 1 and parts[-2] == "__pycache__" and rel.endswith(".pyc"):
        if pip[0] == "file" and ours[0] == "link" and linked_magic(ours[2]) == pip[3][:4]:
            return "pyc"
        return None
    if pip[0] != "file" or ours[0] != "file" or pip[1] != ours[1]:
        return None
    if rel.endswith(".dist-info/INSTALLER"):
        return "installer"
    return None


def linked_magic(target):
    """The first 4 bytes (the interpreter's magic) of a pyc link's target."""
    try:
        with open(target, "rb") as f:
            return f.read(4)
    except OSError:
        return None


def record_hash(data):
    digest = urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode()


def normalized_record(data, record_path, root):
    """RECORD with every hashed row checked against the file really there
    (scripts embed the venv path, so their hashes differ between venvs
    and are each checked against their own file) and the INSTALLER row's
    hash, which follows INSTALLER's content, blanked, and rows of pycs
    outside site-packages ("script-pyc") dropped. Line ends are kept:
    both must write the same ones."""
    site = os.path.dirname(os.path.dirname(record_path))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    ends = "CRLF" if b"\r\n" in data else "LF"
    for row in csv.reader(io.StringIO(data.decode("utf-8"), newline="")):
        if len(row) != 3:
            writer.writerow(["BAD ROW"] + row)
            continue
        path, digest, size = row
        if RECORD_OUTSIDE_PYC.search(path):
            continue  # "script-pyc", counted where the file is
        if path.endswith(".dist-info/INSTALLER"):
            digest, size = "(installer)", "(installer)"
        elif digest:
            full = os.path.normpath(os.path.join(site, path))
            try:
                with open(full, "rb") as f:
                    content = f.read()
            except OSError as e:
                digest = "MISSING %s" % e.strerror
            else:
                ok = digest == record_hash(content) and size == str(len(content))
                digest, size = ("ok", "ok") if ok else ("WRONG " + digest, size)
        writer.writerow([path, digest, size])
    return ("%s\n%s" % (ends, out.getvalue())).encode()


def entry(path, root, venv_bytes):
    """(kind, mode, content) of one path; content is a digest for files."""
    st = os.lstat(path)
    mode = st.st_mode & 0o7777
    if os.path.islink(path):
        return ("link", 0, os.readlink(path).replace(root, "@VENV@"))
    if os.path.isdir(path):
        return ("dir", mode, "")
    with open(path, "rb") as f:
        data = f.read()
    if path.endswith(".dist-info/RECORD"):
        data = normalized_record(data, path, root)
    data = data.replace(venv_bytes, b"@VENV@")
    return ("file", mode, hashlib.sha256(data).hexdigest(), data[:200])


def walk(root):
    """{relative path: entry} of every path below root (into mounts)."""
    root = os.path.abspath(root)
    venv_bytes = root.encode()
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            out[os.path.relpath(full, root)] = entry(full, root, venv_bytes)
    return out


def show(e):
    if e is None:
        return "absent"
    if e[0] == "file":
        return "file %o %s %r" % (e[1], e[2][:12], e[3][:120])
    if e[0] == "link":
        return "symlink -> %s" % e[2]
    return "dir %o" % e[1]


def same(a, b):
    return a is not None and b is not None and a[:3] == b[:3]


def tree(pip_root, ours_root):
    a, b = walk(pip_root), walk(ours_root)
    counts = {key: 0 for key in EXPECTED}
    unexpected = 0
    for rel in sorted(set(a) | set(b)):
        x, y = a.get(rel), b.get(rel)
        if same(x, y):
            continue
        reason = expected_reason(rel, x, y)
        if reason:
            counts[reason] += 1
            continue
        unexpected += 1
        print("DIFF %s\n    pip:    %s\n    sitefs: %s" % (rel, show(x), show(y)))
    print("compared %d paths (pip) and %d paths (sitefs)" % (len(a), len(b)))
    for key, n in counts.items():
        if n:
            print("expected: %6d x %s" % (n, EXPECTED[key]))
    print("unexpected differences: %d" % unexpected)
    return 1 if unexpected else 0


def expected_lines(lines, installer, counts):
    """`lines` with the expected differences of one side normalized."""
    out = []
    for line in lines:
        if installer == "pip" and RECORD_OUTSIDE_PYC.search(line):
            counts["script-pyc"] += 1
            continue
        if line.strip() == "Installer: " + installer:
            counts["installer-line"] += 1
            line = line.replace(installer, "(installer)")
        out.append(line)
    return out


def text(pip_file, ours_file):
    """Two outputs of one command (pip list, pip show -f, meta), each
    venv's path already replaced: a unified diff of what differs beyond
    EXPECTED."""
    counts = {key: 0 for key in EXPECTED}
    with open(pip_file) as f:
        pip = expected_lines(f.read().splitlines(), "pip", counts)
    with open(ours_file) as f:
        ours = expected_lines(f.read().splitlines(), "sitefs", counts)
    diff = list(difflib.unified_diff(pip, ours, "pip", "sitefs", lineterm="", n=1))
    for line in diff:
        print(line)
    seen = ", ".join("%s %d" % (k, n) for k, n in counts.items() if n)
    print("%d lines, %d differ; expected: %s" % (len(pip), len(diff), seen or "none"))
    return 1 if diff else 0


def file_check(dist, f):
    """"ok" when a RECORD row's hash and size match the file really
    there (scripts embed the venv path, so only this compares across
    venvs), else what is wrong."""
    if f.hash is None:
        return "unhashed"
    try:
        data = f.locate().read_bytes()
    except OSError as e:
        return "MISSING %s" % e.strerror
    if "%s=%s" % (f.hash.mode, f.hash.value) != record_hash(data) or f.size != len(data):
        return "WRONG %s %s" % (f.hash.value, f.size)
    return "ok"


def meta():
    """importlib.metadata of this interpreter's site-packages: every dist
    with its version, metadata headers, requires, entry points, files
    (checked against the disk), REQUESTED and direct_url.json, then the
    import names each dist provides."""
    import importlib.metadata as md
    import sysconfig

    site = sysconfig.get_paths()["purelib"]
    dists = sorted(md.distributions(path=[site]), key=lambda d: d.metadata["Name"])
    for d in dists:
        print("== %s %s" % (d.metadata["Name"], d.version))
        for key, value in d.metadata.items():
            print("  meta %s: %s" % (key, value.replace("\n", "\\n")[:200]))
        for r in d.requires or []:
            print("  requires %s" % r)
        for e in sorted(d.entry_points, key=lambda e: (e.group, e.name)):
            print("  entry_point [%s] %s = %s" % (e.group, e.name, e.value))
        for f in sorted(d.files or [], key=str):
            if str(f).endswith(".dist-info/INSTALLER"):
                print("  file %s (installer)" % f)
            else:
                print("  file %s %s" % (f, file_check(d, f)))
        print("  requested %r" % d.read_text("REQUESTED"))
        print("  direct_url %r" % d.read_text("direct_url.json"))
    for name, owners in sorted(md.packages_distributions().items()):
        print("import %s from %s" % (name, sorted(owners)))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["tree"] and len(sys.argv) == 4:
        sys.exit(tree(sys.argv[2], sys.argv[3]))
    if sys.argv[1:2] == ["text"] and len(sys.argv) == 4:
        sys.exit(text(sys.argv[2], sys.argv[3]))
    if sys.argv[1:] == ["meta"]:
        sys.exit(meta())
    sys.exit("usage: difftree.py tree PIP OURS | text PIP OURS | meta")
