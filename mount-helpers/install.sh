#!/bin/bash
# Install sitefs so that mount(8), fstab, systemd and autofs can mount
# sitefs manifests (`mount -t fuse.sitefs MANIFEST MOUNTPOINT -o ro,allow_other`).
#
#   mount-helpers/install.sh [--systemd] [--autofs] [PREFIX]     install (PREFIX defaults to /usr/local)
#   mount-helpers/install.sh --uninstall [--systemd] [--autofs] [PREFIX]
#
# Installs:
#   PREFIX/bin/sitefs          the release binary (target/release/sitefs, built
#                              with `cargo build --release` if missing; set
#                              SITEFS_BIN to install another binary)
#   --systemd: /etc/systemd/system/{srv-app-site.mount,srv-app-site.automount,sitefs@.service}
#              (examples: copy and rename them for your mount points; nothing
#              is enabled or started)
#   --autofs:  /etc/auto.sitefs (program map) and /etc/auto.master.d/sitefs.autofs
#              (not started; run `systemctl reload autofs` yourself)
#
# No mount.fuse.sitefs helper is needed: mount(8) passes every fuse.TYPE
# mount to mount.fuse3 (package fuse3), which runs `TYPE SOURCE MOUNTPOINT -o
# OPTS` through /bin/sh with the default PATH. PREFIX/bin must therefore be on
# that PATH (/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin);
# the script warns otherwise.
#
# Idempotent: files already identical are left alone; reinstalling replaces
# changed files atomically. --uninstall removes only files that this script
# would install and that are still identical to what it would install (a
# unit you edited is kept, with a warning).
#
# DESTDIR=/some/root prefixes every destination (for packaging and tests).
set -euo pipefail

usage() {
    sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)

uninstall=0 systemd=0 autofs=0 prefix=
for arg in "$@"; do
    case $arg in
    --uninstall) uninstall=1 ;;
    --systemd) systemd=1 ;;
    --autofs) autofs=1 ;;
    -h | --help) usage ;;
    -*) echo "install.sh: unknown option $arg" >&2; usage ;;
    *)
        [[ -z $prefix ]] || { echo "install.sh: more than one PREFIX" >&2; usage; }
        prefix=$arg
        ;;
    esac
done
prefix=${prefix:-/usr/local}
case $prefix in
/*) ;;
*) echo "install.sh: PREFIX must be an absolute path, got $prefix" >&2; exit 2 ;;
esac
prefix=${prefix%/}
destdir=${DESTDIR:-}
destdir=${destdir%/}

bin_dest=$prefix/bin/sitefs
units=(srv-app-site.mount srv-app-site.automount sitefs@.service)
unit_dir=/etc/systemd/system

# The content a unit is installed with: the examples name
# /usr/local/bin/sitefs; another PREFIX is substituted.
unit_content() {
    sed "s#/usr/local/bin/sitefs#$bin_dest#g" "$here/systemd/$1"
}

# install_file MODE DEST < content: write atomically unless identical.
install_file() {
    local mode=$1 dest=$destdir$2 tmp
    mkdir -p "$(dirname "$dest")"
    tmp=$(mktemp "$(dirname "$dest")/.sitefs-install.XXXXXX")
    cat >"$tmp"
    chmod "$mode" "$tmp"
    if [[ -f $dest && ! -L $dest ]] && cmp -s "$tmp" "$dest" &&
        [[ $(stat -c %a "$dest") == "${mode#0}" ]]; then
        rm -f "$tmp"
        echo "unchanged $dest"
    else
        mv -f "$tmp" "$dest"
        echo "installed $dest"
    fi
}

# remove_file DEST < expected content: remove if identical.
remove_file() {
    local dest=$destdir$1
    if [[ ! -e $dest && ! -L $dest ]]; then
        cat >/dev/null
        return
    fi
    if cmp -s - "$dest"; then
        rm -f "$dest"
        echo "removed $dest"
    else
        echo "kept $dest: it differs from what install.sh installs (remove it yourself)" >&2
    fi
}

find_binary() {
    if [[ -n ${SITEFS_BIN:-} ]]; then
        [[ -x $SITEFS_BIN ]] || { echo "install.sh: SITEFS_BIN=$SITEFS_BIN is not executable" >&2; exit 1; }
        echo "$SITEFS_BIN"
        return
    fi
    local target=${CARGO_TARGET_DIR:-$repo/target}
    case $target in /*) ;; *) target=$repo/$target ;; esac
    if [[ ! -x $target/release/sitefs ]]; then
        echo "building $target/release/sitefs (cargo build --release)" >&2
        (cd "$repo" && cargo build --release --bin sitefs) >&2
    fi
    echo "$target/release/sitefs"
}

if ((uninstall)); then
    if [[ -e $destdir$bin_dest || -L $destdir$bin_dest ]]; then
        rm -f "$destdir$bin_dest"
        echo "removed $destdir$bin_dest"
    fi
    if ((systemd)); then
        for u in "${units[@]}"; do
            if [[ -e $destdir$unit_dir/$u ]] && command -v systemctl >/dev/null &&
                [[ -z $destdir ]] && systemctl is-enabled --quiet "$u" 2>/dev/null; then
                echo "warning: $u is enabled; run \`systemctl disable --now $u\`" >&2
            fi
            unit_content "$u" | remove_file "$unit_dir/$u"
        done
    fi
    if ((autofs)); then
        remove_file /etc/auto.sitefs <"$here/auto.sitefs"
        remove_file /etc/auto.master.d/sitefs.autofs <"$here/auto.master.d/sitefs.autofs"
    fi
    exit 0
fi

bin_src=$(find_binary)
install_file 0755 "$bin_dest" <"$bin_src"

if ((systemd)); then
    for u in "${units[@]}"; do
        unit_content "$u" | install_file 0644 "$unit_dir/$u"
    done
    if [[ -z $destdir ]] && [[ -d /run/systemd/system ]]; then
        systemctl daemon-reload
    fi
fi

if ((autofs)); then
    install_file 0755 /etc/auto.sitefs <"$here/auto.sitefs"
    install_file 0644 /etc/auto.master.d/sitefs.autofs <"$here/auto.master.d/sitefs.autofs"
fi

# mount.fuse3 finds the binary through /bin/sh's default PATH.
case $prefix/bin in
/usr/local/sbin | /usr/local/bin | /usr/sbin | /usr/bin | /sbin | /bin) ;;
*)
    echo "note: $prefix/bin is not on mount.fuse3's PATH; \`mount -t fuse.sitefs\`, fstab," \
        "systemd .mount units and autofs will not find sitefs there (use PREFIX=/usr/local or /usr)" >&2
    ;;
esac
