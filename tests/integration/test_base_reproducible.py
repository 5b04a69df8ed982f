"""Issue 16: the Debian base root filesystem made twice from the same mirror (two
debootstrap runs, as on two days with a cleared cache) is the same bytes, and the base
image made from it the same image ID. With the Python images' own reproducibility
(test_admin_image.py) the whole chain rebuilds to the same digests."""

from __future__ import annotations

import subprocess
from pathlib import Path

from appliance.components import podman, rootfs
from appliance.components.program import sha256_file
from appliance.definition import load_definition

REPO = Path(__file__).resolve().parents[2]


def test_two_debootstrap_runs_make_the_same_base(tmp_path: Path) -> None:
    base = load_definition(REPO / "bundles/lab.yaml").base
    assert base is not None
    mirror = rootfs.debian_mirror(base.suite)
    tarballs = [tmp_path / f"run{n}/rootfs.tar" for n in (1, 2)]
    for tarball in tarballs:
        rootfs._debootstrap(base, mirror, tarball, None)
    assert sha256_file(tarballs[0]) == sha256_file(tarballs[1])
    tags = [f"localhost/appliance-test/base:run{n}" for n in (1, 2)]
    try:
        ids = [
            podman.image_from_rootfs(tarball, tag, {"LANG": "C.UTF-8"})
            for tarball, tag in zip(tarballs, tags, strict=True)
        ]
        assert ids[0] == ids[1]
    finally:
        subprocess.run(["podman", "rmi", "--ignore", *tags], capture_output=True, check=False)
