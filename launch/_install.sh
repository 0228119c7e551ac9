# Sourced by quickstart.sh and test.sh: creates the virtualenv $venv (default .venv; JAXCNN_VENV overrides)
# and installs jaxcnn with EXTRAS into it.
# JAXCNN_PYTHON picks the interpreter: a command or path (python3.12, /usr/bin/python3), or a version
# (3.12), looked up as python3.12 on PATH and then in pyenv's versions. Default: python3 (Python >= 3.11).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

find_python() {  # $1: a command, a path or a version like 3.12 -> the interpreter's path on stdout
  local want="$1" candidate
  if [[ ! "$want" =~ ^3\.[0-9]+$ ]]; then
    command -v "$want" || { echo "JAXCNN_PYTHON=$want: no such interpreter" >&2; return 1; }
    return
  fi
  for candidate in "$(command -v "python$want" || true)" \
      $(ls -d "$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")/versions/$want".*/bin/python 2>/dev/null | sort -V -r); do
    if [ -n "$candidate" ] && "$candidate" -c 'import venv' 2>/dev/null; then
      echo "$candidate"
      return
    fi
  done
  echo "JAXCNN_PYTHON=$want: found neither python$want on PATH nor a pyenv version $want.* (pyenv install $want)" >&2
  return 1
}

python="$(find_python "${JAXCNN_PYTHON:-python3}")"
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "jaxcnn needs Python >= 3.11; $python is $("$python" --version 2>&1). Set JAXCNN_PYTHON." >&2
  exit 1
fi
venv="${JAXCNN_VENV:-.venv}"
want_version="$("$python" -c 'import sys; print(*sys.version_info[:2], sep=".")')"
if [ -x "$venv/bin/python" ] && [ "$("$venv/bin/python" -c 'import sys; print(*sys.version_info[:2], sep=".")')" != "$want_version" ]; then
  echo "$venv is Python $("$venv/bin/python" --version 2>&1 | cut -d' ' -f2), not $want_version ($python):" \
       "delete $venv or set JAXCNN_VENV to another directory" >&2
  exit 1
fi
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv" || { echo "python venv failed: on Debian, apt-get install python3-venv" >&2; exit 1; }
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet -e ".${EXTRAS:+[$EXTRAS]}"
