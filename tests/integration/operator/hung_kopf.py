"""`python -m tests.integration.operator.hung_kopf ARGS`: the real `userservice-operator`, whose kopf hangs on
SIGUSR1 the way kopf 1.45 does when a watch fails: its orchestrator ends, and a task that swallows its
cancellation (kopf's `request_cancel_callback`, kopf issues #1145 and #1276) keeps `kopf.run_tasks` from ever
returning. Everything else is the unchanged program.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from userservice_operator import cli

ORCHESTRATOR = "multidimensional multitasker"  # kopf's name for its root task that runs the watchers


async def refuse_cancellation() -> None:
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            continue


def hang_kopf(left_behind: list[asyncio.Task[None]]) -> None:
    left_behind.append(
        asyncio.create_task(refuse_cancellation(), name="watcher that swallowed its cancellation")
    )
    for task in asyncio.all_tasks():
        if task.get_name() == ORCHESTRATOR:
            task.cancel()
    logging.getLogger(__name__).warning(
        "fault injected: kopf's orchestrator cancelled, a task refuses to stop"
    )


async def run(args: argparse.Namespace) -> int:
    left_behind: list[asyncio.Task[None]] = []
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, hang_kopf, left_behind)
    return await cli.run(args)


def main() -> None:
    args = cli.parse_args(sys.argv[1:])
    cli.setup_logging(args.log_level)
    code = asyncio.new_event_loop().run_until_complete(run(args))
    logging.shutdown()
    os._exit(code)  # as cli.main: the task left behind would keep the loop's shutdown waiting


if __name__ == "__main__":
    main()
