"""Python's cyclic garbage collector, set up for a long-running service process.

The collector walks every container object a generation holds. A service's start-up leaves a
large, permanent heap behind (the modules, botocore's service models, the app context), and
with CPython's defaults each full collection walked all of it again: under the create + start
load of bench/api.py the API spent about a tenth of its CPU in the collector. Almost everything
a request allocates is freed by reference counting, so collecting young objects every 700 net
allocations mostly found nothing to free.

``settle_after_startup`` runs once the process is ready to serve: it collects what start-up
left as garbage, moves the survivors out of the collector's sight (``gc.freeze``), and collects
the youngest generation after 10 000 net allocations instead of 700. Reference cycles are still
freed, later: garbage caught in a cycle can wait for up to 10 000 allocations instead of 700.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 10_000


def settle_after_startup() -> None:
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, oldest)
