"""Enrollment tokens as QR codes, for the pages and the API to show once."""

from __future__ import annotations

import io

import qrcode
import qrcode.image.svg

__all__ = ["qr_svg"]


def qr_svg(jwt: str) -> str:
    """The enrollment JWT as an inline SVG QR code (no script, no external asset)."""
    image = qrcode.make(jwt, image_factory=qrcode.image.svg.SvgPathImage, box_size=6)
    buffer = io.BytesIO()
    image.save(buffer)
    return buffer.getvalue().decode("utf-8")
