"""A gRPC fuzzer: every method the server lists through reflection gets random bytes and messages with hostile
field values. Whatever arrives, the answer is never INTERNAL or UNKNOWN, and its message stays short."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import FieldDescriptor, MethodDescriptor
from google.protobuf.message import DecodeError
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.hostile import wire_text
from tests.support.service import RunningService

HOSTILE = settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
SERVER_FAULTS = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
MESSAGE_MAX = 2048  # a status message a client can show and a log line can hold
STREAM_WAIT_SECONDS = 0.5  # a stream that accepted its request and waits for events is a success


@dataclass(frozen=True)
class Method:
    path: str
    descriptor: MethodDescriptor
    streaming: bool


async def reflected_methods(channel: grpc.aio.Channel) -> list[Method]:
    """Every method of every service the server lists, described by the server itself."""
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)

    async def ask(**request: str) -> reflection_pb2.ServerReflectionResponse:
        async for response in stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(**request)])
        ):
            return response
        raise AssertionError("no reflection answer")

    pool = descriptor_pool.DescriptorPool()
    services = (await ask(list_services="")).list_services_response.service
    methods = []
    for service in services:
        if service.name == reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"].full_name:
            continue  # a bidirectional stream driven above
        files = (
            await ask(file_containing_symbol=service.name)
        ).file_descriptor_response.file_descriptor_proto
        protos = [descriptor_pb2.FileDescriptorProto.FromString(raw) for raw in files]
        added: set[str] = set()
        while len(added) < len(protos):  # dependencies first
            for proto in protos:
                if proto.name not in added and all(
                    dep in added or _known(pool, dep) for dep in proto.dependency
                ):
                    if not _known(pool, proto.name):
                        pool.Add(proto)
                    added.add(proto.name)
        for method in pool.FindServiceByName(service.name).methods:
            methods.append(
                Method(
                    f"/{service.name}/{method.name}",
                    method,
                    method.server_streaming or method.client_streaming,
                )
            )
    return methods


def _known(pool: descriptor_pool.DescriptorPool, name: str) -> bool:
    try:
        pool.FindFileByName(name)
    except KeyError:
        return False
    return True


@pytest.fixture(scope="module")
async def channel(service: RunningService) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(service.grpc) as open_channel:
        yield open_channel


@pytest.fixture(scope="module")
async def methods(channel: grpc.aio.Channel) -> list[Method]:
    found = await reflected_methods(channel)
    assert {m.path.rsplit("/", 1)[1] for m in found} >= {
        "CreateUser",
        "ListUsers",
        "WatchUserEvents",
        "Check",
    }
    return found


async def call(channel: grpc.aio.Channel, method: Method, payload: bytes) -> grpc.StatusCode:
    """Sends raw bytes as the request and returns the answer's code; fails on a server fault or an overlong
    status message."""
    try:
        if method.streaming:
            stream = channel.unary_stream(method.path)(payload, timeout=STREAM_WAIT_SECONDS)
            async for _ in stream:
                pass
        else:
            await channel.unary_unary(method.path)(payload, timeout=10)
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED and method.streaming:
            return grpc.StatusCode.OK
        assert exc.code() not in SERVER_FAULTS, f"{method.path}: {exc.code()} {exc.details()}"
        assert len(exc.details() or "") <= MESSAGE_MAX, (
            f"{method.path}: {len(exc.details() or '')} characters"
        )
        return exc.code()
    return grpc.StatusCode.OK


def decodes(method: Method, payload: bytes) -> bool:
    """Whether the bytes are the method's request message, by the protobuf runtime the server decodes with."""
    try:
        message_factory.GetMessageClass(method.descriptor.input_type).FromString(payload)
    except DecodeError:
        return False
    return True


def _hostile_value(field: FieldDescriptor) -> st.SearchStrategy[object]:
    if field.type == FieldDescriptor.TYPE_STRING:
        return wire_text
    if field.type == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=100)
    if field.type in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SFIXED32):
        return st.integers(-(2**31), 2**31 - 1)
    if field.type in (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_SFIXED64):
        return st.integers(-(2**63), 2**63 - 1)
    if field.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    return st.nothing()


