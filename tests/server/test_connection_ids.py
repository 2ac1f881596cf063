"""Connection ids: random, 16 hex digits, made in batches, never repeated by a forked worker."""

from __future__ import annotations

import os
import string

from server.connection import ID_BATCH, new_id


def test_ids_are_16_hex_digits_and_distinct_across_batches():
    ids = [new_id() for _ in range(3 * ID_BATCH + 1)]
    assert all(len(i) == 16 and set(i) <= set(string.hexdigits.lower()) for i in ids)
    assert len(set(ids)) == len(ids)


def test_a_forked_worker_does_not_take_the_ids_its_parent_has_in_store():
    new_id()  # the parent now holds a batch
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the worker
        try:
            os.write(write, new_id().encode())
        finally:
            os._exit(0)
    os.close(write)
    try:
        child = os.read(read, 64).decode()
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    assert len(child) == 16 and child != new_id()
