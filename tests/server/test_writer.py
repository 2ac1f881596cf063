"""The writer: coalescing into one frame per tick, and the byte bound."""

from __future__ import annotations

import asyncio
import gc
import socket
import tracemalloc

import pytest

from server.writer import (
    ABORT_INTERVAL, ABORTS_PER_BATCH, FLUSH_BUDGET, FLUSH_CHUNK, RECHECK_CHUNK, RECHECK_DELAY, SHARE_FROM,
    FlushScheduler, Writer, frame_header, limit_unsent,
)


class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        # The buffers of each writelines call, as given.
        self.lines: list[tuple[bytes, ...]] = []
        self.buffered = 0
        self.closing = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def writelines(self, buffers) -> None:
        self.lines.append(tuple(buffers))
        self.writes.append(b"".join(buffers))

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def is_closing(self) -> bool:
        return self.closing


class Logged(FakeTransport):
    """Appends its name to a shared log at each write."""

    def __init__(self, name: str, log: list[str]) -> None:
        super().__init__()
        self.name, self.log = name, log

    def write(self, data: bytes) -> None:
        self.log.append(self.name)
        super().write(data)

    def writelines(self, buffers) -> None:
        self.log.append(self.name)
        super().writelines(buffers)


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
    return make_on(FlushScheduler(asyncio.get_running_loop(), delay), limit, binary)


def make_on(scheduler: FlushScheduler, limit: int = 1000, binary: bool = False):
    transport = FakeTransport()
    overflows: list[int] = []
    writer = Writer(transport, scheduler, binary=binary, limit=limit, on_overflow=lambda: overflows.append(1))
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


async def test_large_payloads_are_written_by_reference_not_copied_per_subscriber():
    # Two subscribers of one publication: each transport gets the frame header and
    # the one encoded payload itself, so neither holds a copy of it.
    payload = b'{"type":"pub","data":"' + b"x" * 16000 + b'"}'
    (a, ta, _), (b, tb, _) = make(limit=1 << 20), make(limit=1 << 20)
    a.enqueue(payload)
    b.enqueue(payload)
    await next_tick()
    for transport in (ta, tb):
        assert len(transport.writes) == 1 and len(transport.lines) == 1
        header, body = transport.lines[0]
        assert body is payload
        assert parse_frame(transport.writes[0]) == (0x1, payload)


async def test_several_large_messages_share_one_frame_with_their_separators():
    writer, transport, _ = make(limit=1 << 20)
    first, second = b"1" * SHARE_FROM, b"2" * SHARE_FROM
    writer.enqueue(first)
    writer.enqueue(second)
    await next_tick()
    (buffers,) = transport.lines
    assert buffers[1] is first and buffers[3] is second
    assert parse_frame(transport.writes[0]) == (0x1, first + b"\n" + second)


async def test_small_messages_are_still_copied_into_one_write():
    writer, transport, _ = make(limit=1 << 20)
    writer.enqueue(b"x" * (SHARE_FROM - 1))
    await next_tick()
    assert transport.lines == [] and len(transport.writes) == 1


async def test_a_backed_up_transport_is_given_nothing_more_until_it_drains():
    writer, transport, overflows = make(limit=100_000)
    transport.buffered = 10  # the peer has not taken the last write yet
    writer.enqueue(b"a" * 2000)
    await next_tick()
    writer.enqueue(b"b" * 2000)
    await asyncio.sleep(RECHECK_DELAY * 3)
    assert transport.writes == [] and writer.buffered == 4010 and overflows == []
    transport.buffered = 0  # drained: what waited goes out as one frame
    deadline = asyncio.get_running_loop().time() + 2
    while not transport.writes and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(RECHECK_DELAY)
    assert [parse_frame(w)[1] for w in transport.writes] == [b"a" * 2000 + b"\n" + b"b" * 2000]


