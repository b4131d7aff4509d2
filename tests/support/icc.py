"""Minimal ICC v2 RGB matrix/TRC profiles, written from their published primaries.

The sample images need two RGB profiles libvips does not ship: the classic sRGB profile (device
model ``sRGB`` in the header, description ``sRGB IEC61966-2.1``, which the decoder recognises and
skips) and Adobe RGB (1998) (a wide gamut that must be converted). A matrix/TRC profile is eight
tags; LittleCMS reads it like any other. Colorants are Bradford-adapted to the D50 PCS white.
"""

from __future__ import annotations

import struct

XYZ = tuple[float, float, float]

D50: XYZ = (0.9642, 1.0, 0.8249)
SRGB_COLORANTS: tuple[XYZ, XYZ, XYZ] = (
    (0.4360747, 0.2225045, 0.0139322),
    (0.3850649, 0.7168786, 0.0971045),
    (0.1430804, 0.0606169, 0.7141733),
)
ADOBE_RGB_COLORANTS: tuple[XYZ, XYZ, XYZ] = (
    (0.6097559, 0.3111242, 0.0194811),
    (0.2052401, 0.6256560, 0.0608902),
    (0.1492240, 0.0632197, 0.7448387),
)
_HEADER_SIZE = 128


def _s15f16(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def _xyz_tag(xyz: XYZ) -> bytes:
    return b"XYZ \0\0\0\0" + b"".join(_s15f16(v) for v in xyz)


def _text_tag(text: str) -> bytes:
    return b"text\0\0\0\0" + text.encode("ascii") + b"\0"


def _desc_tag(text: str) -> bytes:
    ascii_text = text.encode("ascii") + b"\0"
    # ASCII part, then empty Unicode and ScriptCode parts (ICC v2 'desc' type).
    return (
        b"desc\0\0\0\0"
        + struct.pack(">I", len(ascii_text))
        + ascii_text
        + struct.pack(">IIHB", 0, 0, 0, 0)
        + bytes(67)
    )


def _gamma_curve(gamma: float) -> bytes:
    return b"curv\0\0\0\0" + struct.pack(">IH", 1, round(gamma * 256))


def _srgb_curve(points: int = 1024) -> bytes:
    def decode(v: float) -> float:
        return v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4

    table = [round(65535 * decode(i / (points - 1))) for i in range(points)]
    return b"curv\0\0\0\0" + struct.pack(f">I{points}H", points, *table)


def _profile(
    *,
    description: str,
    manufacturer: bytes,
    model: bytes,
    colorants: tuple[XYZ, XYZ, XYZ],
    curve: bytes,
) -> bytes:
    red, green, blue = colorants
    tags = [
        (b"desc", _desc_tag(description)),
        (b"cprt", _text_tag("No copyright, use freely")),
        (b"wtpt", _xyz_tag(D50)),
        (b"rXYZ", _xyz_tag(red)),
        (b"gXYZ", _xyz_tag(green)),
        (b"bXYZ", _xyz_tag(blue)),
        (b"rTRC", curve),
        (b"gTRC", curve),
        (b"bTRC", curve),
    ]
    table = bytearray(struct.pack(">I", len(tags)))
    body = bytearray()
    offset = _HEADER_SIZE + 4 + 12 * len(tags)
    for signature, data in tags:
        table += struct.pack(">4sII", signature, offset + len(body), len(data))
        body += data + bytes(-len(data) % 4)  # tag data is 4-byte aligned
    size = _HEADER_SIZE + len(table) + len(body)
    header = (
        struct.pack(">I4sI", size, b"lcms", 0x02100000)
        + b"mntrRGB XYZ "
        + struct.pack(">6H", 2024, 1, 1, 0, 0, 0)
        + b"acspAPPL"
        + bytes(4)  # flags
        + manufacturer.ljust(4, b"\0")
        + model.ljust(4, b"\0")
        + bytes(8)  # attributes
        + bytes(4)  # rendering intent: perceptual
        + b"".join(_s15f16(v) for v in D50)
        + b"pxfl"
    ).ljust(_HEADER_SIZE, b"\0")
    return header + bytes(table) + bytes(body)


def srgb_profile() -> bytes:
    """The classic sRGB profile: ``IEC``/``sRGB`` in the header, ``sRGB IEC61966-2.1``."""
    return _profile(
        description="sRGB IEC61966-2.1",
        manufacturer=b"IEC ",
        model=b"sRGB",
        colorants=SRGB_COLORANTS,
        curve=_srgb_curve(),
    )


def adobe_rgb_profile() -> bytes:
    """Adobe RGB (1998): a wider gamut than sRGB, gamma 563/256."""
    return _profile(
        description="Adobe RGB (1998)",
        manufacturer=b"none",
        model=b"",
        colorants=ADOBE_RGB_COLORANTS,
        curve=_gamma_curve(563 / 256),
    )
