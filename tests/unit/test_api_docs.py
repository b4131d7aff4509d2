"""docs/api.md's error tables tell the truth: every code the code base can raise is listed,
every listed code is produced by some test, and each error class answers the documented status.
"""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route

from pixelflow.api.errors import HANDLERS
from pixelflow.core import errors

REPO = Path(__file__).resolve().parents[2]
API_DOC = REPO / "docs" / "api.md"
CODE = re.compile(r"`([a-z][a-z0-9_]*)`")


def documented() -> dict[str, set[int | None]]:
    """Each code in the tables under "## Error codes" → its statuses (None: a job error)."""
    text = API_DOC.read_text()
    section = text[text.index("## Error codes") :]
    statuses: dict[str, set[int | None]] = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if not line.startswith("|") or set(cells[0]) <= {"-"} or cells[0] in {"status", "code"}:
            continue
        status: int | None = int(cells[0]) if cells[0].isdigit() else None
        code_cell = cells[1] if status is not None else cells[0]
        for code in CODE.findall(code_cell):
            statuses.setdefault(code, set()).add(status)
    return statuses


def _python_files(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*.py") if "__pycache__" not in path.parts)


def raised_codes() -> dict[str, Path]:
    """Every literal error code in the package: ``code="…"`` arguments, and the class-level
    ``code = "…"`` defaults of the domain errors."""
    found: dict[str, Path] = {}
    for path in _python_files(REPO / "pixelflow"):
        for node in ast.walk(ast.parse(path.read_text())):
            values: list[ast.expr] = []
            if isinstance(node, ast.Call):
                values = [kw.value for kw in node.keywords if kw.arg == "code"]
            elif isinstance(node, ast.Assign) and path.name == "errors.py":
                names = [t.id for t in node.targets if isinstance(t, ast.Name)]
                values = [node.value] if names == ["code"] else []
            for value in values:
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    found.setdefault(value.value, path.relative_to(REPO))
    return found


def test_the_tables_parse() -> None:
    codes = documented()
    assert codes["invalid_json"] == {400}
    assert codes["storage_unavailable"] == {503, None}  # in both tables
    assert codes["worker_lost"] == {None}
    assert len(codes) > 50


def test_every_code_the_code_raises_is_documented() -> None:
    raised = raised_codes()
    assert {"invalid_cursor", "output_too_large", "local_file_missing"} <= set(raised)
    missing = {code: str(path) for code, path in raised.items() if code not in documented()}
    assert missing == {}, f"codes raised but not in docs/api.md: {missing}"


def test_every_documented_code_is_produced_by_a_test() -> None:
    """A documented code no test asserts is a promise nobody checks. The error classes' own
    default codes are produced below, through the API's handlers."""
    in_tests = {cls.code for cls in _error_classes()}
    for path in _python_files(REPO / "tests"):
        if path.resolve() == Path(__file__).resolve():
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                in_tests.add(node.value)
    untested = sorted(set(documented()) - in_tests)
    assert untested == [], f"documented codes that no test produces: {untested}"


def _error_classes() -> list[type[errors.PixelflowError]]:
    return [
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.PixelflowError) and cls.__module__ == errors.__name__
    ]


@pytest.mark.parametrize("cls", _error_classes(), ids=lambda cls: cls.__name__)
async def test_each_error_class_answers_its_documented_status(
    cls: type[errors.PixelflowError],
) -> None:
    """Raised through the API's real handlers: the status and default code a client sees."""

    async def fail(request: Request) -> None:
        if cls is errors.RateLimited:
            raise errors.RateLimited(
                "slow down", limit=1, remaining=0, reset_after=1.0, retry_after=1.0
            )
        raise cls("it failed")

    app = Starlette(routes=[Route("/", fail)], exception_handlers=HANDLERS)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/")
    code = response.json()["code"]
    if response.status_code == 500:
        # Only job errors (and bugs) are no HTTP answer: the API hides them behind a 500.
        assert code == "internal_error"
        assert None in documented()[cls.code] or cls.code == "internal_error", cls.code
    else:
        assert code == cls.code
        assert response.status_code in documented()[code], (code, response.status_code)
