#!/usr/bin/env bash
# The main job: build every lab component this machine can, sign lab media, boot the lab
# and install it from the media with install.sh, as a site's installer would; print where
# the admin service is. Called by `make demo` after setup; runs as root (the lab needs it).
# A second run of the same build reuses the media and the lab: the install changes nothing.
set -euo pipefail
venv=$1
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
cache=${APPLIANCE_CACHE:-$HOME/.cache/appliance}
demo="$cache/demo"
appliance="$venv/bin/appliance"
start=$SECONDS
step() { printf '\n\033[1m== %s\033[0m (%d s)\n' "$*" $((SECONDS - start)); }

step "build the lab components (cached on their inputs)"
"$appliance" components supplied
if ! "$appliance" components build --definition bundles/lab.yaml; then
  echo "some components could not be built (above); the media hold those that were"
fi

version=$("$venv/bin/python" -c 'from pathlib import Path; from appliance.definition import load_definition as l; print(l(Path("bundles/lab.yaml")).version)')
# The build: the components and the installer content (roles, playbooks) the media carry,
# so a changed role makes new media rather than reusing media without it.
build=$("$venv/bin/python" - <<'EOF'
import hashlib
from pathlib import Path

from appliance.definition import load_definition

definition = load_definition(Path("bundles/lab.yaml"))
digest = hashlib.sha256(Path("build/components/components.lock.json").read_bytes())
for folder in definition.installer.content:
    root = definition.resolve(folder, what="installer content")
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(f"{folder}/{path.relative_to(root).as_posix()}\0".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
print(digest.hexdigest()[:12])
EOF
)
media="$demo/media-$version-$build"
step "sign the lab media $version (build $build)"
if [[ -d $media ]]; then
  echo "reusing $media (signed by an earlier run of this build)"
else
  "$appliance" lab media --out "$media" --keys "$demo/keys"
  find "$demo" -maxdepth 1 -name 'media-*' ! -path "$media" -exec rm -rf {} +  # older builds
  # A different build under the same version would be refused as a replay by a lab that
  # runs the earlier one: a new build starts from a fresh lab.
  if [[ -d $demo/installer/site ]]; then
    echo "a new build: the lab and the installer's record start again"
    "$appliance" lab down
    rm -rf "$demo/installer"
  fi
fi
fingerprint="sha256:$(sha256sum "$demo/keys/root.json" | cut -d' ' -f1)"

step "boot the lab (ctrl1, gw1, gpu1)"
# A lab that is not well (a machine gone, or made by a release with another address plan)
# cannot be installed on: it and the installer's record of it start again.
if [[ -e $cache/lab/default/lab.json ]] && ! "$appliance" lab status >/dev/null 2>&1; then
  echo "the lab is not well (appliance lab status says why): it starts again"
  "$appliance" lab down
  rm -rf "$demo/installer"
fi
"$appliance" lab up

step "install the site from the media: sh $media/install.sh"
export APPLIANCE_INSTALLER_HOME="$demo/installer"
sh "$media/install.sh" install --inventory "$cache/lab/default/inventory.yml" \
  --root-fingerprint "$fingerprint"

step "done"
echo "media:      $media (root $fingerprint)"
echo "lab:        appliance lab status | appliance lab down   (the lab named default;"
echo "            make test brings up its own labs beside it and leaves this one alone)"
echo "installer:  $APPLIANCE_INSTALLER_HOME/site (journal, logs, the one-time admin password)"
lab="$cache/lab/default"
ctrl1=$("$venv/bin/python" -c 'import json, sys; print(json.load(open(sys.argv[1]))["machines"]["ctrl1"]["address"])' "$lab/lab.json")
echo "admin:      https://127.0.0.1:8443/ on ctrl1 ($ctrl1), loopback only; from here:"
echo "            ssh -i $lab/id_ecdsa -o UserKnownHostsFile=$lab/known_hosts -L 8443:127.0.0.1:8443 root@$ctrl1"

# The overlay's client, as a newcomer makes one: the admin service creates it, grants it
# the model and makes its key; it is enrolled here. No second install: the gateway host's
# access proxy learns the key from the admin service within seconds, and the check's chat
# waits that long. Without supplied OpenZiti programs this says in one line what to supply.
step "a client of the overlay (from this workstation, outside every host)"
"$appliance" lab client demo-client --out "$demo/client" --check

# The site's versions and health, any time: the README's `appliance status`, with the
# demo's inventory and its installer's record (not the default /var/lib/appliance/site).
echo
echo "status:     appliance status --inventory $cache/lab/default/inventory.yml --site-dir $APPLIANCE_INSTALLER_HOME/site"
