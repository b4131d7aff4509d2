"""Just enough ICC parsing to tell an sRGB profile from the others.

Most camera and web images embed a plain sRGB profile; converting through it to sRGB changes
nothing visible yet costs about as much as decoding the JPEG, so the decoder skips it.
"""

from __future__ import annotations

import struct

_HEADER_SIZE = 128
_TAG_ENTRY = struct.Struct(">4sII")  # signature, offset, size


def is_srgb(profile: bytes) -> bool:
    """True when the profile names itself sRGB: device model ``sRGB`` in the header, or a
    description naming sRGB (but not linear sRGB). Malformed data is "not known to be sRGB"."""
    if len(profile) < _HEADER_SIZE + 4:
        return False
    if profile[52:56] == b"sRGB":
        return True
    (count,) = struct.unpack_from(">I", profile, _HEADER_SIZE)
    for index in range(min(count, 64)):
        position = _HEADER_SIZE + 4 + index * _TAG_ENTRY.size
        if position + _TAG_ENTRY.size > len(profile):
            return False
        signature, offset, size = _TAG_ENTRY.unpack_from(profile, position)
        if signature == b"desc":
            # ASCII in ICC v2 ('desc' type), UTF-16BE in v4 ('mluc'): dropping NULs reads both.
            text = profile[offset : offset + size].replace(b"\x00", b"")
            return b"sRGB" in text and b"linear" not in text.lower()
    return False
