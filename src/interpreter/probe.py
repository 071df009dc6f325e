import sys
if sys.path and sys.path[0] in ("", "."):
    del sys.path[0]
HEADER = "SITEFS-PROBE-1"
if sys.version_info < (3, 8):
    sys.stdout.write("%s\0version=%d.%d\0full_version=%d.%d.%d\0" % (
        (HEADER,) + tuple(sys.version_info[:2]) + tuple(sys.version_info[:3])))
    sys.stdout.flush()
    sys.exit(0)

import os
import platform
import re
import sysconfig
import importlib.util


def fs(value):
    if value is None:
        return b""
    return os.fsencode(str(value))


def nodot(version):
    return "".join(str(v) for v in version)


def norm(s):
    return s.replace(".", "_").replace("-", "_").replace(" ", "_")


def config_var(name):
    try:
        return sysconfig.get_config_var(name)
    except Exception:
        return None


def cpython_abis(ver):
    abis = []
    threading = ""
    debug = ""
    with_debug = config_var("Py_DEBUG")
    if with_debug or (with_debug is None and hasattr(sys, "gettotalrefcount")):
        debug = "d"
    if ver >= (3, 13) and config_var("Py_GIL_DISABLED"):
        threading = "t"
    if debug:
        abis.append("cp%s%s" % (nodot(ver), threading))
    abis.insert(0, "cp%s%s%s" % (nodot(ver), threading, debug))
    return abis


def glibc_version():
    try:
        _, v = os.confstr("CS_GNU_LIBC_VERSION").rsplit()
    except Exception:
        return None
    m = re.match(r"([0-9]+)\.([0-9]+)", v)
    return (int(m.group(1)), int(m.group(2))) if m else None


def musl_version():
    import glob
    import subprocess
    for loader in sorted(glob.glob("/lib/ld-musl-*.so.1")):
        try:
            proc = subprocess.run([loader], stderr=subprocess.PIPE,
                                  stdout=subprocess.DEVNULL)
        except OSError:
            continue
        m = re.search(br"Version ([0-9]+)\.([0-9]+)", proc.stderr)
        if m:
            return (int(m.group(1)), int(m.group(2)))
    return None


LEGACY = {(2, 17): "manylinux2014", (2, 12): "manylinux2010", (2, 5): "manylinux1"}
MANYLINUX_ARCHS = ("x86_64", "i686", "aarch64", "armv7l", "ppc64", "ppc64le",
                   "s390x", "loongarch64", "riscv64")


def manylinux_platforms(archs):
    glibc = glibc_version()
    if glibc is None or not any(a in MANYLINUX_ARCHS for a in archs):
        return []
    oldest = 4 if set(archs) & set(["x86_64", "i686"]) else 16
    out = []
    for arch in archs:
        for minor in range(glibc[1], oldest, -1):
            out.append("manylinux_%d_%d_%s" % (glibc[0], minor, arch))
            if (glibc[0], minor) in LEGACY:
                out.append("%s_%s" % (LEGACY[(glibc[0], minor)], arch))
    return out


def linux_platforms():
    linux = norm(sysconfig.get_platform())
    if not linux.startswith("linux_"):
        return [linux]
    if sys.maxsize <= 2 ** 32:
        linux = {"linux_x86_64": "linux_i686",
                 "linux_aarch64": "linux_armv8l"}.get(linux, linux)
    arch = linux.split("_", 1)[1]
    archs = {"armv8l": ["armv8l", "armv7l"]}.get(arch, [arch])
    out = manylinux_platforms(archs)
    if glibc_version() is None:
        musl = musl_version()
        if musl is not None:
            for a in archs:
                for minor in range(musl[1], -1, -1):
                    out.append("musllinux_%d_%d_%s" % (musl[0], minor, a))
    return out + ["linux_" + a for a in archs]


def py_range(ver):
    out = ["py" + nodot(ver), "py%d" % ver[0]]
    for minor in range(ver[1] - 1, -1, -1):
        out.append("py" + nodot((ver[0], minor)))
    return out


def generic_abis():
    ext = config_var("EXT_SUFFIX") or ""
    parts = ext.split(".")
    if len(parts) < 3:
        return []
    soabi = parts[1]
    if soabi.startswith("cpython"):
        abi = "cp" + soabi.split("-")[1]
    elif soabi.startswith("pypy"):
        abi = "-".join(soabi.split("-")[:2])
    elif soabi.startswith("graalpy"):
        abi = "-".join(soabi.split("-")[:3])
    else:
        abi = soabi
    return [norm(abi)] if abi else []


