"""Per-connection outbound buffers, coalesced into one write per event-loop tick.

Fan-out must never await a peer. A publication is encoded once, and its bytes
are appended to each subscriber's :class:`Writer`. Once per loop tick the
:class:`FlushScheduler` turns each writer's pending messages into a single
WebSocket frame and hands it to the transport with one ``write`` call.

Each writer is bounded in bytes: its pending messages plus what the transport
still holds may not exceed ``limit`` (checked as messages are queued and again
before every write), so the total is bounded by about twice ``limit``. When a
client cannot keep up, ``on_overflow`` is called and that client alone is
disconnected; nobody else waits for it.

Large messages are written by reference: the frame header and the one encoded
payload go to the transport as separate buffers (``writelines``), so a
publication is never copied per subscriber. With uvloop the transport keeps
those buffers as they are until the socket takes them, so a thousand backed-up
subscribers hold references to one payload, not a thousand copies; ``limit``
counts the bytes each of them would still be sent. Small messages are copied
into one frame instead, which is cheaper than handing over several buffers.

The kernel holds a socket's unsent bytes outside that bound, and on loopback
it takes megabytes per socket. :func:`limit_unsent` caps them
(``TCP_NOTSENT_LOWAT``), so that a peer that stops reading backs up into the
writer's bound after a few publications, instead of costing a copy into the
kernel of every publication until its socket buffer is full.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import struct
from typing import Callable, Collection, Protocol, Sequence

OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
_FIN = 0x80


def frame_header(opcode: int, length: int) -> bytes:
    """The header of an unmasked, final, uncompressed server-to-client frame."""
    if length < 126:
        return bytes((_FIN | opcode, length))
    if length < 65536:
        return struct.pack("!BBH", _FIN | opcode, 126, length)
    return struct.pack("!BBQ", _FIN | opcode, 127, length)


#: Linux's TCP_NOTSENT_LOWAT, also where the socket module does not name it.
_TCP_NOTSENT_LOWAT = getattr(socket, "TCP_NOTSENT_LOWAT", 25)

#: Payloads of at least this many bytes (on average, when several go in one frame)
#: are written by reference; smaller ones are copied behind their header.
SHARE_FROM = 1024

Framing = Callable[[list[bytes]], Sequence[bytes]]
"""Another protocol shell's framing: the pending messages, as the buffers of one write."""


def limit_unsent(transport: asyncio.BaseTransport, limit: int) -> None:
    """Let the kernel hold at most about ``limit`` unsent bytes of this connection.

    Once that much waits in the socket, it stops taking more (it still sends
    whatever the peer's window allows), and the rest stays in the transport,
    where the writer's ``limit`` counts it. 0 leaves the kernel's default
    (up to ``net.ipv4.tcp_wmem``). Transports without a TCP socket are left alone.
    """
    if limit <= 0:
        return
    sock = transport.get_extra_info("socket")
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, _TCP_NOTSENT_LOWAT, limit)
    except OSError:
        pass  # a platform without the option: the kernel's buffer stays beside the bound


def write_buffers(transport: asyncio.WriteTransport, buffers: Sequence[bytes]) -> None:
    """One write of ``buffers``: by reference when they are large, else joined into one copy.

    Large means at least ``SHARE_FROM / 2`` bytes a buffer on average: a
    framing interleaves small headers with the messages.
    """
    if len(buffers) == 1:
        transport.write(buffers[0])
    elif sum(map(len, buffers)) >= SHARE_FROM * (len(buffers) >> 1):
        transport.writelines(buffers)
    else:
        transport.write(b"".join(buffers))


class HasWriter(Protocol):
    """A member of a fan-out group: a connection, with its writer."""

    @property
    def writer(self) -> Writer: ...


