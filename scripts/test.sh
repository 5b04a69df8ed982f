#!/usr/bin/env bash
# Lint, type-check and run the test tiers. Called by `make test` (and `.ci/run`) after setup.
#   scripts/test.sh VENV [--lint-only] [pytest args…]
set -euo pipefail
venv=$1; shift
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

"$venv/bin/ruff" check appliance tests benchmarks installer
"$venv/bin/ruff" format --check appliance tests benchmarks installer
"$venv/bin/mypy"
[[ ${1:-} == --lint-only ]] && exit 0

"$venv/bin/appliance" components supplied  # one line: are the overlay tests going to run?
set +e
"$venv/bin/pytest" "$@"
status=$?
set -e
if ((status == 5)); then
  echo "pytest collected no tests: that is a failure, not a pass" >&2
  exit 1
fi
exit $status
