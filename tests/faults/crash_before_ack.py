"""`python -m tests.faults.crash_before_ack <service>`: the service, with a consumer that dies
(the whole process, `os._exit`) after each handler's commit and before its ack, on the first
delivery of every message. The broker redelivers; the inbox must absorb the repeat.
"""

from __future__ import annotations

import os
import runpy
import sys

from shared import bus


async def _crash_on_first_delivery(self: bus.EventConsumer, message) -> None:
    if not message.redelivered:
        os._exit(70)
    await message.ack()


if __name__ == "__main__":
    service = sys.argv.pop(1)
    bus.EventConsumer.acknowledge = _crash_on_first_delivery  # type: ignore[method-assign]
    runpy.run_module(service, run_name="__main__", alter_sys=True)
