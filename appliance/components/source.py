"""Images made elsewhere: vLLM's own GPU image for production, given as an OCI archive or
a registry reference on the connected build side, and copied with skopeo.

``reference`` uses skopeo's transport syntax: ``oci-archive:/path/vllm-openai.tar`` or
``docker://registry.example/vllm/vllm-openai:v0.32.0``. A pinned ``digest`` is checked
before anything is copied.
"""

from __future__ import annotations

from appliance._process import run
from appliance.bundle.definition import Component, ImageSourceBuild
from appliance.components import podman
from appliance.components.images import BuiltImage, FipsPosture, image_tag
from appliance.errors import BuildError, CommandError

__all__ = ["import_image_source"]

_TRANSPORTS = ("oci-archive:", "docker://", "oci:", "docker-archive:")


def import_image_source(component: Component, spec: ImageSourceBuild) -> BuiltImage:
    """Copy the image into local storage as ``localhost/appliance/NAME:VERSION``."""
    if not spec.reference.startswith(_TRANSPORTS):
        raise BuildError(
            f"{component.name}: image reference {spec.reference!r} names no transport; "
            f"expected one of {', '.join(_TRANSPORTS)}"
        )
    tls = [] if spec.tls_verify else ["--tls-verify=false"]
    try:
        upstream = run(
            ["skopeo", "inspect", *tls, "--format", "{{.Digest}}", spec.reference]
        ).strip()
    except CommandError as exc:
        raise BuildError(f"{component.name}: cannot read {spec.reference}: {exc}") from exc
    if spec.digest is not None and upstream != spec.digest:
        raise BuildError(
            f"{component.name}: expected {spec.reference} to have digest {spec.digest}, "
            f"found {upstream}"
        )
    tag = image_tag(component)
    src_tls = [] if spec.tls_verify else ["--src-tls-verify=false"]
    run(["skopeo", "copy", "--quiet", *src_tls, spec.reference, f"containers-storage:{tag}"])
    return BuiltImage(
        tag,
        podman.image_id(tag),
        f"{spec.reference}@{upstream}",
        FipsPosture(False, "supplied image: its own vendor states its FIPS posture"),
    )
