"""``stagewire bench``: lists and runs the scenarios of bench/."""

from __future__ import annotations

import json

from tests.cli.conftest import run_main


def test_bench_lists_the_scenarios(cli) -> None:
    result = cli("bench")
    assert result.code == 0
    assert "fanout" in result.out.splitlines()[0]
    assert "wsraw" not in result.out  # a helper module, not a scenario


def test_an_unknown_scenario_is_refused(cli) -> None:
    result = cli("bench", "nope")
    assert result.code == 2
    assert result.err.startswith("stagewire: unknown bench scenario 'nope' (one of: ")


def test_bench_runs_a_scenario_with_its_arguments(capfd) -> None:
    # The scenario runs in a child process that writes to the real stdout.
    code = run_main(["bench", "fanout", "--subscribers", "3", "--seconds", "0.2"])
    out = capfd.readouterr().out
    assert code == 0, out
    (line,) = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert line["subscribers"] == 3 and line["throughput"]["lost"] == 0
