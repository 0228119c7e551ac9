#!/usr/bin/env bash
# README command 2: install jaxcnn with its test extra and run the whole test suite (slow tests included).
#   bash launch/test.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=test source launch/_install.sh
exec .venv/bin/python -m pytest "$@"