def fallback_tags():
    ver = tuple(sys.version_info[:2])
    name = sys.implementation.name
    short = {"cpython": "cp", "pypy": "pp", "ironpython": "ip",
             "jython": "jy"}.get(name, name)
    if platform.system() == "Linux":
        plats = linux_platforms()
    else:
        plats = [norm(sysconfig.get_platform())]
    tags = []
    if short == "cp":
        interp = "cp" + nodot(ver)
        abis = cpython_abis(ver)
        abi3 = "t" not in abis[0][len(interp):]
        for abi in abis:
            tags += ["%s-%s-%s" % (interp, abi, p) for p in plats]
        if abi3:
            tags += ["%s-abi3-%s" % (interp, p) for p in plats]
        tags += ["%s-none-%s" % (interp, p) for p in plats]
        if abi3:
            for minor in range(ver[1] - 1, 1, -1):
                tags += ["cp%d%d-abi3-%s" % (ver[0], minor, p) for p in plats]
    else:
        interp = short + str(config_var("py_version_nodot") or nodot(ver))
        for abi in generic_abis() + ["none"]:
            tags += ["%s-%s-%s" % (interp, abi, p) for p in plats]
        interp = "pp3" if short == "pp" else None
    for py in py_range(ver):
        tags += ["%s-none-%s" % (py, p) for p in plats]
    if interp:
        tags.append("%s-none-any" % interp)
    tags += ["%s-none-any" % py for py in py_range(ver)]
    return tags


def wheel_tags(force_fallback):
    if not force_fallback:
        try:
            from packaging.tags import sys_tags
            return "packaging", [str(t) for t in sys_tags()]
        except Exception:
            pass
    return "fallback", fallback_tags()


def full_version(info):
    v = "%d.%d.%d" % (info.major, info.minor, info.micro)
    if info.releaselevel != "final":
        v += info.releaselevel[0] + str(info.serial)
    return v


def markers():
    return {
        "implementation_name": sys.implementation.name,
        "implementation_version": full_version(sys.implementation.version),
        "os_name": os.name,
        "platform_machine": platform.machine(),
        "platform_release": platform.release(),
        "platform_system": platform.system(),
        "platform_version": platform.version(),
        "python_full_version": platform.python_version(),
        "platform_python_implementation": platform.python_implementation(),
        "python_version": ".".join(platform.python_version_tuple()[:2]),
        "sys_platform": sys.platform,
    }


def base_executable():
    base = getattr(sys, "_base_executable", None) or sys.executable
    if sys.prefix != sys.base_prefix and base == sys.executable:
        try:
            with open(os.path.join(sys.prefix, "pyvenv.cfg")) as f:
                for line in f:
                    key, sep, value = line.partition("=")
                    if sep and key.strip() == "home":
                        cand = os.path.join(value.strip(),
                                            os.path.basename(sys.executable))
                        if os.path.exists(cand):
                            base = cand
        except OSError:
            pass
    return base


def main():
    info = sys.version_info
    paths = sysconfig.get_paths()
    source, tags = wheel_tags(len(sys.argv) > 1 and sys.argv[1] == "fallback")
    facts = [
        ("version", "%d.%d" % (info.major, info.minor)),
        ("full_version", platform.python_version()),
        ("executable", sys.executable),
        ("base_executable", base_executable()),
        ("cache_tag", sys.implementation.cache_tag),
        ("implementation", sys.implementation.name),
        ("prefix", sys.prefix),
        ("base_prefix", sys.base_prefix),
        ("abi_flags", getattr(sys, "abiflags", "")),
        ("soabi", config_var("SOABI")),
        ("ext_suffix", config_var("EXT_SUFFIX")),
        ("platform", sysconfig.get_platform()),
        ("magic_number", importlib.util.MAGIC_NUMBER.hex()),
        ("tags_source", source),
    ]
    for key in ("stdlib", "platstdlib", "purelib", "platlib", "include",
                "platinclude", "scripts", "data"):
        facts.append(("path." + key, paths.get(key)))
    for key, value in sorted(markers().items()):
        facts.append(("marker." + key, value))
    facts += [("tag", t) for t in tags]
    out = [HEADER.encode("ascii") + b"\0"]
    for key, value in facts:
        out.append(key.encode("ascii") + b"=" + fs(value) + b"\0")
    sys.stdout.flush()
    sys.stdout.buffer.write(b"".join(out))
    sys.stdout.buffer.flush()


main()
