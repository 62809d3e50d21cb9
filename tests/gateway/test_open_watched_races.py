"""`open_watched` with the client leaving at every turn of the event loop relative to the
opening: whatever the order, the request's task is left with no cancellation pending, and
the opening either hands its stream on (the watch then still reports the client gone) or is
cancelled where it stood and gives its slot back; nothing else escapes."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from orpheus_gateway.routes.common import open_watched


def client(leave_after_turns: int):
    """A request whose receive() reports the disconnect after that many loop turns."""
    async def receive():
        for _ in range(leave_after_turns):
            await asyncio.sleep(0)
        return {"type": "http.disconnect"}
    return SimpleNamespace(receive=receive)


async def opening(turns: int, held: list, fail: BaseException | None = None):
    """Like `Gateway.start_stream`: takes a slot, gives it back unless a stream comes out."""
    held.append("slot")
    try:
        for _ in range(turns):
            await asyncio.sleep(0)
        if fail is not None:
            raise fail
        return object()  # the stream
    except BaseException:
        held.remove("slot")
        raise


@pytest.mark.parametrize("open_turns", [0, 1, 2, 5, 10])
async def test_the_client_leaving_at_any_turn_leaves_no_cancellation_behind(open_turns):
    outcomes = set()
    for leave in range(open_turns + 4):
        held: list = []
        result = await open_watched(client(leave), opening(open_turns, held))
        assert (result is None) == (not held), (open_turns, leave)
        outcomes.add(result is None)
        task = asyncio.current_task()
        assert task.cancelling() == 0, (open_turns, leave)
        await asyncio.sleep(0)  # no cancellation delivered late to the request's task
        await asyncio.sleep(0.01)
        if result is not None:
            stream, watch = result
            gone = []
            watch.on_gone(lambda: gone.append(True))
            await asyncio.sleep(0.01)
            assert gone == [True], (open_turns, leave)  # the relay learns the client left
            watch.stop()
    if open_turns >= 5:  # the watch takes a few turns: both orders were met
        assert outcomes == {True, False}


async def test_an_opening_refused_while_the_client_leaves_raises_the_refusal():
    class Refused(Exception):
        pass
    for leave in range(4):
        held: list = []
        try:
            result = await open_watched(client(leave), opening(2, held, fail=Refused()))
        except Refused:
            pass
        else:
            assert result is None, leave
        assert asyncio.current_task().cancelling() == 0 and not held


async def test_a_timeout_of_the_openings_own_is_not_taken_for_the_client_leaving():
    async def own_timeout():
        async with asyncio.timeout(0):
            await asyncio.sleep(1)
    with pytest.raises(TimeoutError):
        await open_watched(client(10_000), own_timeout())
