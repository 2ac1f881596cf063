"""The live stats feed on ``ops:stats``: its shape, its rates, who may read and write it."""

from __future__ import annotations

import logging

from server.appkeys import NODE
from server.ops.stats import RecentErrors, StatsPublisher
from tests.conftest import NAMESPACES, make_settings

FAST = {"stats_interval": 0.1}

KEYS = {
    "node", "time", "uptime", "connections", "users", "channels", "messages_in_per_s",
    "messages_out_per_s", "deliveries_per_s", "publications_per_s", "slow_disconnects",
    "broker", "recent_errors",
}


class FakeClock:
    """A monotonic clock that only moves when told to."""

    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


async def test_admins_receive_every_nodes_stats(make_stagewire, tmp_path):
    stagewire = await make_stagewire(make_settings(tmp_path, server=FAST))
    root = await stagewire.client("root")  # an admin: [auth] admins in the test settings
    await stagewire.client("alice")
    await root.result("subscribe", channel="ops:stats")
    push = await root.recv_push("pub", channel="ops:stats")
    stats = push["data"]
    assert set(stats) == KEYS
    assert "info" not in push  # published by the server, not by a client
    assert stats["node"] == stagewire.app[NODE].id
    assert stats["connections"] == 2 and stats["users"] == 2
    assert stats["channels"] == 1  # ops:stats itself
    assert stats["broker"] == {"backend": "memory", "healthy": True, "reconnects": 0}
    assert stats["slow_disconnects"] == 0


async def test_only_admins_read_and_nobody_writes(make_stagewire, tmp_path):
    stagewire = await make_stagewire(make_settings(tmp_path, server=FAST))
    alice = await stagewire.client("alice")
    root = await stagewire.client("root")
    await alice.assert_error(103, "subscribe", channel="ops:stats")
    await alice.assert_error(103, "history", channel="ops:stats")
    await root.assert_error(103, "publish", channel="ops:stats", data={"node": "forged"})


async def test_history_keeps_the_last_minutes_for_a_new_dashboard(make_stagewire, tmp_path):
    stagewire = await make_stagewire(make_settings(tmp_path, server=FAST))
    root = await stagewire.client("root")
    await root.result("subscribe", channel="ops:stats")
    for _ in range(3):
        await root.recv_push("pub", channel="ops:stats")
    history = await root.result("history", channel="ops:stats", limit=10)
    assert len(history["publications"]) >= 3


async def test_rates_are_per_second_since_the_previous_snapshot(make_stagewire, settings):
    stagewire = await make_stagewire(settings)
    node = stagewire.app[NODE]
    clock = FakeClock()
    publisher = StatsPublisher(node, "ops:stats", RecentErrors(), clock=clock)
    clock.now += 2.0
    node.counters.commands += 10
    node.counters.deliveries += 40
    snapshot = publisher.snapshot()
    assert snapshot["messages_in_per_s"] == 5.0 and snapshot["deliveries_per_s"] == 20.0
    assert snapshot["publications_per_s"] == 0 and snapshot["uptime"] == 2.0
    clock.now += 0.5
    node.counters.publications += 3
    snapshot = publisher.snapshot()  # since the previous snapshot, not since the start
    assert snapshot["deliveries_per_s"] == 0 and snapshot["publications_per_s"] == 6.0
    assert snapshot["uptime"] == 2.5


def test_recent_errors_keep_the_last_warnings_without_tracebacks():
    errors = RecentErrors(size=2)
    logger = logging.getLogger("stagewire.test_stats")
    logger.addHandler(errors)
    try:
        logger.info("not kept")
        logger.warning("first %s", "warning")
        try:
            raise KeyError("x")
        except KeyError:
            logger.exception("it broke")
        logger.error("x" * 1000)
    finally:
        logger.removeHandler(errors)
    first, second = errors.records
    assert first["message"] == "it broke (KeyError)" and first["level"] == "ERROR"
    assert len(second["message"]) == 300
    assert first["logger"] == "stagewire.test_stats"


async def test_stats_show_recent_errors(make_stagewire, tmp_path):
    stagewire = await make_stagewire(make_settings(tmp_path, server=FAST))
    root = await stagewire.client("root")
    await root.result("subscribe", channel="ops:stats")
    logging.getLogger("stagewire.somewhere").error("disk on fire")
    for _ in range(20):
        stats = (await root.recv_push("pub", channel="ops:stats"))["data"]
        if any(e["message"] == "disk on fire" for e in stats["recent_errors"]):
            break
    else:
        raise AssertionError("the error never showed up in the stats")


async def test_no_stats_without_the_namespace(make_stagewire, tmp_path, caplog):
    namespaces = {k: v for k, v in NAMESPACES.items() if k != "ops"}
    stagewire = await make_stagewire(make_settings(tmp_path, server=FAST, namespaces=namespaces))
    assert "stats feed off" in caplog.text
    assert "result" in await (await stagewire.client("alice")).call("ping")


async def test_the_admin_role_in_the_database_also_opens_the_feed(make_stagewire, tmp_path):
    # What `stagewire user set-role NAME admin` stores; [auth] admins is the other way in.
    from models.user import Role, User

    stagewire = await make_stagewire(make_settings(tmp_path, server=FAST))
    token = await stagewire.token("carol")
    await User.filter(username="carol").update(role=Role.ADMIN.value)
    carol = await stagewire.client(token=token)
    assert carol.connect_result["user"]["role"] == "admin"
    await carol.result("subscribe", channel="ops:stats")
    assert (await carol.recv_push("pub", channel="ops:stats"))["data"]["connections"] == 1