#: Bytes one flush hands to transports at most, give or take a chunk of writers
#: (each a frame): the writers past it wait for the next loop iteration, after
#: the writers marked meanwhile. A fan-out of large payloads to a thousand
#: sockets costs the kernel tens of milliseconds; in slices, the other clients'
#: reads and writes go in between.
FLUSH_BUDGET = 1 << 20
#: Writers flushed between two looks at the budget.
FLUSH_CHUNK = 16

#: Seconds between two looks at the writers whose transport was backed up.
RECHECK_DELAY = 0.01
#: Held writers looked at in one loop iteration.
RECHECK_CHUNK = 256

#: Slow clients' transports aborted together at most (each teardown costs tens of µs) ...
ABORTS_PER_BATCH = 10
#: ... and seconds between two such batches: the teardown of a thousand is spread over 0.1 s.
ABORT_INTERVAL = 0.001


def close_frame(code: int, reason: bytes) -> bytes:
    """A server's close frame: ``code`` and ``reason`` (at most 123 bytes, as RFC 6455 allows)."""
    payload = struct.pack("!H", code) + reason[:123]
    return frame_header(OP_CLOSE, len(payload)) + payload


class FlushScheduler:
    """Flushes every writer that has pending data, once per loop tick.

    With a ``delay`` (``[client] write_delay``), the flush waits that long
    after the first message is queued, so that publications arriving one by one
    (from Redis, say, one per round trip) still share a write. It trades that
    much latency for fewer, larger writes.

    A writer whose transport still holds data (its peer is behind) keeps its
    messages instead of writing them, and is :meth:`held`: flushed again every
    ``RECHECK_DELAY`` until the transport has drained or the writer overflows.

    Writers marked with :meth:`mark_first` (a command's reply) are flushed
    before the others of the same flush: a publisher waiting for its reply
    does not wait behind the writes of a fan-out to thousands of subscribers,
    and can send its next publication while they are being written.

    Fan-out does not mark its writers one by one: :meth:`mark_group` takes the
    subscribers a publication was appended to (a channel's subscribers of one
    encoding), once per flush however many publications they got, and the
    flush walks them.

    One flush writes at most :data:`FLUSH_BUDGET` bytes: the writers past it
    wait for the next loop iteration, so that a fan-out of large payloads to
    a thousand sockets (tens of milliseconds of kernel copies) does not hold
    up every other client's reads and writes. Groups go smallest first, and
    the waiting writers after the ones marked meanwhile, at least a chunk of
    them each iteration.

    Transports cut off for being slow are aborted :data:`ABORTS_PER_BATCH` at a
    time, a batch every :data:`ABORT_INTERVAL` (:meth:`abort_soon`): a flood
    that overflows a thousand slow clients at once would otherwise tear all of
    them down together, and every other client would wait for that. Spread in
    time, not only over loop iterations, the teardowns leave the loop free
    between two batches for everyone else's reads and writes.
    """

    __slots__ = ("_loop", "_first", "_dirty", "_groups", "_rest", "_scheduled", "_delay", "_held",
                 "_recheck_scheduled", "_aborts")

    def __init__(self, loop: asyncio.AbstractEventLoop, delay: float = 0.0) -> None:
        self._loop = loop
        self._first: list[Writer] = []
        self._dirty: list[Writer] = []
        self._groups: dict[int, Collection[HasWriter]] = {}  # by id: each group once per flush
        self._rest: collections.deque[Writer] = collections.deque()  # left by a flush that wrote its budget
        self._scheduled = False
        self._delay = delay
        self._held: list[Writer] = []
        self._recheck_scheduled = False
        self._aborts: collections.deque[asyncio.WriteTransport] = collections.deque()

    def mark(self, writer: Writer) -> None:
        self._dirty.append(writer)
        if not self._scheduled:
            self._schedule()

    def mark_group(self, group: Collection[HasWriter]) -> None:
        """Flush the writers of ``group`` (appended to through their ``append``) with the next flush.

        ``group`` is walked at flush time, as it is then: a member that leaves
        it before must be flushed on its own (:meth:`Writer.schedule`).
        """
        key = id(group)
        if key not in self._groups:
            self._groups[key] = group
            if not self._scheduled:
                self._schedule()

    def mark_first(self, writer: Writer) -> None:
        """Like :meth:`mark`, with ``writer`` flushed ahead of the writers marked with ``mark``."""
        self._first.append(writer)
        if not self._scheduled:
            self._schedule()

    def _schedule(self) -> None:
        self._scheduled = True
        if self._delay > 0:
            self._loop.call_later(self._delay, self._run)
        else:
            self._loop.call_soon(self._run)

    def _run(self) -> None:
        self._scheduled = False
        budget = FLUSH_BUDGET
        waiting = len(self._rest)  # since an earlier flush
        if self._first:
            first, self._first = self._first, []
            for writer in first:
                budget -= writer.flush()
        if self._dirty:
            dirty, self._dirty = self._dirty, []
            for start in range(0, len(dirty), FLUSH_CHUNK):
                if budget <= 0:
                    self._rest.extend(dirty[start:])  # marked already, and in no other list
                    break
                for writer in dirty[start:start + FLUSH_CHUNK]:
                    budget -= writer.flush()
        if self._groups:
            groups, self._groups = self._groups, {}
            large = []
            for group in groups.values():
                if len(group) > FLUSH_CHUNK:
                    large.append(group)  # after the small ones, which the budget never splits
                    continue
                # A copy: a flush may overflow, and the connection leave the group.
                for member in list(group):
                    budget -= member.writer.flush()
            if len(large) > 1:
                large.sort(key=len)  # the smaller first: the budget splits the largest
            for group in large:
                members = list(group)
                for start in range(0, len(members), FLUSH_CHUNK):
                    if budget <= 0:
                        self._defer(members[start:])
                        break
                    for member in members[start:start + FLUSH_CHUNK]:
                        budget -= member.writer.flush()
        if self._rest:
            # What earlier flushes left: at least a chunk of it, however much
            # the new marks wrote, so that it always moves on; then as much as
            # the budget leaves.
            rest = self._rest
            for _ in range(min(waiting, FLUSH_CHUNK)):
                budget -= rest.popleft().flush()
            while rest and budget > 0:
                budget -= rest.popleft().flush()
            if rest and not self._scheduled:
                self._scheduled = True
                self._loop.call_soon(self._run)

    def _defer(self, members: list[HasWriter]) -> None:
        """Leave the writers of ``members`` to the next loop iteration: this one has written its budget.

        A writer already marked is in a list already (or held); the others are
        marked while they wait, so that each waits once, behind those already waiting.
        """
        rest = self._rest
        for member in members:
            writer = member.writer
            if not writer._marked:
                writer._marked = True
                rest.append(writer)

    def hold(self, writer: Writer) -> None:
        """Flush ``writer`` again after ``RECHECK_DELAY``: its transport is backed up."""
        self._held.append(writer)
        if not self._recheck_scheduled:
            self._recheck_scheduled = True
            self._loop.call_later(RECHECK_DELAY, self._recheck)

    def abort_soon(self, transport: asyncio.WriteTransport) -> None:
        """Abort ``transport`` soon: ``ABORTS_PER_BATCH`` at a time, a batch every ``ABORT_INTERVAL``."""
        self._aborts.append(transport)
        if len(self._aborts) == 1:
            self._loop.call_soon(self._abort_some)

    def _abort_some(self) -> None:
        aborts = self._aborts
        for _ in range(min(ABORTS_PER_BATCH, len(aborts))):
            aborts.popleft().abort()
        if aborts:
            self._loop.call_later(ABORT_INTERVAL, self._abort_some)

    def _recheck(self) -> None:
        self._recheck_scheduled = False
        held, self._held = self._held, []
        self._recheck_some(held, 0)

    def _recheck_some(self, held: list[Writer], start: int) -> None:
        """Look at ``RECHECK_CHUNK`` of the held writers, from ``start``; the rest in the next iteration.

        A thousand backed-up clients cost a millisecond or two to look at: in
        slices, nobody else waits for all of them.
        """
        end = start + RECHECK_CHUNK
        for writer in held[start:end]:
            writer._holding = False
            writer.flush()
        if end < len(held):
            self._loop.call_soon(self._recheck_some, held, end)