@st.composite
def hostile_message(draw: st.DrawFn, method: Method) -> bytes:
    """The method's request with its scalar fields, and those of its nested messages, set to hostile values."""
    message = message_factory.GetMessageClass(method.descriptor.input_type)()

    def fill(target: object, depth: int) -> None:
        for field in target.DESCRIPTOR.fields:  # type: ignore[attr-defined]
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                if depth < 3 and draw(st.booleans()):
                    if field.is_repeated:
                        for _ in range(draw(st.integers(0, 2))):
                            fill(getattr(target, field.name).add(), depth + 1)
                    else:
                        fill(getattr(target, field.name), depth + 1)
                        getattr(target, field.name).SetInParent()
                continue
            if field.type == FieldDescriptor.TYPE_ENUM or not draw(st.booleans()):
                continue
            if field.is_repeated:
                getattr(target, field.name).extend(draw(st.lists(_hostile_value(field), max_size=3)))
            else:
                setattr(target, field.name, draw(_hostile_value(field)))

    fill(message, 0)
    return message.SerializeToString()


# Not protobuf, or protobuf that does not decode as the method's request: bad tags, truncated lengths,
# invalid UTF-8 in string fields, wrong wire types, deep nesting.
garbage = st.one_of(
    st.binary(max_size=200),
    st.sampled_from(
        [
            b"\x0a\x02\xff\xfe",  # field 1 (a string everywhere here) holding invalid UTF-8
            b"\x1a\x03\xed\xa0\x80",  # field 3, a surrogate encoded in UTF-8
            b"\x0a\xff\xff\xff\xff\x0f",  # a length far past the end
            b"\x08\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01",  # an overlong varint
            b"\x0b" * 200,  # start-group tags
            b"\x0a\x02\x0a\x00" * 1 + b"\x0a\x80\x01" + b"\x0a\x7e" * 64,  # nested lengths that do not add up
        ]
    ),
)


@HOSTILE
@given(data=st.data())
async def test_garbage_bytes_are_invalid_argument(
    channel: grpc.aio.Channel, methods: list[Method], data: st.DataObject
) -> None:
    """Bytes that are not the method's request are INVALID_ARGUMENT; bytes that happen to decode are a request
    like any other, answered without a server fault."""
    method = data.draw(st.sampled_from(methods))
    payload = data.draw(garbage)
    code = await call(channel, method, payload)
    if not decodes(method, payload):
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (method.path, payload, code)


@HOSTILE
@given(data=st.data())
async def test_hostile_field_values(
    channel: grpc.aio.Channel, methods: list[Method], data: st.DataObject
) -> None:
    method = data.draw(st.sampled_from(methods))
    await call(channel, method, data.draw(hostile_message(method)))


async def test_a_huge_filter_gets_a_short_answer(channel: grpc.aio.Channel, methods: list[Method]) -> None:
    list_users = next(m for m in methods if m.path.endswith("/ListUsers"))
    request = message_factory.GetMessageClass(list_users.descriptor.input_type)(filter="x" * 100_000)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await channel.unary_unary(list_users.path)(request.SerializeToString(), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert len(info.value.details() or "") < 200


async def test_undecodable_request_is_invalid_argument(
    channel: grpc.aio.Channel, methods: list[Method]
) -> None:
    first_field_is_text = [
        m
        for m in methods
        if (first := m.descriptor.input_type.fields_by_number.get(1)) is not None
        and first.type == FieldDescriptor.TYPE_STRING
    ]
    assert len(first_field_is_text) >= 5
    for method in first_field_is_text:  # field 1 holding invalid UTF-8
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await channel.unary_unary(method.path)(b"\x0a\x02\xff\xfe", timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (method.path, info.value.details())


async def test_unimplemented_methods_answer_quietly(
    channel: grpc.aio.Channel, methods: list[Method], caplog: pytest.LogCaptureFixture
) -> None:
    health_list = next(m for m in methods if m.path == "/grpc.health.v1.Health/List")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await channel.unary_unary(health_list.path)(b"", timeout=10)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
