"""Schemathesis against the server's own OpenAPI document, at the volume make test affords.

``make fuzz-http`` runs the same script with 2000 examples per operation.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


async def test_no_500_and_every_answer_as_documented():
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.fuzz_http", "--max-examples", "20", "--seed", "1",
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(proc.communicate(), 240)
    except asyncio.TimeoutError:
        proc.kill()
        raise
    text = output.decode(errors="replace")
    assert proc.returncode == 0, text[-6000:]
    assert "server API: exit 0; accounts and rooms: exit 0; server alive: True; tracebacks in its log: 0" in text
