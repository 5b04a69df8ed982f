#!/bin/sh
# The installer's bootstrap, run from the media with nothing but python3 (and openssl):
#   sh /media/usb/install.sh [install] --inventory site.yml --root-fingerprint sha256:… [--fips on]
#   sh /media/usb/install.sh upgrade --inventory site.yml        (a newer bundle)
#   sh /media/usb/install.sh rollback|status --inventory site.yml
# Before any code from the media runs, it checks that metadata/root.json is the root the
# vendor's paperwork names (--root-fingerprint, or the root this site already trusts),
# that targets.json carries that root's threshold of targets signatures (openssl), and
# that every wheel it installs has the digest targets.json gives (delta media may leave a
# wheel of a release the site holds to its store, where it is hashed the same). Then it makes a
# virtualenv from those wheels alone (no index) and runs `appliance install` (or upgrade,
# rollback, status) on this media, which verifies everything else before it touches a host.
set -eu

# Python reads these before any check runs: a PYTHONPATH could put code that is not on the
# media (a sitecustomize, or an `appliance` pip then takes as installed) ahead of it.
unset PYTHONPATH PYTHONHOME PYTHONSTARTUP PYTHONUSERBASE
export PYTHONNOUSERSITE=1

media=$(cd "$(dirname "$0")" && pwd)
python=${PYTHON:-python3}
state=${APPLIANCE_INSTALLER_HOME:-/var/lib/appliance}
site_dir="$state/site"

die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }

command -v "$python" >/dev/null 2>&1 || die "python3 is not installed on this workstation: install the OS's python3 (3.11 or newer) and python3-venv"
command -v openssl >/dev/null 2>&1 || die "openssl is not installed on this workstation: install the OS's openssl package"
"$python" -c 'import sys, venv; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
  || die "$python is older than 3.11 or has no venv module: install python3 (3.11+) and python3-venv"

command=install
case "${1:-}" in install|upgrade|rollback|status) command=$1; shift ;; esac

fingerprint=""
prev=""
for arg in "$@"; do
  case "$prev" in --root-fingerprint) fingerprint=$arg ;; esac
  case "$arg" in --root-fingerprint=*) fingerprint=${arg#--root-fingerprint=} ;; esac
  prev=$arg
done

mkdir -p "$state"
chmod 0700 "$state"
work=$(mktemp -d "$state/.bootstrap.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM

"$python" - "$media" "$work" "$fingerprint" "$site_dir" <<'PY'
import hashlib, json, os, shutil, subprocess, sys

media, work, fingerprint, site_dir = sys.argv[1:5]
site_root = os.path.join(site_dir, "root.json")

def fail(message):
    sys.exit(f"install.sh: {message}")

def read(rel):
    try:
        with open(os.path.join(media, rel), "rb") as handle:
            return handle.read()
    except OSError as exc:
        fail(f"cannot read {rel} on {media}: {exc.strerror}: is this the appliance media?")

def canonical(value):
    # TUF's canonical JSON; refuse what it would encode differently from json.dumps.
    def check(v):
        if isinstance(v, float):
            fail("signed metadata holds a float: not canonical JSON")
        if isinstance(v, str) and any(ord(c) < 0x20 for c in v):
            fail("signed metadata holds a control character: not canonical JSON")
        if isinstance(v, dict):
            for k, x in v.items():
                check(k); check(x)
        if isinstance(v, list):
            for x in v:
                check(x)
    check(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

root_bytes = read("metadata/root.json")
found = "sha256:" + hashlib.sha256(root_bytes).hexdigest()
if fingerprint:
    if found != fingerprint:
        fail(f"the media's root is {found}, not the {fingerprint} you were given: this is "
             "not the vendor's media (or the fingerprint was mistyped). Nothing was run.")
elif os.path.exists(site_root):
    with open(site_root, "rb") as handle:
        if handle.read() != root_bytes:
            fail("the media's root differs from the root this site trusts: pass "
                 "--root-fingerprint from the paperwork of the new media")
else:
    fail(f"a first install needs --root-fingerprint sha256:… from the vendor's paperwork "
         f"(this media's root is {found}: compare it, never copy it from the media)")

root = json.loads(root_bytes)["signed"]
role = root["roles"]["targets"]
targets_md = json.loads(read("metadata/targets.json"))
payload = canonical(targets_md["signed"])
good = set()
for signature in targets_md["signatures"]:
    keyid = signature["keyid"]
    key = root["keys"].get(keyid)
    if keyid not in role["keyids"] or keyid in good or key is None:
        continue
    if key.get("scheme") != "ecdsa-sha2-nistp384":
        continue
    paths = {name: os.path.join(work, f"{keyid[:16]}.{name}") for name in ("pem", "sig", "data")}
    with open(paths["pem"], "w") as h: h.write(key["keyval"]["public"])
    with open(paths["sig"], "wb") as h: h.write(bytes.fromhex(signature["sig"]))
    with open(paths["data"], "wb") as h: h.write(payload)
    ok = subprocess.run(["openssl", "dgst", "-sha384", "-verify", paths["pem"], "-signature",
                         paths["sig"], paths["data"]], capture_output=True).returncode == 0
    if ok:
        good.add(keyid)
if len(good) < role["threshold"]:
    fail(f"metadata/targets.json has {len(good)} valid signatures of the root's targets keys; "
         f"{role['threshold']} are needed: the media was altered. Nothing was run.")

wheels = os.path.join(work, "wheels")
os.mkdir(wheels)
count = 0
for logical, target in targets_md["signed"]["targets"].items():
    if not logical.startswith("installer/wheels/") or target.get("custom", {}).get("parts"):
        continue
    name = logical.rsplit("/", 1)[1]
    if "/" in name or not name.endswith(".whl"):
        fail(f"targets.json names an odd wheel {logical!r}")
    expected = target["hashes"]["sha256"]
    source = os.path.join(media, "targets/sha256", expected)
    release = target.get("custom", {}).get("base_release")
    if release and not os.path.lexists(source):
        # Delta media leave out what a base release holds: the site's store has it.
        source = os.path.join(site_dir, "content", "sha256", expected)
        if os.path.islink(source) or not os.path.isfile(source):
            fail(f"{logical} of release {release} is neither on this delta media nor in the "
                 f"site store {os.path.dirname(source)}: this site does not hold {release}; "
                 "ask the vendor for full media. Nothing was run.")
    with open(source, "rb") as handle:
        data = handle.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected:
        fail(f"{logical}: expected sha256 {expected}, found {digest}")
    with open(os.path.join(wheels, name), "wb") as handle:
        handle.write(data)
    count += 1
if not count:
    fail("the media carries no installer wheels")
print(f"install.sh: media root {found}; targets signed; {count} wheels checked")
PY

# A virtualenv cannot be moved (its scripts name their interpreter): make it in place,
# afresh each run, from the checked wheels only.
venv="$state/installer-venv"
rm -rf "$venv"
"$python" -m venv "$venv" || die "could not make a virtualenv with $python (install python3-venv)"
"$venv/bin/pip" install --quiet --disable-pip-version-check --no-index \
  --find-links "$work/wheels" "appliance[install]" \
  || { rm -rf "$venv"; die "installing the installer's wheels failed (see above); nothing was changed on any host"; }
rm -rf "$work"   # exec below ends this shell: its EXIT trap would never run
trap - EXIT INT TERM
case $command in
  install|upgrade) exec "$venv/bin/appliance" "$command" --media "$media" --site-dir "$site_dir" "$@" ;;
  *) exec "$venv/bin/appliance" "$command" --site-dir "$site_dir" "$@" ;;
esac
