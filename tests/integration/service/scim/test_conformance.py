"""An independent SCIM conformance tester, scim2-tester (the python-scim project), against the running service:
every check it has, none excluded; anything but a pass fails the test with the tester's own reasons. The tester
fills every declared attribute with random values (and random booleans), so each run writes different users; 25
runs in a row passed when this was written."""

from __future__ import annotations

import asyncio

import httpx2
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import CheckResult, Status, check_server

from tests.support.service import RunningService

# What the tester calls a pass: the MUSTs held, a SHOULD followed, or a MAY taken (its Status documents each).
PASSED = {Status.SUCCESS, Status.COMPLIANT, Status.ACCEPTABLE}


def run_tester(base_url: str) -> list[CheckResult]:
    with httpx2.Client(base_url=f"{base_url}/scim/v2", timeout=60) as http:
        return check_server(SyncSCIMClient(http), raise_exceptions=False)


async def test_scim2_tester_finds_nothing_to_report(service: RunningService) -> None:
    results = await asyncio.to_thread(run_tester, service.http)
    report = [f"{r.status.name} {r.title}: {r.reason}" for r in results if r.status not in PASSED]
    print(
        f"scim2-tester: {len(results)} checks", {s.name: sum(r.status == s for r in results) for s in Status}
    )
    assert len(results) > 20, [f"{r.status.name} {r.title}" for r in results]
    assert report == [], "\n".join(report)
