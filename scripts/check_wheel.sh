#!/usr/bin/env bash
# Packaging a user can rely on: `python -m build` makes an sdist and a wheel without warnings, the wheel
# installs into a clean virtual environment (CPU torch first: a bare `torch` requirement pulls a CUDA
# build), and `beamattn --help` runs there. Used by CI (.ci/run).
#   bash scripts/check_wheel.sh [PYTHON]      (PYTHON: the interpreter with `build`, default .venv/bin/python)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-.venv/bin/python}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/beamattn-wheel.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
start=$(date +%s)

echo "== python -m build (sdist + wheel) into $WORK/dist"
# PYTHONDONTWRITEBYTECODE (set in some CI shells) only makes setuptools warn that it skips byte-compiling.
env -u PYTHONDONTWRITEBYTECODE "$PY" -m build --outdir "$WORK/dist" . > "$WORK/build.log" 2>&1 \
    || { cat "$WORK/build.log"; exit 1; }
# setuptools reports deprecations and misconfigurations as warnings: any is a failure.
if grep -iE "warning|deprecat" "$WORK/build.log"; then
    echo "check_wheel: python -m build printed the warnings above; expected none" >&2
    exit 1
fi
sdist=$(ls "$WORK"/dist/beamattn-*.tar.gz)
wheel=$(ls "$WORK"/dist/beamattn-*-py3-none-any.whl)
echo "built $(basename "$sdist") and $(basename "$wheel")"

# The sdist must carry what a build from it needs, and the wheel only the package (no tests, scripts, docs).
listing=$(tar -tzf "$sdist")  # (not piped into grep -q: with pipefail, tar's SIGPIPE would fail the check)
for f in pyproject.toml README.md beamattn/cli.py; do
    grep -qx "beamattn-[^/]*/$f" <<< "$listing" || { echo "check_wheel: the sdist lacks $f" >&2; exit 1; }
done
"$PY" - "$wheel" <<'PYEOF'
import sys
import zipfile

names = zipfile.ZipFile(sys.argv[1]).namelist()
top = sorted({n.split("/")[0] for n in names})
bad = [t for t in top if not (t == "beamattn" or t.endswith(".dist-info"))]
if bad:
    raise SystemExit(f"check_wheel: the wheel holds {bad} beside the package; expected only beamattn/")
for module in ("beamattn/cli.py", "beamattn/core/attend.py", "beamattn/wireless/scenario.py",
               "beamattn/linklevel/chain.py", "beamattn/keras/selector.py"):
    if module not in names:
        raise SystemExit(f"check_wheel: the wheel lacks {module}")
print(f"wheel: {len(names)} files, top level {top}")
PYEOF

echo "== clean venv: CPU torch first, then the wheel"
"$PY" -m venv "$WORK/venv"
"$WORK/venv/bin/python" -m pip install -q --upgrade pip
"$WORK/venv/bin/python" -m pip install -q torch==2.13.0
"$WORK/venv/bin/python" -m pip install -q "$wheel"
cd "$WORK"  # away from the source tree: the installed wheel must be what runs
"$WORK/venv/bin/beamattn" --help > "$WORK/help.txt"
grep -q "usage: beamattn" "$WORK/help.txt"
"$WORK/venv/bin/beamattn" --version
"$WORK/venv/bin/python" -c "import beamattn, beamattn.core, beamattn.wireless.scenario; print('imported', beamattn.__file__)" \
    | grep -q "$WORK/venv/"
echo "== check_wheel: sdist and wheel built without warnings, wheel installed and ran ($(( $(date +%s) - start )) s)"
