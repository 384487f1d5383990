# Sourced by scripts/demo and scripts/test: make .venv with Python >= 3.11 and install the project
# (with the extras named in $EXTRAS) once per change of pyproject.toml.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "vidgo-stems needs Python 3.11 or newer as \$PYTHON or python3 (found: $("$PYTHON" --version 2>&1 || echo none))" >&2
  exit 2
fi
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# The package is installed in editable_mode=strict: a tree of links (under build/) that type
# checkers follow too, since the folders are installed under another name (worker/ is
# vidgo_stems). A new or removed file needs a new tree, so the file list counts in the stamp.
fingerprint="$( { cat pyproject.toml; find worker tasks emulator -type f -not -path '*/__pycache__/*' | LC_ALL=C sort; } | "$PYTHON" -c 'import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest()[:16])')"
stamp=".venv/.installed-${fingerprint}-${EXTRAS}"
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".[${EXTRAS}]" --config-settings editable_mode=strict
  rm -f .venv/.installed-*
  touch "$stamp"
fi
export PATH="$ROOT/.venv/bin:$PATH"
