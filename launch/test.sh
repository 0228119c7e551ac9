#!/usr/bin/env bash
# README command 2: install jaxcnn with its test extra and run the whole test suite (slow tests included),
# on JAXCNN_TEST_WORKERS pytest-xdist workers (default 2, one per core of the CI machine).
#   bash launch/test.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=test source launch/_install.sh
exec .venv/bin/python -m pytest -n "${JAXCNN_TEST_WORKERS:-2}" "$@"
