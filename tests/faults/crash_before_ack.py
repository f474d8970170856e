"""`python -m tests.faults.crash_before_ack <service>`: the service, with a consumer that dies
(the whole process, `os._exit`) on the first delivery of every message, right after the unit of
work that ran its handler committed (the inbox row, the change and the events it emitted) and
before the ack, and before the relay could publish the events handed to it.

The broker redelivers the message: the restarted consumer's unit of work finds the inbox row and
the handler does not run again. The events, committed but leased to the dead process's relay, are
published by the new process's relay once the lease ends. Nothing lost, nothing twice.
"""

from __future__ import annotations

import os
import runpy
import sys

from shared import bus


async def _crash_on_first_delivery(self: bus.EventConsumer, message) -> None:
    # `acknowledge` runs once `handle` has committed the unit of work; nothing awaits before the
    # exit, so the relay's hand-off task never starts either.
    if not message.redelivered:
        os._exit(70)
    await message.ack()


if __name__ == "__main__":
    service = sys.argv.pop(1)
    bus.EventConsumer.acknowledge = _crash_on_first_delivery  # type: ignore[method-assign]
    runpy.run_module(service, run_name="__main__", alter_sys=True)
