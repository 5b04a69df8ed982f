"""Small, real inputs for bundle tests: OCI archives, a model folder, keys, a built bundle."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from appliance.bundle.builder import BuildResult, build_bundle
from appliance.bundle.delta import load_base
from appliance.bundle.signing import KeysInit, init_keys
from appliance.definition import Definition, load_definition

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def _tar_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def oci_archive(path: Path, layers: list[bytes], label: str) -> str:
    """Write an OCI archive with ``layers`` (each a tar) and return its manifest digest."""
    blobs: dict[str, bytes] = {}

    def add(data: bytes) -> dict[str, object]:
        digest = hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return {"digest": f"sha256:{digest}", "size": len(data)}

    layer_refs = [
        {"mediaType": "application/vnd.oci.image.layer.v1.tar", **add(layer)} for layer in layers
    ]
    config = add(
        json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "config": {"Labels": {"title": label}},
                "rootfs": {"type": "layers", "diff_ids": []},
            }
        ).encode()
    )
    manifest = add(
        json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
                "layers": layer_refs,
            }
        ).encode()
    )
    index = {
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", **manifest}],
    }
    files = {f"blobs/sha256/{d}": data for d, data in blobs.items()}
    files["index.json"] = json.dumps(index).encode()
    files["oci-layout"] = b'{"imageLayoutVersion": "1.0.0"}'
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_tar_bytes(files))
    return str(manifest["digest"])


SHARED_LAYER = _tar_bytes({"usr/local/bin/tool": b"\x7fELF shared binary " * 200})


@dataclass
class Built:
    """A bundle built from the fixtures, with everything a test needs to attack it."""

    root: Path
    definition: Definition
    keys: Path
    keys_init: KeysInit
    bundle: Path
    result: BuildResult
    wheel: Path


def make_project(
    root: Path,
    *,
    version: str = "2026.11.0",
    model_text: bytes = b"weights",
    hidden_size: int = 128,
) -> Definition:
    """A definition with two images sharing a layer, a model folder and installer content."""
    oci_archive(
        root / "build/components/controller.oci.tar",
        [SHARED_LAYER, _tar_bytes({"etc/ctrl.yml": b"controller: {}"})],
        "controller",
    )
    oci_archive(
        root / "build/components/router.oci.tar",
        [SHARED_LAYER, _tar_bytes({"etc/router.yml": b"router: {}"})],
        "router",
    )
    model = root / "build/models/tiny"
    model.mkdir(parents=True, exist_ok=True)
    (model / "config.json").write_text(f'{{"hidden_size": {hidden_size}}}')
    (model / "model.safetensors").write_bytes(model_text * 1000)
    (root / "roles/fips/tasks").mkdir(parents=True, exist_ok=True)
    (root / "roles/fips/tasks/main.yml").write_text("- ansible.builtin.debug: {msg: fips}\n")
    (root / "bundle.yaml").write_text(
        json.dumps(
            {
                "name": "lab",
                "version": version,
                "installer": {"content": ["roles"]},
                "components": [
                    {
                        "name": "ziti-controller",
                        "version": "2.0.3",
                        "image": "build/components/controller.oci.tar",
                    },
                    {
                        "name": "ziti-router",
                        "version": "2.0.3",
                        "image": "build/components/router.oci.tar",
                    },
                    {
                        "name": "tiny-model",
                        "version": "1",
                        "files": [{"path": "build/models/tiny"}],
                    },
                ],
            }
        )
    )
    return load_definition(root / "bundle.yaml")


def build(
    root: Path,
    *,
    keys: Path | None = None,
    version: str = "2026.11.0",
    model_text: bytes = b"weights",
    part_size: int = 2**30,
    root_threshold: int = 1,
    root_keys: int = 1,
    now: datetime = NOW,
    hidden_size: int = 128,
    since: Path | None = None,
) -> Built:
    """Keys (unless given), fixtures and a signed bundle under ``root``; with ``since``
    (and ``keys``), delta media against that base."""
    root.mkdir(parents=True, exist_ok=True)
    definition = make_project(root, version=version, model_text=model_text, hidden_size=hidden_size)
    if keys is None:
        keys = root / "keys"
        made = init_keys(keys, root_threshold=root_threshold, root_keys=root_keys, now=now)
    else:
        made = KeysInit(keys / "root.json", "", 1, 1)
    wheel = root / "wheels/appliance-0.1.0-py3-none-any.whl"
    wheel.parent.mkdir(parents=True, exist_ok=True)
    wheel.write_bytes(b"PK fake wheel for the bundle layout " * 10)
    out = root / f"bundle-{version}"
    result = build_bundle(
        definition,
        keys,
        out,
        wheelhouse=lambda _d, _s: [wheel],
        now=now,
        part_size=part_size,
        base=load_base(since, keys) if since is not None else None,
    )
    return Built(root, definition, keys, made, out, result, wheel)


def tree(path: Path) -> dict[str, bytes]:
    """Every file under ``path`` with its content: to prove nothing was written."""
    return {
        p.relative_to(path).as_posix(): p.read_bytes()
        for p in sorted(path.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def stored(bundle: Path, logical: str) -> Path:
    """The stored file of a logical target."""
    targets = json.loads((bundle / "metadata/targets.json").read_text())["signed"]["targets"]
    return bundle / "targets/sha256" / targets[logical]["hashes"]["sha256"]


def logical_names(bundle: Path) -> list[str]:
    """All logical target names of a bundle."""
    return sorted(json.loads((bundle / "metadata/targets.json").read_text())["signed"]["targets"])
