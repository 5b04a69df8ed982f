"""Lab media: a signed bundle of every lab component this machine has built.

bundles/lab.yaml names the whole lab; the OpenZiti components cannot be built here while
the Go module proxy refuses their modules, so lab media hold the components whose
outputs exist and say which were left out, and why. Tests and benchmarks make several
versions from the same outputs (N-1, N, N+1), giving the model a revision of its own
where an upgrade must change exactly one component.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from appliance.bundle.builder import build_bundle
from appliance.bundle.delta import load_base
from appliance.bundle.signing import init_keys
from appliance.components.pylock import INSTALLER, locked_for
from appliance.components.wheelhouse import installer_wheelhouse
from appliance.definition import Component, Definition, load_definition
from appliance.errors import BuildError

__all__ = ["LabMedia", "make_lab_media"]

#: The component whose files a ``model`` argument replaces (the site playbook serves it).
MODEL_COMPONENT = "tiny-model"


@dataclass(frozen=True)
class LabMedia:
    """Media written by :func:`make_lab_media`."""

    path: Path
    version: str
    root_fingerprint: str
    components: dict[str, str]  # name → version
    left_out: list[str]  # components of the definition not built on this machine


def make_lab_media(
    out: Path,
    keys: Path,
    *,
    definition: Path,
    version: str | None = None,
    model: Path | None = None,
    model_version: str | None = None,
    only: Sequence[str] | None = None,
    since: Path | None = None,
) -> LabMedia:
    """Sign a bundle of the built lab components into ``out`` (a new folder).

    ``keys`` is made when it does not exist. ``model`` (a folder) replaces the model's
    files, as revision ``model_version``. ``only`` keeps only the components named (a site
    without the overlay, say), built or not. Inputs are hard-linked into a scratch folder
    beside ``out``, so a bundle costs no copy of its images before it is written.
    ``since`` (a previous bundle or a site's exported state) makes delta media against it.
    """
    lab = load_definition(definition)
    kept, left_out = _built(lab)
    if only is not None:
        left_out += [f"{c.name} (not asked for)" for c in kept if c.name not in only]
        kept = [c for c in kept if c.name in only]
    if not kept:
        raise BuildError(
            f"no component of {definition} is built",
            hint=f"build them first: appliance components build --definition {definition}",
        )
    if not (keys / "root.json").exists():
        init_keys(keys)
    base = load_base(since, keys) if since is not None else None
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".lab-media-", dir=out.parent) as scratch:
        inputs = Path(scratch)
        components = []
        for component in kept:
            entry: dict[str, object] = {"name": component.name, "version": component.version}
            if component.image is not None:
                image = Path("images") / f"{component.name}.oci.tar"
                archive = lab.resolve(component.image, what=component.name)
                _link(archive, inputs / image)
                entry["image"] = image.as_posix()
                contents = archive.with_name(f"{component.name}.cdx.json")  # its SBOM
                if contents.is_file():
                    _link(contents, inputs / image.with_name(contents.name))
            files = [lab.resolve(f.path, what=component.name) for f in component.files]
            if component.name == MODEL_COMPONENT and model is not None:
                files = [model]
                entry["version"] = model_version or component.version
            if files:
                entry["files"] = []
                for source in files:
                    # The folder's own name is the files' first path element on the media.
                    rel = Path("files") / component.name / source.name
                    _link(source, inputs / rel)
                    entry["files"].append({"path": rel.as_posix()})  # type: ignore[attr-defined]
            components.append(entry)
        for folder in lab.installer.content:
            _link(lab.resolve(folder, what="installer content"), inputs / folder)
        bundle_version = version or lab.version
        written = inputs / "bundle.json"
        written.write_text(
            json.dumps(
                {
                    "name": lab.name,
                    "version": bundle_version,
                    "installer": lab.installer.model_dump(),
                    "components": components,
                }
            ),
            encoding="utf-8",
        )
        result = build_bundle(
            load_definition(written),
            keys,
            out,
            wheelhouse=lambda d, tmp: installer_wheelhouse(
                d.installer.requirements, tmp, locked_for(lab, INSTALLER)
            ),
            base=base,
        )
    return LabMedia(
        path=out,
        version=bundle_version,
        root_fingerprint=result.root_fingerprint,
        components={str(c["name"]): str(c["version"]) for c in components},
        left_out=left_out,
    )


def _built(lab: Definition) -> tuple[list[Component], list[str]]:
    """Components whose image and files all exist, and a line for each that was left out."""
    kept: list[Component] = []
    left_out: list[str] = []
    for component in lab.components:
        outputs = [component.image] if component.image else []
        outputs += [f.path for f in component.files]
        missing = [p for p in outputs if not lab.resolve(p, what=component.name).exists()]
        if missing:
            left_out.append(f"{component.name} (not built here: {', '.join(missing)} missing)")
        else:
            kept.append(component)
    return kept, left_out


def _link(source: Path, dest: Path) -> None:
    """Hard-link a file or a folder's files to ``dest``; copy across file systems."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, dest, copy_function=_link_file, symlinks=False)
    else:
        _link_file(str(source), str(dest))


def _link_file(source: str, dest: str) -> None:
    try:
        os.link(source, dest)
    except OSError:
        shutil.copy2(source, dest)
