"""`python -m tests.integration.operator.hung_kopf ARGS`: the real `userservice-operator`, with two faults to
inject. On SIGUSR1 its kopf hangs the way kopf 1.45 does when a watch fails: its orchestrator ends, and a task
that swallows its cancellation (kopf's `request_cancel_callback`, kopf issues #1145 and #1276) keeps
`kopf.run_tasks` from ever returning. On SIGUSR2 every API call blocks (the threads they run in are taken), so
reconcile passes start and never end. Everything else is the unchanged program.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

from userservice_operator import cli, logs, process

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


def block_api_calls() -> None:
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="blocked")
    executor.submit(threading.Event().wait)  # takes the only thread for good
    asyncio.get_running_loop().set_default_executor(executor)
    logging.getLogger(__name__).warning("fault injected: API calls block")


async def run(args: argparse.Namespace) -> int:
    left_behind: list[asyncio.Task[None]] = []
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, hang_kopf, left_behind)
    loop.add_signal_handler(signal.SIGUSR2, block_api_calls)
    return await process.run(args)


def main() -> None:
    args = cli.parse_args(sys.argv[1:])
    logs.setup_logging(args.log_level)
    code = asyncio.new_event_loop().run_until_complete(run(args))
    logging.shutdown()
    os._exit(code)  # as cli.main: the task left behind would keep the loop's shutdown waiting


if __name__ == "__main__":
    main()
