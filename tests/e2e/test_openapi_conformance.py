"""Schemathesis against a real ``serve``: generated requests, valid and invalid, for every
operation in the served OpenAPI document. No answer may be a 5xx, and every answer must match
the document (status listed, media type, body schema); invalid requests must be refused.

Deterministic (derandomized) and small: a fixed number of examples per operation and mode.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance
from schemathesis.core.result import Ok
from schemathesis.generation.case import Case

from tests.support.processes import PixelflowProcess, free_port

EXAMPLES = 25


@pytest.fixture(scope="module")
def serve_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp: Path = tmp_path_factory.mktemp("conformance")
    port = free_port()
    env = {
        "PIXELFLOW_LOCAL_SOURCE_ROOT": str(tmp / "sources"),
        "PIXELFLOW_API_METRICS_ADDR": "",
        # Generated webhook URLs must not wait on DNS; the address guard has its own tests.
        "PIXELFLOW_WEBHOOK_ALLOW_PRIVATE": "true",
        # Hundreds of requests from one caller: a 429 would hide the route behind it.
        "PIXELFLOW_RATE_LIMIT_CAPACITY": "0",
    }
    (tmp / "sources").mkdir()
    args = ["serve", "--port", str(port), "--data-dir", str(tmp / "data")]
    server = PixelflowProcess(args, env=env, log_path=tmp / "serve.log").start()
    url = f"http://127.0.0.1:{port}"
    try:
        server.wait_http(f"{url}/healthz")
        yield url
    finally:
        server.stop()


def test_every_operation_conforms_to_the_document(serve_url: str) -> None:
    schema = schemathesis.openapi.from_url(f"{serve_url}/openapi.json")
    results = list(schema.get_all_operations())
    operations = [result.ok() for result in results if isinstance(result, Ok)]
    assert len(operations) == len(results), "the document has operations schemathesis cannot read"
    assert len(operations) >= 10, [op.label for op in operations]
    failures: list[str] = []
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                _exercise(operation.as_strategy(generation_mode=mode), serve_url)
            except hypothesis.errors.Unsatisfiable:
                # Every input of this operation is valid (no parameters, or free-form strings):
                # there is no invalid request to make. Positive mode still covered it.
                assert mode is GenerationMode.NEGATIVE, operation.label
            except Exception as exc:  # a FailureGroup names every distinct failure
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    assert not failures, "\n\n".join(failures)


def _exercise(strategy: hypothesis.strategies.SearchStrategy[Case[Any]], base_url: str) -> None:
    @given(case=strategy)
    @hypothesis.settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Case[Any]) -> None:
        # A valid-by-schema request may still break a rule the schema cannot state (a resize
        # needs a width or a height): a 400 for it is right, so acceptance is not required.
        case.call_and_validate(base_url=base_url, excluded_checks=[positive_data_acceptance])

    run()
