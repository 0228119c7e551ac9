#!/usr/bin/env bash
# README command 2: install jaxcnn with its test extra and run the whole test suite (slow tests included),
# on JAXCNN_TEST_WORKERS pytest-xdist workers (default 2, one per core of the CI machine).
#   bash launch/test.sh [pytest arguments]
#   JAXCNN_PYTHON=3.12 JAXCNN_VENV=.venv-py312 bash launch/test.sh -m "not slow"   (another Python, the fast tier)
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=test source launch/_install.sh
exec "$venv/bin/python" -m pytest -n "${JAXCNN_TEST_WORKERS:-2}" "$@"
