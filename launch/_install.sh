# Sourced by quickstart.sh and test.sh: creates .venv (Python >= 3.11) and installs jaxcnn with EXTRAS.
# Set JAXCNN_PYTHON to pick the interpreter (default: python3).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
python="${JAXCNN_PYTHON:-python3}"
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "jaxcnn needs Python >= 3.11; $python is $("$python" --version 2>&1). Set JAXCNN_PYTHON." >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv || { echo "python venv failed: on Debian, apt-get install python3-venv" >&2; exit 1; }
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".${EXTRAS:+[$EXTRAS]}"
