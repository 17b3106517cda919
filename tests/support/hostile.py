"""Hostile input for the service's own tests: generators of what an attacker (or a broken client) sends, and a
meter of how long the event loop stalls while it is served."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator

from hypothesis import strategies as st

# Characters that broke or fooled the service somewhere: lone surrogates, C0/C1 controls, zero-width and bidi
# format characters, line/paragraph separators, a BOM, noncharacters, compatibility look-alikes (Kelvin sign,
# long s, dotless i, fullwidth letters), a combining accent and an astral character.
NASTY_CHARS = (
    "\ud800",
    "\udfff",
    "\x00",
    "\x1b",
    "\x85",
    "\u200b",
    "\u200d",
    "\u202e",
    "\u2066",
    "\u2028",
    "\u2029",
    "\ufeff",
    "\uffff",
    "\u212a",
    "\u017f",
    "\u0131",
    "\uff27",
    "e\u0301",
    "\U0001f600",
    "\U0010ffff",
)

any_text = st.text(st.characters(exclude_categories=()), max_size=40)  # includes surrogates
nasty_text = st.lists(st.one_of(st.sampled_from(NASTY_CHARS), st.text(max_size=4)), max_size=12).map("".join)
long_text = st.builds(
    lambda ch, n: ch * n, st.sampled_from([" ", "a", "\t", '"', "\\", "\u00e9"]), st.integers(1, 20_000)
)
hostile_text = st.one_of(any_text, nasty_text, long_text)
# What a protobuf string can carry: valid UTF-8 (undecodable bytes are the raw-message fuzzer's part).
wire_text = hostile_text.map(lambda text: text.encode("utf-8", "replace").decode())

hostile_json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=False),
        hostile_text,
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(hostile_text, children, max_size=4)
    ),
    max_leaves=12,
)


def salted(valid: str) -> st.SearchStrategy[str]:
    """A valid value with hostile characters slipped in: what passes a loose check and reaches the database,
    the password hasher or a uniqueness index."""
    return st.builds(
        lambda at, chars: valid[:at] + "".join(chars) + valid[at:],
        st.integers(0, len(valid)),
        st.lists(st.sampled_from(NASTY_CHARS), min_size=1, max_size=3),
    )


def json_text(value: object) -> bytes:
    """JSON as a client may write it: lone surrogates become \\ud800-style escapes (valid JSON text)."""
    return json.dumps(value, ensure_ascii=True).encode()


# JSON documents the standard parser chokes on (recursion, the int-digit limit) or that are not quite JSON.
raw_json_bodies = st.one_of(
    st.integers(1, 100_000).map(lambda depth: b"[" * depth + b"]" * depth),
    st.integers(1, 50_000).map(lambda depth: b'{"a":' * depth + b"1" + b"}" * depth),
    st.integers(1, 60_000).map(lambda digits: b'{"first_name": ' + b"9" * digits + b"}"),
    st.integers(1, 60_000).map(lambda digits: b'{"first_name": 1e' + b"9" * digits + b"}"),
    st.sampled_from([b'{"first_name": NaN}', b'{"a": Infinity}', b'{"a": 1, "a": 2}', b"\xef\xbb\xbf{}"]),
)


class LoopLag:
    """The event loop's longest stall: a ticker sleeps TICK seconds and records how much later it wakes."""

    TICK = 0.002

    def __init__(self) -> None:
        self.worst = 0.0

    async def _tick(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(self.TICK)
            self.worst = max(self.worst, time.perf_counter() - before - self.TICK)

    async def settle(self) -> None:
        """Lets the ticker observe whatever ran until now."""
        await asyncio.sleep(self.TICK * 5)


@contextlib.asynccontextmanager
async def loop_lag() -> AsyncIterator[LoopLag]:
    """A LoopLag ticking in the running loop (the in-process service's) while the block runs."""
    lag = LoopLag()
    task = asyncio.create_task(lag._tick())
    try:
        yield lag
    finally:
        task.cancel()
