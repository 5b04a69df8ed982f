#!/usr/bin/env bash
# The main job: build every lab component this machine can, sign lab media, boot the lab
# and install it from the media with install.sh, as a site's installer would; print where
# the admin service is. Called by `make demo` after setup; runs as root (the lab needs it).
# A second run reuses the media and the lab: the install reruns and changes nothing.
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
if ! "$appliance" components build --definition bundles/lab.yaml; then
  echo "some components could not be built (above); the media hold those that were"
fi

version=$("$venv/bin/python" -c 'from appliance.bundle.definition import load_definition as l; print(l("bundles/lab.yaml").version)')
media="$demo/media-$version"
step "sign the lab media $version"
if [[ -d $media ]]; then
  echo "reusing $media (signed by an earlier run; remove it to sign again)"
else
  "$appliance" lab media --out "$media" --keys "$demo/keys"
fi
fingerprint="sha256:$(sha256sum "$demo/keys/root.json" | cut -d' ' -f1)"

step "boot the lab (ctrl1, gw1, gpu1)"
"$appliance" lab up

step "install the site from the media: sh $media/install.sh"
export APPLIANCE_INSTALLER_HOME="$demo/installer"
sh "$media/install.sh" install --inventory "$cache/lab/default/inventory.yml" \
  --root-fingerprint "$fingerprint"

step "done"
echo "media:      $media (root $fingerprint)"
echo "lab:        appliance lab status | appliance lab down"
echo "installer:  $APPLIANCE_INSTALLER_HOME/site (journal, logs, the one-time admin password)"
lab="$cache/lab/default"
ctrl1=$("$venv/bin/python" -c 'import json, sys; print(json.load(open(sys.argv[1]))["machines"]["ctrl1"]["address"])' "$lab/lab.json")
echo "admin:      https://127.0.0.1:8443/ on ctrl1 ($ctrl1), loopback only; from here:"
echo "            ssh -i $lab/id_ecdsa -o UserKnownHostsFile=$lab/known_hosts -L 8443:127.0.0.1:8443 root@$ctrl1"
