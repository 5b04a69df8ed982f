"""Images made elsewhere: vLLM's own GPU image for production, or an upstream OpenZiti
image, given as an OCI archive or a registry reference on the connected build side, and
copied with skopeo.

``reference`` uses skopeo's transport syntax: ``oci-archive:/path/vllm-openai.tar`` or
``docker://registry.example/vllm/vllm-openai:v0.32.0``. A pinned ``digest`` is checked
before anything is copied.
"""

from __future__ import annotations

from appliance._process import run
from appliance.components import podman
from appliance.components.images import BuiltImage, FipsPosture, image_tag
from appliance.definition import IMAGE_TRANSPORTS, Component, ImageSourceBuild
from appliance.errors import BuildError, CommandError

__all__ = ["copy_image", "import_image_source"]


def import_image_source(component: Component, spec: ImageSourceBuild) -> BuiltImage:
    """Copy the image into local storage as ``localhost/appliance/NAME:VERSION``."""
    tag = image_tag(component)
    upstream = copy_image(
        component.name, spec.reference, tag, tls_verify=spec.tls_verify, digest=spec.digest
    )
    return BuiltImage(
        tag,
        podman.image_id(tag),
        f"{spec.reference}@{upstream}",
        FipsPosture(False, "supplied image: its own vendor states its FIPS posture"),
    )


def copy_image(
    name: str, reference: str, tag: str, *, tls_verify: bool = True, digest: str | None = None
) -> str:
    """Copy ``reference`` into podman's storage as ``tag``; return its manifest digest.

    A pinned ``digest`` that the source does not have is refused before anything is copied.
    """
    if not reference.startswith(IMAGE_TRANSPORTS):
        raise BuildError(
            f"{name}: image reference {reference!r} names no transport; "
            f"expected one of {', '.join(IMAGE_TRANSPORTS)}"
        )
    tls = [] if tls_verify else ["--tls-verify=false"]
    try:
        upstream = run(["skopeo", "inspect", *tls, "--format", "{{.Digest}}", reference]).strip()
    except CommandError as exc:
        raise BuildError(f"{name}: cannot read {reference}: {exc}") from exc
    if digest is not None and upstream != digest:
        raise BuildError(f"{name}: expected {reference} to have digest {digest}, found {upstream}")
    src_tls = [] if tls_verify else ["--src-tls-verify=false"]
    run(["skopeo", "copy", "--quiet", *src_tls, reference, f"containers-storage:{tag}"])
    return upstream
