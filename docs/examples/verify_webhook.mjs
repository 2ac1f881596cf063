// Verify a Stagewire webhook POST (docs/hooks.md): the signature over the raw body, then its age.
// Node.js, standard library only. With Express, read the raw body:
//   app.post("/stagewire/webhooks", express.raw({ type: "application/json" }), (req, res) => {
//     const payload = verifyWebhook(SECRET, req.body, req.get("X-Stagewire-Signature"));
//     if (!payload) return res.sendStatus(401);
//     for (const event of payload.events) handle(event);
//     res.sendStatus(204);
//   });
import { createHmac, timingSafeEqual } from "node:crypto";

const TOLERANCE_MS = 300_000; // refuse bodies signed more than 5 minutes from now: replays

/** The POST's payload `{time_ms, events}` if `body` (a Buffer, as received) is genuine and recent, else null. */
export function verifyWebhook(secret, body, signature) {
  if (!signature) return null;
  const expected = Buffer.from("sha256=" + createHmac("sha256", secret).update(body).digest("hex"));
  const given = Buffer.from(signature.trim());
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return null;
  const payload = JSON.parse(body.toString("utf8"));
  if (Math.abs(Date.now() - payload.time_ms) > TOLERANCE_MS) return null;
  return payload;
}

// `node verify_webhook.mjs SECRET SIGNATURE < body`: prints the events' names, or exits with 1.
if (import.meta.url === `file://${process.argv[1]}`) {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  const payload = verifyWebhook(process.argv[2], Buffer.concat(chunks), process.argv[3]);
  if (!payload) {
    console.log("refused");
    process.exit(1);
  }
  console.log(JSON.stringify(payload.events.map((e) => e.name)));
}
