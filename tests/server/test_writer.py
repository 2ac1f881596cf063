"""The writer: coalescing into one frame per tick, and the byte bound."""

from __future__ import annotations

import asyncio

from server.writer import FlushScheduler, Writer, frame_header


class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.buffered = 0
        self.closing = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def is_closing(self) -> bool:
        return self.closing


def parse_frame(data: bytes) -> tuple[int, bytes]:
    opcode = data[0] & 0x0F
    assert data[0] & 0x80, "FIN must be set"
    length = data[1]
    offset = 2
    if length == 126:
        length = int.from_bytes(data[2:4], "big")
        offset = 4
    elif length == 127:
        length = int.from_bytes(data[2:10], "big")
        offset = 10
    payload = data[offset:]
    assert len(payload) == length
    return opcode, payload


def make(limit: int = 1000, binary: bool = False, delay: float = 0.0):
    transport = FakeTransport()
    overflows: list[int] = []
    writer = Writer(
        transport,
        FlushScheduler(asyncio.get_running_loop(), delay),
        binary=binary,
        limit=limit,
        on_overflow=lambda: overflows.append(1),
    )
    return writer, transport, overflows


async def next_tick() -> None:
    await asyncio.sleep(0)


async def test_messages_queued_in_one_tick_go_out_as_one_write_and_one_frame():
    writer, transport, _ = make()
    for payload in (b'{"a":1}', b'{"b":2}', b'{"c":3}'):
        writer.enqueue(payload)
    assert transport.writes == []
    await next_tick()
    assert len(transport.writes) == 1
    opcode, payload = parse_frame(transport.writes[0])
    assert opcode == 0x1
    assert payload == b'{"a":1}\n{"b":2}\n{"c":3}'


async def test_binary_messages_are_concatenated_in_a_binary_frame():
    writer, transport, _ = make(binary=True)
    writer.enqueue(b"\x81\xa1a\x01")
    writer.enqueue(b"\x80")
    await next_tick()
    opcode, payload = parse_frame(transport.writes[0])
    assert opcode == 0x2 and payload == b"\x81\xa1a\x01\x80"


async def test_queue_over_the_byte_limit_overflows_and_is_dropped():
    writer, transport, overflows = make(limit=100)
    writer.enqueue(b"x" * 60)
    writer.enqueue(b"y" * 60)
    assert overflows == [1]
    await next_tick()
    assert transport.writes == []


async def test_full_transport_buffer_counts_against_the_limit():
    writer, transport, overflows = make(limit=100)
    transport.buffered = 90
    writer.enqueue(b"z" * 20)
    await next_tick()
    assert overflows == [1] and transport.writes == []


async def test_closing_transport_discards_quietly():
    writer, transport, overflows = make()
    writer.enqueue(b"late")
    transport.closing = True
    await next_tick()
    assert transport.writes == [] and overflows == [] and writer.closed


def test_frame_header_lengths():
    assert frame_header(1, 5) == b"\x81\x05"
    assert frame_header(2, 300) == b"\x82\x7e\x01\x2c"
    assert frame_header(1, 70000)[:2] == b"\x81\x7f" and len(frame_header(1, 70000)) == 10


async def test_write_delay_gathers_messages_from_several_ticks_into_one_write():
    writer, transport, _ = make(delay=0.05)
    writer.enqueue(b"1")
    await next_tick()
    writer.enqueue(b"2")
    await next_tick()
    assert transport.writes == []
    deadline = asyncio.get_running_loop().time() + 2
    while not transport.writes and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)
    assert [parse_frame(w)[1] for w in transport.writes] == [b"1\n2"]
