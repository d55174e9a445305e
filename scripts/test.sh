#!/usr/bin/env bash
# The test command: set up a fresh machine, then run the whole suite with every
# root/kernel-feature test required to run (no silent skips).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=$PWD/.venv/bin/python  # made by scripts/setup.sh
# run from outside the checkout so the installed package (with its compiled
# core) is what gets tested, not the source tree
NSPRIM_TESTS_MUST_RUN=1 "$PY" -m pytest -q -p no:cacheprovider --rootdir=. tests "$@"
