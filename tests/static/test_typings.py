"""static/stagewire.d.ts: it declares every export of stagewire.js, and ``tsc --noEmit`` accepts it and its use."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from tests.npm import node_modules

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "static"

USAGE = """
import { Stagewire, StagewireError, DisconnectedError, CallTimeoutError, login, register, refreshToken,
         logout, shouldReconnect, type Publication, type Subscription } from "stagewire";

interface Message { text: string }

async function main(): Promise<void> {
  await register("alice", "correct horse");
  const { token, user } = await login("alice", "correct horse");
  const role: "user" | "admin" = user.role;
  const sw = new Stagewire({ token: async () => (await refreshToken(token)).token, encoding: "msgpack" });
  const off = sw.on("recovery", ({ recovered, channels }) => console.log(recovered, channels["chat:lobby"]));
  sw.on("disconnect", ({ code, reconnect }) => console.log(shouldReconnect(code) === reconnect));
  const sub: Subscription<Message> = sw.subscribe<Message>("chat:lobby", {
    onPublication: (pub: Publication<Message>) => console.log(pub.data.text, pub.offset, pub.recovered),
    onRecovery: (recovered, info) => console.log(recovered, info.epoch),
    since: { offset: 3, epoch: "abc" },
  });
  const info = await sw.connect();
  console.log(info.user.username, info.ping, role, sub.position?.offset);
  const { offset, epoch } = await sw.publish("chat:lobby", { text: "hi" }, { idempotencyKey: "k1" });
  const page = await sw.history<Message>("chat:lobby", { limit: 10 });
  console.log(offset, epoch, page.publications[0]?.data.text);
  const room = await sw.call<{ room: { id: number } }>("rooms.create", { name: "ops" });
  console.log(room.room.id, (await sw.presence("chat:lobby")).users.length);
  try { await sw.ping(); } catch (err) {
    if (err instanceof StagewireError) console.log(err.code, err.fields, err.temporary);
    if (err instanceof DisconnectedError || err instanceof CallTimeoutError) console.log(err.message);
  }
  off();
  await sub.unsubscribe();
  sw.disconnect();
  await logout(token);
}
main();
"""

# Mistakes the typings must catch.
WRONG = """
import { Stagewire } from "stagewire";
const sw = new Stagewire({ token: "t" });
sw.on("state", ({ state }) => { const s: "open" = state; });
sw.publish("chat:lobby");
"""


def tsc(tmp_path: Path, source: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "usage.ts").write_text(source)
    (tmp_path / "tsconfig.json").write_text(json.dumps({
        "compilerOptions": {
            "strict": True, "noEmit": True, "target": "es2022", "module": "es2022", "moduleResolution": "bundler",
            "lib": ["es2022", "dom"], "types": [], "baseUrl": ".",
            "paths": {"stagewire": [str(STATIC / "stagewire.d.ts")]},
        },
        "files": ["usage.ts"],
    }))
    tsc_bin = node_modules() / "typescript" / "bin" / "tsc"
    return subprocess.run(["node", str(tsc_bin), "-p", str(tmp_path)], capture_output=True, text=True, timeout=120)


def test_the_typings_compile_with_the_clients_documented_use(tmp_path):
    done = tsc(tmp_path, USAGE)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_typings_refuse_wrong_use(tmp_path):
    done = tsc(tmp_path, WRONG)
    assert done.returncode != 0
    assert "is not assignable to type '\"open\"'" in done.stdout and "Expected 2-3 arguments" in done.stdout


def test_every_export_of_the_client_is_declared():
    exported = set(re.findall(r"^export (?:async )?(?:function|class|const) (\w+)", (STATIC / "stagewire.js").read_text(), re.M))
    declared = set(re.findall(r"^export (?:function|class|const|type|interface) (\w+)", (STATIC / "stagewire.d.ts").read_text(), re.M))
    assert exported and exported <= declared, sorted(exported - declared)
