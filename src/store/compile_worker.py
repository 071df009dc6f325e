import sys
if sys.path and sys.path[0] in ("", "."):
    del sys.path[0]
import os
import marshal
import warnings
from importlib.util import MAGIC_NUMBER, source_hash
try:
    from importlib._bootstrap_external import _code_to_hash_pyc
except ImportError:
    _code_to_hash_pyc = None

warnings.simplefilter("ignore")


def to_pyc(code, data):
    if _code_to_hash_pyc is not None:
        return _code_to_hash_pyc(code, source_hash(data), False)
    return (MAGIC_NUMBER + b"\x01\x00\x00\x00" + source_hash(data)
            + marshal.dumps(code))


def create(tmp, dst):
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)
    try:
        return os.open(tmp, flags, 0o444)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(dst) or b".", exist_ok=True)
        return os.open(tmp, flags, 0o444)
    except PermissionError:
        os.unlink(tmp)
        return os.open(tmp, flags, 0o444)


def write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write_atomic(dst, pyc, suffix):
    tmp = dst + suffix
    fd = create(tmp, dst)
    try:
        try:
            write_all(fd, pyc)
        finally:
            os.close(fd)
        os.replace(tmp, dst)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def one_line(exc):
    text = "%s: %s" % (type(exc).__name__, exc)
    if isinstance(exc, SyntaxError) and exc.filename:
        text = "%s: %s (%s, line %s)" % (
            type(exc).__name__, exc.msg, exc.filename, exc.lineno)
    text = " ".join(text.split())
    return text.encode("utf-8", "replace")[:500]


def run(line, suffix):
    src, dfile, dst = line.split(b"\0")
    try:
        with open(src, "rb", buffering=0) as f:
            data = f.readall()
    except OSError as exc:
        return b"io " + one_line(exc)
    try:
        code = compile(data, dfile.decode("utf-8", "surrogateescape"), "exec",
                       dont_inherit=True, optimize=0)
        pyc = to_pyc(code, data)
    except Exception as exc:
        return b"err " + one_line(exc)
    try:
        write_atomic(dst, pyc, suffix)
    except OSError as exc:
        return b"io " + one_line(exc)
    return b"ok"


def main():
    rd, wr = sys.stdin.buffer, sys.stdout.buffer
    suffix = b".tmp.%d" % os.getpid()
    tag = sys.implementation.cache_tag or "none"
    wr.write(b"ready %s %s\n" % (MAGIC_NUMBER.hex().encode(), tag.encode()))
    wr.flush()
    while True:
        header = rd.readline()
        if not header:
            return
        lines = [rd.readline().rstrip(b"\n") for _ in range(int(header))]
        for line in lines:
            wr.write(run(line, suffix) + b"\n")
            wr.flush()


main()
