"""What only the cycle collector would have freed: objects of the gateway's stack found in
reference cycles while a block ran (a stream's objects must be freed by reference counting)."""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

STACK = ("orpheus_gateway", "uvicorn", "starlette", "fastapi", "aiohttp")


@contextmanager
def cycle_garbage(modules: tuple[str, ...] = STACK) -> Iterator[Counter]:
    """The Counter (type name → count) is filled when the block ends without an exception."""
    left: Counter = Counter()
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)  # what the collector finds is kept in gc.garbage to look at
    try:
        yield left
        gc.collect()
        left.update(type(o).__qualname__ for o in gc.garbage
                    if type(o).__module__.startswith(modules))
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
