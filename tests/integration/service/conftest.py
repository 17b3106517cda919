from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import grpc
import pytest

from tests.support.service import RunningService, in_process
from userservice.v1 import user_service_pb2_grpc as pb_grpc


@pytest.fixture(scope="module")
async def service(database: str) -> AsyncIterator[RunningService]:
    async with in_process(database) as running:
        yield running


@pytest.fixture(scope="module")
async def http(service: RunningService) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=service.http) as session:
        yield session


@pytest.fixture(scope="module")
async def stub(service: RunningService) -> AsyncIterator[pb_grpc.UserServiceStub]:
    async with grpc.aio.insecure_channel(service.grpc) as channel:
        yield pb_grpc.UserServiceStub(channel)
