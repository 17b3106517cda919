"""The gRPC API over a real server: same rules as REST, proper status codes with google.rpc details."""

from __future__ import annotations

import uuid

import grpc
import pytest
from google.protobuf import field_mask_pb2
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from tests.support.service import RunningService
from tests.support.users import new_user
from userservice.v1 import user_service_pb2 as pb
from userservice.v1 import user_service_pb2_grpc as pb_grpc


def user_msg(**fields: object) -> pb.User:
    return pb.User(**new_user(**fields))  # type: ignore[arg-type]


async def expect_error(call: object, code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call  # type: ignore[misc]
    assert info.value.code() == code, info.value.details()
    return info.value


def violations(error: grpc.aio.AioRpcError) -> dict[str, str]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            return {v.field: v.description for v in bad.field_violations}
    raise AssertionError("no BadRequest detail")


async def test_crud(stub: pb_grpc.UserServiceStub) -> None:
    created = await stub.CreateUser(pb.CreateUserRequest(user=user_msg(country="de")))
    assert (
        created.country == "DE" and created.version == 1 and created.etag == '"v1"' and created.password == ""
    )
    assert created.created_at.seconds > 0
    got = await stub.GetUser(pb.GetUserRequest(id=created.id))
    assert got == created
    updated = await stub.UpdateUser(
        pb.UpdateUserRequest(
            user=pb.User(id=created.id, first_name="Grace", etag=created.etag),
            update_mask=field_mask_pb2.FieldMask(paths=["first_name"]),
        )
    )
    assert updated.first_name == "Grace" and updated.version == 2 and updated.last_name == created.last_name
    await stub.DeleteUser(pb.DeleteUserRequest(id=created.id, etag=updated.etag))
    await expect_error(stub.GetUser(pb.GetUserRequest(id=created.id)), grpc.StatusCode.NOT_FOUND)


async def test_invalid_argument_lists_field_violations(stub: pb_grpc.UserServiceStub) -> None:
    error = await expect_error(
        stub.CreateUser(
            pb.CreateUserRequest(user=pb.User(first_name="Ada", email="nope", country="UK", id="x"))
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    found = violations(error)
    assert set(found) == {"email", "country", "id", "last_name", "nickname", "password"}
    assert "did you mean GB" in found["country"]


async def test_update_mask_and_etag_rules(stub: pb_grpc.UserServiceStub) -> None:
    created = await stub.CreateUser(pb.CreateUserRequest(user=user_msg()))
    mask = field_mask_pb2.FieldMask
    error = await expect_error(
        stub.UpdateUser(
            pb.UpdateUserRequest(user=pb.User(id=created.id), update_mask=mask(paths=["shoe_size"]))
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "update_mask" in violations(error)
    error = await expect_error(
        stub.UpdateUser(pb.UpdateUserRequest(user=pb.User(id=created.id), update_mask=mask(paths=["email"]))),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "email" in violations(error)  # masked but empty: clearing a required field is refused
    await stub.UpdateUser(
        pb.UpdateUserRequest(user=pb.User(id=created.id, last_name="Hopper"))
    )  # empty mask: set fields
    await expect_error(
        stub.UpdateUser(pb.UpdateUserRequest(user=pb.User(id=created.id, last_name="X", etag=created.etag))),
        grpc.StatusCode.ABORTED,
    )
    await expect_error(
        stub.DeleteUser(pb.DeleteUserRequest(id=created.id, etag='"v1"')), grpc.StatusCode.ABORTED
    )
    await expect_error(stub.GetUser(pb.GetUserRequest(id="not-a-uuid")), grpc.StatusCode.INVALID_ARGUMENT)


async def test_already_exists(stub: pb_grpc.UserServiceStub) -> None:
    first = await stub.CreateUser(pb.CreateUserRequest(user=user_msg()))
    error = await expect_error(
        stub.CreateUser(pb.CreateUserRequest(user=user_msg(email=first.email.upper()))),
        grpc.StatusCode.ALREADY_EXISTS,
    )
    assert "email" in (error.details() or "")


async def test_request_id_idempotency(stub: pb_grpc.UserServiceStub) -> None:
    request_id = str(uuid.uuid4())
    user = user_msg()
    first = await stub.CreateUser(pb.CreateUserRequest(user=user, request_id=request_id))
    again = await stub.CreateUser(pb.CreateUserRequest(user=user, request_id=request_id))
    assert again == first
    other = pb.User()
    other.CopyFrom(user)
    other.first_name = "Different"
    await expect_error(
        stub.CreateUser(pb.CreateUserRequest(user=other, request_id=request_id)),
        grpc.StatusCode.FAILED_PRECONDITION,
    )


async def test_list_with_filter_and_pages(stub: pb_grpc.UserServiceStub) -> None:
    ids = {(await stub.CreateUser(pb.CreateUserRequest(user=user_msg(country="KE")))).id for _ in range(5)}
    seen: list[str] = []
    token = ""
    while True:
        page = await stub.ListUsers(
            pb.ListUsersRequest(filter='country = "ke"', page_size=2, page_token=token)
        )
        seen.extend(u.id for u in page.users)
        token = page.next_page_token
        if not token:
            break
    assert set(seen) == ids and len(seen) == 5
    for bad in ['country ~ "KE"', 'shoe = "9"', 'created_at = "2024-01-01T00:00:00Z"', "country = KE"]:
        error = await expect_error(
            stub.ListUsers(pb.ListUsersRequest(filter=bad)), grpc.StatusCode.INVALID_ARGUMENT
        )
        assert "filter" in violations(error)
    await expect_error(stub.ListUsers(pb.ListUsersRequest(page_size=5000)), grpc.StatusCode.INVALID_ARGUMENT)
    await expect_error(
        stub.ListUsers(pb.ListUsersRequest(page_token="x.y")), grpc.StatusCode.INVALID_ARGUMENT
    )


async def test_health_and_reflection(service: RunningService) -> None:
    async with grpc.aio.insecure_channel(service.grpc) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for name in ("", "userservice.v1.UserService"):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=name))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = reflection.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        async for response in responses:
            names = {s.name for s in response.list_services_response.service}
            break
    assert {
        "userservice.v1.UserService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= names
