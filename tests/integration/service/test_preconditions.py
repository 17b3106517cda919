"""Conditional requests and idempotent replays say what is true now: an If-None-Match list with the current
etag is 304, a malformed etag is a 400 (not a 412 or ABORTED), and replaying a create whose user was deleted
is a 409 / FAILED_PRECONDITION, never a 201 with a Location that 404s."""

from __future__ import annotations

import uuid

import aiohttp
import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from tests.support.users import new_user
from userservice.v1 import user_service_pb2 as pb
from userservice.v1 import user_service_pb2_grpc as pb_grpc


async def create(http: aiohttp.ClientSession, **headers: str) -> dict[str, object]:
    async with http.post("/v1/users", json=new_user(), headers=headers) as resp:
        assert resp.status == 201
        return await resp.json()  # type: ignore[no-any-return]


@pytest.mark.parametrize("header", ['"v0", "v1"', '"v9",W/"v1"', '"x", "v1"', "*"])
async def test_if_none_match_list_with_the_current_etag_is_304(
    http: aiohttp.ClientSession, header: str
) -> None:
    user = await create(http)
    async with http.get(f"/v1/users/{user['id']}", headers={"If-None-Match": header}) as resp:
        assert resp.status == 304, header
        assert resp.headers["ETag"] == '"v1"'


async def test_if_none_match_without_the_current_etag_is_200(http: aiohttp.ClientSession) -> None:
    user = await create(http)
    async with http.get(f"/v1/users/{user['id']}", headers={"If-None-Match": '"v2", "v3"'}) as resp:
        assert resp.status == 200


@pytest.mark.parametrize("header", ["v1", '"v1', '*, "v1"', "W/v1", '"v1" "v2"', ","])
async def test_malformed_if_match_is_400(http: aiohttp.ClientSession, header: str) -> None:
    user = await create(http)
    url = f"/v1/users/{user['id']}"
    async with http.patch(url, json={"first_name": "Grace"}, headers={"If-Match": header}) as resp:
        assert resp.status == 400, header
        problem = await resp.json()
        assert problem["errors"][0]["field"] == "If-Match"
    async with http.delete(url, headers={"If-Match": header}) as resp:
        assert resp.status == 400, header
    async with http.get(url, headers={"If-None-Match": header}) as resp:
        assert resp.status == 400, header


@pytest.mark.parametrize("header", ['"1"', '"vx"', '"v99999999999999999999"', '"v2", "a,b"'])
async def test_well_formed_foreign_etags_are_412(http: aiohttp.ClientSession, header: str) -> None:
    user = await create(http)
    url = f"/v1/users/{user['id']}"
    async with http.patch(url, json={"first_name": "Grace"}, headers={"If-Match": header}) as resp:
        assert resp.status == 412, header
    async with http.get(url, headers={"If-None-Match": header}) as resp:
        assert resp.status == 200, header


async def test_malformed_grpc_etag_is_invalid_argument(stub: pb_grpc.UserServiceStub) -> None:
    created = await stub.CreateUser(pb.CreateUserRequest(user=pb.User(**new_user())))  # type: ignore[arg-type]
    for call in (
        stub.UpdateUser(pb.UpdateUserRequest(user=pb.User(id=created.id, last_name="X", etag="v1"))),
        stub.DeleteUser(pb.DeleteUserRequest(id=created.id, etag="garbage")),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_replay_after_delete_is_409_not_a_dangling_201(http: aiohttp.ClientSession) -> None:
    body, key = new_user(), str(uuid.uuid4())
    async with http.post("/v1/users", json=body, headers={"Idempotency-Key": key}) as resp:
        assert resp.status == 201
        location = resp.headers["Location"]
    async with http.delete(location) as resp:
        assert resp.status == 204
    async with http.post("/v1/users", json=body, headers={"Idempotency-Key": key}) as resp:
        assert resp.status == 409
        assert resp.content_type == "application/problem+json" and "Location" not in resp.headers
        problem = await resp.json()
    assert problem["type"].endswith("/created-user-deleted")
    assert location.rsplit("/", 1)[1] in problem["detail"]


async def test_grpc_replay_after_delete_is_failed_precondition(stub: pb_grpc.UserServiceStub) -> None:
    request = pb.CreateUserRequest(user=pb.User(**new_user()), request_id=str(uuid.uuid4()))  # type: ignore[arg-type]
    created = await stub.CreateUser(request)
    await stub.DeleteUser(pb.DeleteUserRequest(id=created.id))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.CreateUser(request)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    status = rpc_status.from_call(info.value)  # type: ignore[arg-type]
    assert status is not None
    reasons = set()
    for detail in status.details:
        error_info = error_details_pb2.ErrorInfo()
        if detail.Unpack(error_info):
            reasons.add(error_info.reason)
    assert reasons == {"CREATED_USER_DELETED"}