async def test_a_held_writer_still_overflows_at_its_bound():
    writer, transport, overflows = make(limit=10_000)
    transport.buffered = 5_000
    writer.enqueue(b"a" * 4_000)
    await next_tick()
    assert overflows == []
    transport.buffered = 7_000  # the peer fell further behind
    deadline = asyncio.get_running_loop().time() + 2
    while not overflows and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(RECHECK_DELAY)
    assert overflows == [1] and transport.writes == []


async def test_flush_now_writes_even_behind_a_backlog():
    # The last message of a closing connection (disconnect push) is not held.
    writer, transport, _ = make()
    transport.buffered = 10
    writer.enqueue(b"bye")
    writer.flush(now=True)
    assert [parse_frame(w)[1] for w in transport.writes] == [b"bye"]


def test_peers_that_stop_reading_cost_neither_copies_nor_kernel_megabytes():
    """On real sockets (uvloop, as served): 20 peers that never read, 40 publications of 16 KB.

    The kernel takes about ``limit_unsent`` of each (not megabytes, as loopback
    would by default); the rest waits in the writers as references to the one
    payload: far less memory than one copy per peer, and no object per flush.
    """
    uvloop = pytest.importorskip("uvloop")
    peers, rounds, size, unsent = 20, 40, 16_000, 65_536

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        accepted: list[asyncio.Transport] = []

        class Accept(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                accepted.append(transport)  # type: ignore[arg-type]

        server = await loop.create_server(Accept, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        clients = []
        for _ in range(peers):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            await loop.sock_connect(sock, ("127.0.0.1", port))
            clients.append(sock)  # never read
        while len(accepted) < peers:
            await asyncio.sleep(0.01)
        try:
            flusher = FlushScheduler(loop)
            overflows: list[int] = []
            writers = []
            for transport in accepted:
                limit_unsent(transport, unsent)
                writers.append(Writer(transport, flusher, binary=False, limit=1 << 20,
                                      on_overflow=lambda: overflows.append(1)))
            payload = b"x" * size
            gc.collect()
            objects = len(gc.get_objects())
            tracemalloc.start()
            try:
                for _ in range(rounds):
                    for writer in writers:
                        writer.enqueue(payload)
                    await asyncio.sleep(0.005)
                allocated = tracemalloc.get_traced_memory()[0]
            finally:
                tracemalloc.stop()
            assert overflows == []
            for writer in writers:
                # What the kernel took: the unsent limit, the peer's small window and one frame.
                assert rounds * size - writer.buffered < unsent + 64 * 1024
            assert allocated < peers * rounds * size / 20, "pending data must reference the payload, not copy it"
            assert len(gc.get_objects()) - objects < peers * rounds // 4, "a backed-up peer must not cost objects per flush"
        finally:
            for transport in accepted:
                transport.abort()
            for sock in clients:
                sock.close()
            server.close()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(scenario())


async def test_a_reply_is_written_before_the_fan_out_of_the_same_flush():
    scheduler = FlushScheduler(asyncio.get_running_loop())
    order: list[str] = []
    writers = {name: Writer(Logged(name, order), scheduler, binary=False, limit=1000, on_overflow=lambda: None)
               for name in ("sub1", "sub2", "publisher", "both")}
    writers["sub1"].enqueue(b'{"pub":1}')
    writers["sub2"].enqueue(b'{"pub":1}')
    writers["both"].enqueue(b'{"pub":1}')
    writers["publisher"].enqueue_first(b'{"id":1,"result":{}}')
    writers["both"].enqueue_first(b'{"id":2,"result":{}}')  # already marked: keeps its place, written once
    await next_tick()
    assert order == ["publisher", "sub1", "sub2", "both"]


class Member:
    def __init__(self, writer: Writer) -> None:
        self.writer = writer


async def test_a_fan_out_group_is_flushed_once_per_tick_as_one_frame_per_writer():
    scheduler = FlushScheduler(asyncio.get_running_loop())
    pairs = [make_on(scheduler) for _ in range(3)]
    group = {Member(writer): writer.append for writer, _, _ in pairs}
    for payload in (b'{"n":1}', b'{"n":2}'):
        for append in group.values():
            append(payload)
        scheduler.mark_group(group)
    await next_tick()
    for _, transport, _ in pairs:
        assert [parse_frame(w)[1] for w in transport.writes] == [b'{"n":1}\n{"n":2}']


async def test_what_a_group_appended_counts_against_the_bound_at_the_flush():
    scheduler = FlushScheduler(asyncio.get_running_loop())
    writer, transport, overflows = make_on(scheduler, limit=100)
    group = {Member(writer): writer.append}
    for _ in range(3):
        writer.append(b"x" * 40)
    scheduler.mark_group(group)
    await next_tick()
    assert overflows == [1] and transport.writes == []


async def test_a_held_writer_in_a_busy_group_waits_for_its_recheck_and_then_writes_once():
    scheduler = FlushScheduler(asyncio.get_running_loop())
    writer, transport, overflows = make_on(scheduler, limit=100_000)
    group = {Member(writer): writer.append}
    transport.buffered = 10
    for i in range(5):  # a publication per tick while the peer is behind
        writer.append(b"%d" % i)
        scheduler.mark_group(group)
        await next_tick()
    assert transport.writes == [] and writer.buffered == 15
    transport.buffered = 0
    deadline = asyncio.get_running_loop().time() + 2
    while not transport.writes and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(RECHECK_DELAY)
    await asyncio.sleep(RECHECK_DELAY * 2)
    assert [parse_frame(w)[1] for w in transport.writes] == [b"0\n1\n2\n3\n4"] and overflows == []


async def test_slow_clients_cut_off_together_are_aborted_a_batch_at_a_time_spread_in_time():
    loop = asyncio.get_running_loop()
    scheduler = FlushScheduler(loop)
    aborted_at: list[float] = []

    class Abortable(FakeTransport):
        aborted = False

        def abort(self) -> None:
            self.aborted = True
            aborted_at.append(loop.time())

    pairs = [(Writer(t, scheduler, binary=False, limit=100, on_overflow=lambda: None), t)
             for t in (Abortable() for _ in range(2 * ABORTS_PER_BATCH + 1))]
    for writer, _ in pairs:
        writer.enqueue(b"x" * 50)
        writer.cut_off()
        assert writer.closed and writer.buffered == 0, "its own queue is dropped at once"
    await next_tick()
    assert sum(t.aborted for _, t in pairs) == ABORTS_PER_BATCH, "the first batch goes at once"
    deadline = loop.time() + 2
    while len(aborted_at) < len(pairs) and loop.time() < deadline:
        await asyncio.sleep(ABORT_INTERVAL / 2)
    batches = [aborted_at[i:i + ABORTS_PER_BATCH] for i in range(0, len(aborted_at), ABORTS_PER_BATCH)]
    assert [len(b) for b in batches] == [ABORTS_PER_BATCH, ABORTS_PER_BATCH, 1]
    assert all(later[0] - earlier[-1] >= ABORT_INTERVAL * 0.9 for earlier, later in zip(batches, batches[1:])), \
        "batches are apart in time"
    assert all(t.writes == [] for _, t in pairs)



async def test_a_held_writer_counts_only_what_came_since_its_last_recheck():
    writer, transport, overflows = make(limit=10_000)
    transport.buffered = 10
    counted: list[int] = []

    class Counting(bytes):
        def __len__(self) -> int:
            counted.append(1)
            return bytes.__len__(self)

    for _ in range(50):
        writer.append(Counting(b"x" * 100))
    writer.flush()
    assert writer._holding and len(counted) == 50
    counted.clear()
    writer.append(Counting(b"y" * 100))
    writer._holding = False  # the recheck's flush
    writer.flush()
    assert len(counted) == 1 and overflows == []
    for _ in range(50):  # past the bound, counted as they come
        writer.append(Counting(b"z" * 100))
    writer._holding = False
    writer.flush()
    assert overflows == [1]


def logged_group(scheduler: FlushScheduler, name: str, size: int, log: list[str]):
    transports = [Logged(name, log) for _ in range(size)]
    writers = [Writer(t, scheduler, binary=False, limit=10_000_000, on_overflow=lambda: None) for t in transports]
    return {Member(w): w.append for w in writers}, transports


async def test_a_large_fan_out_is_written_a_budget_per_loop_iteration_with_smaller_groups_first():
    scheduler = FlushScheduler(asyncio.get_running_loop())
    log: list[str] = []
    big, big_transports = logged_group(scheduler, "big", 200, log)
    small, small_transports = logged_group(scheduler, "small", FLUSH_CHUNK * 3, log)  # split too, if it came last
    payload = b"p" * 16_000  # 3.2 MB to the big group in all
    for append in big.values():
        append(payload)
    scheduler.mark_group(big)
    await next_tick()
    first = log.count("big")
    assert 0 < first < 200, "a budget's worth in the first iteration, not the whole fan-out"
    assert first * len(payload) <= FLUSH_BUDGET + FLUSH_CHUNK * len(payload)
    log.clear()
    # Another publication to the big group (the writers still waiting take it in the same frame),
    # then one to another channel: written in the next iteration, ahead of the big group and the rest.
    for append in big.values():
        append(b"q" * 16_000)
    scheduler.mark_group(big)
    for append in small.values():
        append(b'{"pub":"small"}')
    scheduler.mark_group(small)
    await next_tick()
    assert log[:len(small)] == ["small"] * len(small)
    for _ in range(200):
        if all(t.writes for t in big_transports) and log.count("big") >= 400 - first:
            break
        await next_tick()
    assert all(len(t.writes) == 1 for t in small_transports)
    frames = [[parse_frame(w)[1] for w in t.writes] for t in big_transports]
    # The first ones written alone, then once more with the second; the others once, with both, in order.
    assert sum(f == [payload, b"q" * 16_000] for f in frames) == first
    assert sum(f == [payload + b"\n" + b"q" * 16_000] for f in frames) == 200 - first


async def test_small_fan_outs_are_not_split():
    scheduler = FlushScheduler(asyncio.get_running_loop())
    log: list[str] = []
    group, transports = logged_group(scheduler, "sub", 5000, log)
    push = b'{"type":"pub","channel":"news","offset":1,"data":{"text":"' + b"x" * 140 + b'"}}'
    assert len(push) >= 200 and len(push) * len(group) <= FLUSH_BUDGET
    for append in group.values():
        append(push)
    scheduler.mark_group(group)
    await next_tick()
    assert all(len(t.writes) == 1 for t in transports)


async def test_held_writers_are_looked_at_a_chunk_per_loop_iteration():
    scheduler = FlushScheduler(asyncio.get_running_loop())
    pairs = [make_on(scheduler, limit=100_000) for _ in range(RECHECK_CHUNK * 2 + 1)]
    for writer, transport, _ in pairs:
        transport.buffered = 10
        writer.enqueue(b"x")
    await next_tick()
    assert all(writer._holding for writer, _, _ in pairs)
    for _, transport, _ in pairs:
        transport.buffered = 0
    written: list[int] = []
    deadline = asyncio.get_running_loop().time() + 2
    while sum(written) < len(pairs) and asyncio.get_running_loop().time() < deadline:
        await next_tick()
        done = sum(bool(t.writes) for _, t, _ in pairs) - sum(written)
        if done or written:
            written.append(done)
    assert written[:3] == [RECHECK_CHUNK, RECHECK_CHUNK, 1]
    assert all(len(t.writes) == 1 for _, t, _ in pairs)
