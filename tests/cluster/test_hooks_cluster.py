"""Webhooks from two server processes over one Redis: occupancy and membership decided once for the cluster."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter

import pytest

from tests.cluster.conftest import PRESENCE_TTL, channel_name
from tests.hooks.receiver import Receiver

pytestmark = pytest.mark.redis

SECRET = "cluster-webhook-secret"
GRACE = 0.5
TRANSITIONS = ("channel_occupied", "channel_vacated", "member_added", "member_removed")


def hook_env(receiver: Receiver) -> dict[str, str]:
    return {
        "STAGEWIRE_WEBHOOKS__0__URL": receiver.url,
        "STAGEWIRE_WEBHOOKS__0__EVENTS": ",".join((*TRANSITIONS, "subscribe", "unsubscribe")),
        "STAGEWIRE_WEBHOOKS__0__CHANNELS": "team",
        "STAGEWIRE_WEBHOOKS__0__SECRET": SECRET,
        "STAGEWIRE_HOOKS__GRACE": str(GRACE),
        "STAGEWIRE_HOOKS__RETRY_MIN_DELAY": "0.05",
        "STAGEWIRE_HOOKS__RETRY_MAX_DELAY": "0.5",
        "STAGEWIRE_HOOKS__POLL_INTERVAL": "0.2",
        # A dead node's lease on the webhook lapses after 3 x timeout; then the other node sends.
        "STAGEWIRE_HOOKS__TIMEOUT": "1",
    }


@pytest.fixture
async def receiver():
    receiver = await Receiver(SECRET).start()
    yield receiver
    await receiver.stop()


def transitions(receiver: Receiver, channel: str) -> Counter:
    """How many times each transition was decided (distinct event ids: a node that dies between a
    receiver's 2xx and deleting the batch has it sent again, with the same ids)."""
    unique = {e["id"]: e for e in receiver.events if e["channel"] == channel and e["name"] in TRANSITIONS}
    return Counter((e["name"], e.get("user")) for e in unique.values())


async def test_a_user_on_both_nodes_is_added_once_and_removed_once(cluster, receiver):
    a, b = await cluster.pair(env=hook_env(receiver))
    channel = channel_name("hooks")
    alice_a, alice_b = await a.client("alice"), await b.client("alice")
    await asyncio.gather(alice_a.result("subscribe", channel=channel), alice_b.result("subscribe", channel=channel))
    bob = await b.client("bob")
    await bob.result("subscribe", channel=channel)
    await receiver.wait_for(lambda es: sum(e["name"] == "subscribe" for e in es) == 3
                            and sum(e["name"] == "member_added" for e in es) == 2, what="subscribes")

    await alice_a.close()  # alice is still on node B: nothing is reported for her
    await receiver.wait_for(lambda es: sum(e["name"] == "unsubscribe" for e in es) == 1)
    await asyncio.sleep(GRACE + 0.7)
    assert transitions(receiver, channel) == {("channel_occupied", None): 1, ("member_added", "alice"): 1,
                                              ("member_added", "bob"): 1}

    await alice_b.close()  # her last connection anywhere
    await receiver.wait_names("member_removed", user="alice")
    await bob.close()
    await receiver.wait_names("channel_vacated")
    await asyncio.sleep(GRACE + 0.7)  # a second report from the other node would arrive by now
    assert transitions(receiver, channel) == {
        ("channel_occupied", None): 1, ("member_added", "alice"): 1, ("member_added", "bob"): 1,
        ("member_removed", "alice"): 1, ("member_removed", "bob"): 1, ("channel_vacated", None): 1,
    }
    names = [e["name"] for e in receiver.events if e["channel"] == channel]
    assert names.index("channel_occupied") < names.index("channel_vacated")
    assert len({e["id"] for e in receiver.events}) == len(receiver.events)  # one sender for both nodes
    assert all(post["verified"] for post in receiver.posts)


async def test_moving_to_the_other_node_within_the_grace_reports_nothing(cluster, receiver):
    a, b = await cluster.pair(env={**hook_env(receiver), "STAGEWIRE_HOOKS__GRACE": "2"})
    channel = channel_name("move")
    first = await a.client("alice")
    await first.result("subscribe", channel=channel)
    await receiver.wait_names("channel_occupied", "member_added")
    await first.close()
    await receiver.wait_names("unsubscribe")
    second = await b.client("alice")  # a reload that the load balancer sent to the other node
    await second.result("subscribe", channel=channel)
    await receiver.wait_for(lambda es: sum(e["name"] == "subscribe" for e in es) == 2)
    await asyncio.sleep(2.5)  # past the grace
    assert transitions(receiver, channel) == {("channel_occupied", None): 1, ("member_added", "alice"): 1}


async def test_the_users_of_a_node_that_died_are_removed_by_the_other(cluster, receiver):
    a, b = await cluster.pair(env=hook_env(receiver))
    channel = channel_name("death")
    doomed = await a.client("alice")
    await doomed.result("subscribe", channel=channel)
    watcher = await b.client("bob")
    await watcher.result("subscribe", channel=channel)
    await receiver.wait_for(lambda es: sum(e["name"] == "member_added" for e in es) == 2)
    a.send_signal(signal.SIGKILL)  # no goodbye: B finds out when A's liveness runs out
    await a.wait()
    await receiver.wait_names("member_removed", user="alice", timeout=PRESENCE_TTL + GRACE + 3 + 5)
    await watcher.close()
    await receiver.wait_names("channel_vacated", timeout=5)
    await asyncio.sleep(GRACE + 0.5)
    assert transitions(receiver, channel) == {
        ("channel_occupied", None): 1, ("member_added", "alice"): 1, ("member_added", "bob"): 1,
        ("member_removed", "alice"): 1, ("member_removed", "bob"): 1, ("channel_vacated", None): 1,
    }
