#!/usr/bin/env bash
# The main job, as far as the project reaches today: build every component of the lab
# bundle and summarise what was built and where. Called by `make demo` after setup.
set -uo pipefail
venv=$1
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

start=$SECONDS
"$venv/bin/appliance" components build --definition bundles/lab.yaml
status=$?
echo
echo "== make demo: $((SECONDS - start)) s"
echo "images and lock file: $repo/build/components/"
ls -l build/components/ 2>/dev/null | sed 's/^/  /'
echo "model: $repo/build/models/tiny/"
exit $status
