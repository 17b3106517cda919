"""`python -m tests.integration.operator.hung_kopf ARGS`: the real `userservice-operator`, with three faults to
inject. With `RUN_BETWEEN_NAMESPACE_LISTINGS` (a JSON argv) set, that command runs after kopf's namespace observer
has listed the namespaces and before its watch lists them again (the window in which kopf misses a new namespace:
userservice_operator/namespaces.py). On SIGUSR1 its kopf hangs the way kopf 1.45 does when a watch fails: its
orchestrator ends, and a task that swallows its cancellation (kopf's `request_cancel_callback`, kopf issues #1145
and #1276) keeps `kopf.run_tasks` from ever returning. On SIGUSR2 every API call blocks (the threads they run in
are taken), so reconcile passes start and never end. Everything else is the unchanged program.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kopf._cogs.clients import fetching

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


def run_between_namespace_listings(command: list[str]) -> None:
    """Run `command` once, right after kopf's first listing of the namespaces ends (before the next one)."""
    listing = fetching.fetch_objs
    done = False

    async def fetch_objs(*, resource: Any, **kwargs: Any) -> AsyncIterator[Any]:
        nonlocal done
        async for chunk in listing(resource=resource, **kwargs):
            yield chunk
        if resource.plural == "namespaces" and not done:
            done = True
            await asyncio.to_thread(subprocess.run, command, check=True)
            logging.getLogger(__name__).warning(
                "fault injected: ran %s between the namespace listings", command
            )

    fetching.fetch_objs = fetch_objs  # type: ignore[assignment]


async def run(args: argparse.Namespace) -> int:
    left_behind: list[asyncio.Task[None]] = []
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, hang_kopf, left_behind)
    loop.add_signal_handler(signal.SIGUSR2, block_api_calls)
    if command := os.environ.get("RUN_BETWEEN_NAMESPACE_LISTINGS"):
        run_between_namespace_listings(json.loads(command))
    return await process.run(args)


def main() -> None:
    args = cli.parse_args(sys.argv[1:])
    logs.setup_logging(args.log_level)
    code = asyncio.new_event_loop().run_until_complete(run(args))
    logging.shutdown()
    os._exit(code)  # as cli.main: the task left behind would keep the loop's shutdown waiting


if __name__ == "__main__":
    main()