#: The headers of frames shorter than 126 bytes, by opcode and length: no bytes made per write.
_SHORT = {op: [frame_header(op, n) for n in range(126)] for op in (OP_TEXT, OP_BINARY)}
_MEDIUM = struct.Struct("!BBH").pack


class Writer:
    """The outbound queue of one WebSocket connection.

    ``enqueue`` runs once per subscriber per publication, and ``flush`` once per
    connection per tick: both keep to a few attribute reads and no call they
    can avoid. Each flush builds the connection's one frame and writes it:
    copied into one ``bytes`` when its messages are small, as a header and
    references to the shared payloads when they are large.
    """

    __slots__ = (
        "_transport",
        "_scheduler",
        "_pending",
        "_pending_bytes",
        "_marked",
        "_holding",
        "_counted",
        "_counted_bytes",
        "append",
        "_limit",
        "_opcode",
        "_short",
        "_separator",
        "_on_overflow",
        "_framing",
        "closed",
    )

    def __init__(
        self,
        transport: asyncio.Transport,
        scheduler: FlushScheduler,
        *,
        binary: bool,
        limit: int,
        on_overflow: Callable[[], None],
        framing: Framing | None = None,
    ) -> None:
        self._transport = transport
        self._scheduler = scheduler
        # Only ever cleared, never replaced: ``append`` is bound to it.
        self._pending: list[bytes] = []
        self._pending_bytes = 0  # of what enqueue queued; a flush counts everything
        self._marked = False
        self._holding = False
        # While held: how many of the pending messages were counted, and their bytes
        # (a recheck counts only what came since).
        self._counted = 0
        self._counted_bytes = 0
        #: Fan-out's way in: queues one payload without marking the writer, at
        #: the cost of one C call (the caller has the writer flushed with
        #: ``FlushScheduler.mark_group``). Checked against the bound at flush.
        self.append: Callable[[bytes], None] = self._pending.append
        self._limit = limit
        self._opcode = OP_BINARY if binary else OP_TEXT
        self._short = _SHORT[self._opcode]
        # JSON messages in one frame are separated by newlines; msgpack needs nothing.
        self._separator = b"" if binary else b"\n"
        self._on_overflow = on_overflow
        # Another protocol shell's framing of the pending messages (one Pusher
        # frame per message, HTTP chunks of SSE); None: one WebSocket frame.
        self._framing = framing
        self.closed = False

    @property
    def buffered(self) -> int:
        """Bytes queued here and not yet taken by the peer."""
        return sum(map(len, self._pending)) + self._transport.get_write_buffer_size()

    def enqueue(self, payload: bytes) -> None:
        """Queue one encoded message; it goes out with the next flush."""
        if self.closed:
            return
        self._pending.append(payload)
        size = self._pending_bytes + len(payload)
        self._pending_bytes = size
        if size > self._limit:
            self._overflow()
        elif not self._marked:
            self._marked = True
            self._scheduler.mark(self)

    def enqueue_first(self, payload: bytes) -> None:
        """Queue one message, flushed ahead of the plain :meth:`enqueue` writers (a reply).

        A writer already marked keeps its place: a writer is in one of the
        scheduler's lists at a time, so it is never flushed (or held) twice.
        """
        if not self._marked and not self.closed:
            self._marked = True
            self._scheduler.mark_first(self)
        self.enqueue(payload)

    def schedule(self) -> None:
        """Flush with the next flush if anything is pending (it left a group it was appended to through)."""
        if self._pending and not self._marked and not self.closed:
            self._marked = True
            self._scheduler.mark(self)

    def flush(self, trailer: bytes = b"", now: bool = False) -> int:
        """Write everything pending as one frame, with one ``write`` (or ``writelines``).

        While the transport still holds data that the peer has not taken, the
        messages stay here and the writer is held (:meth:`FlushScheduler.hold`)
        unless ``now``: they are references to shared payloads, where the
        transport would keep a write request object per flush, each of them
        long-lived for the garbage collector to scan. The byte bound is checked
        either way.

        ``trailer`` (a close frame) goes out in the same write, after the frame.
        Returns the bytes handed to the transport (0 if none): the scheduler's budget.
        """
        if self._holding and not now:
            return 0  # the recheck flushes it
        self._marked = False
        pending = self._pending
        if not pending:
            return 0
        if self.closed:
            pending.clear()  # appended to by a fan-out before the hub let go of it
            return 0
        transport = self._transport
        if transport.is_closing():
            self.discard()
            self.closed = True
            return 0
        backlog = transport.get_write_buffer_size()
        counted = self._counted
        count = len(pending)
        if counted:
            # Held before: only what was queued since is counted again.
            size = self._counted_bytes + (sum(map(len, pending[counted:])) if count > counted else 0)
        else:
            size = sum(map(len, pending))
        if backlog + size > self._limit:
            self._overflow()
            return 0
        if backlog and not now:
            # Marked while held: enqueue leaves the next flush to the recheck.
            self._marked = self._holding = True
            self._counted = count
            self._counted_bytes = size
            self._scheduler.hold(self)
            return 0
        self._pending_bytes = self._counted = 0
        if self._framing is not None:
            framed = self._framing(pending[:])
            pending.clear()
            write_buffers(transport, [*framed, trailer] if trailer else framed)
            return size
        if size < SHARE_FROM * count:
            payload = pending[0] if count == 1 else self._separator.join(pending)
            pending.clear()
            n = len(payload)
            if n < 126:
                transport.write(self._short[n] + payload + trailer)
            elif n < 65536:
                transport.write(_MEDIUM(0x80 | self._opcode, 126, n) + payload + trailer)
            else:
                transport.write(frame_header(self._opcode, n) + payload + trailer)
            return n
        # Large messages: the header, then the payloads themselves (shared with
        # every other subscriber), in one writelines.
        separator = self._separator
        n = size + len(separator) * (count - 1)
        header = _MEDIUM(0x80 | self._opcode, 126, n) if n < 65536 else frame_header(self._opcode, n)
        if count == 1:
            first = pending[0]
            pending.clear()
            transport.writelines((header, first, trailer) if trailer else (header, first))
            return n
        buffers = [header, pending[0]]
        append = buffers.append
        for payload in pending[1:]:
            if separator:
                append(separator)
            append(payload)
        pending.clear()
        if trailer:
            append(trailer)
        transport.writelines(buffers)
        return n

    def cut_off(self) -> None:
        """Close for good now and drop what is pending; the transport is aborted soon after.

        Nothing more is queued or written from here; the transport, with
        whatever the peer left unread in it, goes within a few loop
        iterations (:meth:`FlushScheduler.abort_soon`).
        """
        self.discard()
        self.closed = True
        self._scheduler.abort_soon(self._transport)

    def discard(self) -> None:
        """Drop everything pending (a slow client will not get it anyway)."""
        self._pending.clear()
        self._pending_bytes = self._counted = 0

    def detach(self) -> None:
        """Close for good and drop what is pending and the overflow callback.

        The callback is usually a method of the writer's owner, which holds the
        writer: dropped, the two are freed by reference counting as soon as the
        owner goes, instead of waiting for the cycle collector. So is
        ``append`` where it is a method of the writer itself (SSE).
        """
        self.discard()
        self.closed = True
        self._on_overflow = _nothing
        self.append = _ignore

    def _overflow(self) -> None:
        self.discard()
        self._on_overflow()


def _nothing() -> None:
    pass


def _ignore(payload: bytes) -> None:
    pass
