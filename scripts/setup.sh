#!/usr/bin/env bash
# Install what this machine is missing to build and test the appliance. Idempotent: a
# second run checks and returns in seconds. Heavy outputs live in $APPLIANCE_CACHE.
#   scripts/setup.sh               set up (Debian packages, container config, virtualenv)
#   scripts/setup.sh --print-venv  print the virtualenv path this checkout uses
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${APPLIANCE_CACHE:-$HOME/.cache/appliance}
python=${PYTHON:-python3}

# Debian packages the build and the tests run (podman for images, debootstrap for the base
# root filesystem, skopeo and docker-registry for image sources, PostgreSQL for the admin
# service's database tests: the tests start private clusters, never the system one;
# systemd-container, openssh-client and iproute2 for the multi-host lab; npm, when no npm
# command is on the machine (Node.js may come from elsewhere with its own), fetches the
# auditors' recording player, pinned in appliance/web_assets.py); gcc and libc6-dev build
# the soak test's clock shim (tests/lab/clockstep.c).
packages=(podman runc skopeo debootstrap uidmap slirp4netns containernetworking-plugins
          fuse-overlayfs tar docker-registry postgresql chromium
          systemd-container openssh-client iproute2 nftables gcc libc6-dev)

venv_key() {
  { cat "$repo/pyproject.toml"; "$python" -c 'import sys; print(sys.version)'; } \
    | sha256sum | cut -c1-16
}
venv="$cache/venv/$(venv_key)"

if [[ ${1:-} == --print-venv ]]; then
  echo "$venv"
  exit 0
fi

say() { printf '\033[1msetup:\033[0m %s\n' "$*"; }
die() { printf '\033[1;31msetup:\033[0m %s\n' "$*" >&2; exit 1; }

# 1. Debian packages.
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' \
    || missing+=("$pkg")
done
command -v npm >/dev/null || missing+=(npm)
if ((${#missing[@]})); then
  [[ $(id -u) == 0 ]] || die "missing Debian packages (${missing[*]}); run make as root or install them"
  say "installing Debian packages: ${missing[*]}"
  apt-get update -qq || die "apt-get update failed: check this machine's package sources"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    >/dev/null || die "apt-get could not install: ${missing[*]}"
  # Packaged servers start themselves; tests start their own on loopback.
  systemctl disable --now docker-registry postgresql >/dev/null 2>&1 || true
  pkill -x docker-registry 2>/dev/null || true
fi

# 2. Podman on these machines: runc (crun fails on their hybrid cgroups) and no default
# ulimits (the sandbox refuses raising them). Only written when nobody configured podman.
conf=/etc/containers/containers.conf
if [[ ! -e $conf ]]; then
  say "writing $conf (runc, no default ulimits)"
  cat >"$conf" <<'CONF'
# Written by the appliance's scripts/setup.sh for build and CI machines.
[containers]
default_ulimits = []

[engine]
runtime = "runc"
CONF
fi

# 3. Go, for the OpenZiti and llm-gateway builds. Debian's Go is too old; say so clearly.
if ! command -v go >/dev/null; then
  die "Go 1.26 or newer is needed to build OpenZiti and llm-gateway; install it and rerun"
fi
go_minor=$(go env GOVERSION | sed -E 's/^go1\.([0-9]+).*/\1/')
((go_minor >= 26)) || die "Go 1.26 or newer is needed, found $(go env GOVERSION)"

# 4. The project's virtualenv, keyed on pyproject.toml and the Python version. Console
# scripts hard-code the venv path, so it is made in place and marked complete last.
if [[ ! -e $venv/.complete ]]; then
  say "creating the virtualenv $venv"
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -e "$repo[dev,install]" \
    || die "pip could not install the project's dependencies (see above)"
  touch "$venv/.complete"
fi
# An editable install records its source path: point it at this checkout.
if ! "$venv/bin/python" -I -c 'import appliance, sys; sys.exit(0 if appliance.__file__.startswith(sys.argv[1]) else 1)' "$repo/"; then
  "$venv/bin/pip" install -q --disable-pip-version-check --no-deps -e "$repo"
fi
# 5. The auditors' recording player: a third-party build, never in the repository. Fetched
# with npm into the cache and checked against its pins (a second run only checks).
player=$("$venv/bin/appliance" components fetch-player) \
  || die "could not fetch the recording player (see above)"
say "ready (virtualenv $venv; recording player $player)"
