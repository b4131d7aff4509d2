"""Create-time validation: strict decoding plus the rules a type cannot express.

Every message names the step and field (``pipeline[2].width must be 1..16384``) and every
error carries a stable code, so a client can both show and branch on it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar, get_args

import msgspec

from pixelflow.core import models
from pixelflow.core.errors import InvalidInput
from pixelflow.core.models import CropStep, ResizeStep, Step, WatermarkStep
from pixelflow.core.wire import CreateJobRequest

T = TypeVar("T")

_PATH = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<field>[^`]+)`")
_MISSING = re.compile(r"^Object missing required field `(?P<field>[^`]+)`")


def _range_of(annotated: Any) -> str:
    meta = get_args(annotated)[1]
    low = meta.ge if meta.ge is not None else meta.gt
    high = meta.le
    return f"{low:g}..{high:g}" if meta.gt is None else f"greater than {low:g} and at most {high:g}"


# Field name → human range, taken from the same constraints the decoder enforces.
_RANGES: dict[str, str] = {
    "width": _range_of(models.Dimension),
    "height": _range_of(models.Dimension),
    "x": _range_of(models.Offset),
    "y": _range_of(models.Offset),
    "quality": _range_of(models.Quality),
    "sigma": _range_of(models.Sigma),
}


# Unicode categories that break or hide text: controls (\n, \t, DEL, C1), line and paragraph
# separators.
_NOT_ONE_LINE = frozenset({"Cc", "Zl", "Zp"})


def decode_create_request(body: bytes) -> CreateJobRequest:
    """Decode a create-job body strictly, turning msgspec's errors into coded ``InvalidInput``."""
    try:
        return msgspec.json.decode(body, type=CreateJobRequest)
    except msgspec.ValidationError as exc:
        raise translate_validation_error(str(exc)) from None
    except msgspec.DecodeError as exc:
        raise InvalidInput(f"request body is not valid JSON: {exc}", code="invalid_json") from None
    except UnicodeDecodeError as exc:
        # msgspec reports bytes that are not UTF-8 inside a string this way, not as a
        # DecodeError: it is still the client's malformed body, never a 500.
        raise InvalidInput(
            f"request body is not valid JSON: invalid UTF-8 at byte {exc.start}",
            code="invalid_json",
        ) from None


def decode_query(params: Mapping[str, str], kind: type[T]) -> T:
    """A query string as the Struct ``kind`` (values converted from text: ``limit=5`` is the
    integer 5; ``limit=`` is not an integer). Errors are ``InvalidInput`` with code
    ``unknown_parameter`` or ``invalid_parameter``, naming the parameter."""
    try:
        return msgspec.convert(dict(params), kind, strict=False)
    except msgspec.ValidationError as exc:
        raise _query_error(str(exc)) from None


def given(value: T | msgspec.UnsetType) -> T | None:
    """A decoded query parameter, or None when it was absent."""
    return None if isinstance(value, msgspec.UnsetType) else value


def _query_error(text: str) -> InvalidInput:
    match = _PATH.search(text)
    reason = text[: match.start()] if match else text
    if unknown := _UNKNOWN.match(reason):
        name = unknown.group("field")
        return InvalidInput(f"unknown query parameter {name!r}", code="unknown_parameter")
    name = match.group("path") if match else "query string"
    return InvalidInput(f"{name}: {reason[0].lower()}{reason[1:]}", code="invalid_parameter")


def translate_validation_error(text: str) -> InvalidInput:
    match = _PATH.search(text)
    path = match.group("path") if match else ""
    reason = text[: match.start()] if match else text
    where = f"{path}." if path else ""

    if unknown := _UNKNOWN.match(reason):
        field = f"{where}{unknown.group('field')}"
        return InvalidInput(f"{field} is not a known field", code="unknown_field")
    if missing := _MISSING.match(reason):
        field = f"{where}{missing.group('field')}"
        return InvalidInput(f"{field} is required", code="missing_field")

    field = path.rsplit(".", 1)[-1]
    if field == "format" and "enum value" in reason:
        return InvalidInput(
            f"{path} must be one of jpeg, jpg, png, webp, avif, gif, tiff",
            code="unsupported_format",
        )
    if field == "action":
        return InvalidInput(
            f"{path} must be one of resize, watermark, crop, rotate, flip, blur, sharpen, convert",
            code="unknown_action",
        )
    if field in _RANGES and (">" in reason or "<" in reason):
        return InvalidInput(f"{path} must be {_RANGES[field]}", code="invalid_field")
    subject = path or "request body"
    return InvalidInput(f"{subject}: {reason[0].lower()}{reason[1:]}", code="invalid_field")


def validate_pipeline(steps: Sequence[Step], *, max_steps: int) -> None:
    """The rules between fields and between steps, checked before a job is stored."""
    if len(steps) > max_steps:
        raise InvalidInput(
            f"pipeline has {len(steps)} steps; at most {max_steps} are allowed",
            code="too_many_steps",
        )
    seen: set[str] = set()
    consumed: set[str] = set()
    for index, step in enumerate(steps):
        where = f"pipeline[{index}]"
        if step.id in seen:
            raise InvalidInput(
                f"{where}.id {step.id!r} is used by an earlier step", code="duplicate_step_id"
            )
        if step.input is not None:
            if step.input not in seen:
                raise InvalidInput(
                    f"{where}.input {step.input!r} must name an earlier step",
                    code="invalid_input_step",
                )
            consumed.add(step.input)
        _validate_step(step, where)
        seen.add(step.id)

    for index, step in enumerate(steps):
        if not step.emit and step.id not in consumed:
            raise InvalidInput(
                f"pipeline[{index}].emit is false but no later step uses {step.id!r} as its input",
                code="invalid_pipeline",
            )


def _validate_step(step: Step, where: str) -> None:
    if isinstance(step, ResizeStep):
        if step.width is None and step.height is None:
            raise InvalidInput(f"{where} needs width and/or height", code="invalid_field")
        if step.fit != "inside" and (step.width is None or step.height is None):
            raise InvalidInput(
                f"{where}.fit {step.fit!r} needs both width and height", code="invalid_field"
            )
    elif isinstance(step, WatermarkStep):
        # The text is drawn as one line: a newline, tab or other control character would be
        # drawn as a line break or a missing-glyph box, never as the caller meant it.
        if any(unicodedata.category(char) in _NOT_ONE_LINE for char in step.watermark.text):
            raise InvalidInput(
                f"{where}.watermark.text must be one line, without control characters",
                code="invalid_field",
            )
    elif isinstance(step, CropStep):
        has_offset = step.x is not None or step.y is not None
        if has_offset and step.gravity is not None:
            raise InvalidInput(f"{where} takes gravity or x/y, not both", code="invalid_field")
