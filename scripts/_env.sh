# Shared by scripts/run and scripts/test: make .venv beside the checkout and
# install mailnet into it (again only when pyproject.toml changes).
# Usage: EXTRA=test (or EXTRA=) then . scripts/_env.sh

MAILNET_ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV="$MAILNET_ROOT/.venv"
EXTRA="${EXTRA:-}"

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo "$@"
    else echo "mailnet: need root to run: $*" >&2; return 1
    fi
}

apt_install() {
    missing=""
    for pkg in "$@"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"
    done
    if [ -n "$missing" ]; then
        echo "mailnet: installing Debian packages:$missing" >&2
        export DEBIAN_FRONTEND=noninteractive
        as_root apt-get update -qq
        as_root apt-get install -y -qq --no-install-recommends $missing >/dev/null
    fi
}

python_ok() {
    "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null
}

PYTHON=${PYTHON:-python3}
if ! python_ok "$PYTHON"; then
    echo "mailnet: needs Python 3.11 or newer ($PYTHON is older or missing)" >&2
    exit 1
fi

if [ ! -x "$VENV/bin/python" ]; then
    if ! "$PYTHON" -m venv "$VENV" >/dev/null 2>&1; then
        rm -rf "$VENV"
        # Debian splits venv/ensurepip into python3-venv.
        apt_install python3-venv
        "$PYTHON" -m venv "$VENV"
    fi
fi

stamp="$VENV/.installed-$EXTRA"
want=$(cat "$MAILNET_ROOT/pyproject.toml" | cksum)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "mailnet: installing into $VENV (first run or pyproject.toml changed)" >&2
    "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
    spec="$MAILNET_ROOT"
    [ -n "$EXTRA" ] && spec="$MAILNET_ROOT[$EXTRA]"
    # compat mode: a path entry, so twistd finds twisted/plugins/mailnet_plugin.py
    if ! "$VENV/bin/python" -m pip install -q -e "$spec" --config-settings editable_mode=compat >"$VENV/install.log" 2>&1; then
        cat "$VENV/install.log" >&2
        echo "mailnet: installing failed (log above, also in $VENV/install.log)" >&2
        exit 1
    fi
    echo "$want" > "$stamp"
fi
