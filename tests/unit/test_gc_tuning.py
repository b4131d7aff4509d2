"""The collector set-up of a long-running process, in fresh interpreters (it changes the
process's garbage collector for good)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from pixelflow.gc_tuning import YOUNG_THRESHOLD

_SETTLE = textwrap.dedent(
    """
    import asyncio, contextlib, gc, json, sys, weakref

    class Node:
        pass

    start_up_heap = [{"model": [i]} for i in range(50_000)]  # stands for botocore's models
    before = {"threshold": gc.get_threshold()[0], "frozen": gc.get_freeze_count()}
    if sys.argv[1] == "settle":
        from pixelflow.gc_tuning import settle_after_startup
        settle_after_startup()
    else:  # the entrypoint's start-up hook, around no other hook
        from pixelflow.cli import _settling
        async def start():
            async with contextlib.AsyncExitStack() as stack:
                await _settling(None)(None, stack)
        asyncio.run(start())

    # A reference cycle made after start-up is still freed, by the collector's own schedule.
    freed = []
    cycle = Node()
    cycle.self = cycle
    weakref.finalize(cycle, freed.append, True)
    del cycle
    churn = [[] for _ in range(3 * YOUNG_THRESHOLD)]
    print(json.dumps({
        "before": before,
        "threshold": gc.get_threshold()[0],
        "frozen": gc.get_freeze_count(),
        "cycle_freed": freed == [True],
    }))
    """
).replace("YOUNG_THRESHOLD", str(YOUNG_THRESHOLD))


def _run(mode: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", _SETTLE, mode], capture_output=True, text=True, check=True
    )
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_settling_freezes_the_start_up_heap_and_collects_young_objects_less_often() -> None:
    result = _run("settle")
    before = result["before"]
    assert isinstance(before, dict)
    assert before["frozen"] == 0 and before["threshold"] < YOUNG_THRESHOLD
    assert result["threshold"] == YOUNG_THRESHOLD
    assert isinstance(result["frozen"], int) and result["frozen"] > 50_000
    assert result["cycle_freed"] is True


def test_the_http_entrypoints_settle_the_heap_once_started() -> None:
    result = _run("entrypoint")
    assert result["threshold"] == YOUNG_THRESHOLD
    assert isinstance(result["frozen"], int) and result["frozen"] > 50_000
