#!/usr/bin/env bash
# Sets up everything (scripts/setup.sh), then runs the linter, the format check and the whole test suite
# offscreen.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not slow"` or `bash scripts/test.sh tests/core`.
# Exits non-zero when ruff, the import contracts (lint-imports), the type checker (mypy) or pytest fails,
# when pytest collects no test, or when the suite takes longer than its budget of 20 minutes on the 2-core
# CI machine.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh

printf '\n== ruff check . && ruff format --check .\n'
ruff_status=0
.venv/bin/ruff check . || ruff_status=$?
.venv/bin/ruff format --check . || ruff_status=$?

# Both read their settings from pyproject.toml: the contracts in [tool.importlinter], the files in [tool.mypy].
printf '\n== lint-imports && mypy\n'
checks_status=0
.venv/bin/lint-imports || checks_status=$?
.venv/bin/mypy || checks_status=$?

printf '\n== pytest\n'
budget_s=1200
start=$SECONDS
pytest_status=0
QT_QPA_PLATFORM=offscreen .venv/bin/python -m pytest --durations=10 "$@" || pytest_status=$?
elapsed=$((SECONDS - start))

if [ "$pytest_status" -eq 5 ]; then
    echo "test.sh: pytest collected no tests; that is a failure, not a pass" >&2
    pytest_status=1
fi
if [ "$elapsed" -gt "$budget_s" ] && [ "$#" -eq 0 ]; then
    echo "test.sh: the suite took ${elapsed} s, over its budget of ${budget_s} s (see the slowest tests above)" >&2
    pytest_status=1
fi
[ "$ruff_status" -eq 0 ] || echo "test.sh: ruff check or ruff format --check failed" >&2
[ "$checks_status" -eq 0 ] || echo "test.sh: an import contract (lint-imports) or a type check (mypy) failed" >&2

if [ "$ruff_status" -ne 0 ]; then exit "$ruff_status"; fi
if [ "$checks_status" -ne 0 ]; then exit "$checks_status"; fi
exit "$pytest_status"
