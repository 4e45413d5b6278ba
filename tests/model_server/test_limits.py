"""The body deadline's bookkeeping (the real process tests are in tests/security/)."""

from __future__ import annotations

import asyncio
import time

from model_server.app import TIMED_OUT, BodyDeadlines
from model_server.protocols.common import BODY_READING


def test_body_deadlines_cancel_only_handlers_still_reading_a_late_body() -> None:
    async def scenario() -> tuple[bool, bool, bool]:
        deadlines = BodyDeadlines(timeout=5.0)
        waiting = asyncio.get_running_loop().create_future()
        late_reader = asyncio.create_task(asyncio.wait_for(waiting, None))
        done_reading = asyncio.create_task(asyncio.sleep(60))
        reading: dict[str, object] = {BODY_READING: True}
        finished: dict[str, object] = {}  # read_body removed BODY_READING: body complete
        deadlines.reading[late_reader] = (time.monotonic() + 5.0, reading)
        deadlines.reading[done_reading] = (time.monotonic() + 5.0, finished)
        deadlines.sweep(time.monotonic())  # nobody is late yet
        await asyncio.sleep(0)
        early = late_reader.cancelled() or late_reader.done()
        deadlines.sweep(time.monotonic() + 6.0)
        await asyncio.gather(late_reader, return_exceptions=True)
        await asyncio.sleep(0)
        result = (early, late_reader.cancelled(), done_reading.cancelled())
        done_reading.cancel()
        assert reading.get(TIMED_OUT) is True and TIMED_OUT not in finished
        return result

    assert asyncio.run(scenario()) == (False, True, False)
