// Drives clients/wshub.js (under Node, with the `ws` package as its WebSocket) against
// a hub whose connect hook joins every connection to `chat:srv` server-side and sends
// it a `direct` message, and whose RPC `ban.me` removes the caller from its rooms.
// Prints one JSON line: what the client saw.
//
// Usage: node wshub_js_control.js URL
"use strict";

const WebSocket = require("ws");
const WshubClient = require("../../clients/wshub.js");

const url = process.argv[2];
const result = { ok: false, events: [] };
const timer = setTimeout(() => finish("timed out"), 10000);

function finish(error) {
  clearTimeout(timer);
  if (error) result.error = error;
  else result.ok = true;
  console.log(JSON.stringify(result));
  hub.close();
  process.exit(error ? 1 : 0);
}

const hub = new WshubClient(url, { WebSocket, backoff: { initialMs: 50, maxMs: 100 } });
const waiting = new Map();
function once(name) {
  return new Promise((resolve) => waiting.set(name, resolve));
}
function seen(name, payload) {
  result.events.push([name, payload]);
  const w = waiting.get(name);
  if (w) {
    waiting.delete(name);
    w(payload);
  }
}
hub.on("joined", (e) => {
  // A server join carries the room's stream position (PROTOCOL.md section 9).
  if (e.server) result.serverJoinPosition = { seq: e.data.seq, epoch: typeof e.data.epoch };
  seen("joined", { room: e.room, server: !!e.server });
});
hub.on("direct", (e) => seen("direct", e));
hub.on("left", (e) => seen("left", e));
hub.on("presence", (e) =>
  seen("presence", { room: e.room, users: Array.from(e.presence.keys()).sort() }),
);

(async () => {
  const joined = once("joined");
  const direct = once("direct");
  await joined;
  await direct;
  result.roomsAfterJoin = hub.rooms();
  result.presence = Array.from((hub.presence("chat:srv") || new Map()).keys());
  const left = once("left");
  result.banned = await hub.call("ban.me");
  await left;
  result.roomsAfterBan = hub.rooms();
  finish();
})().catch((e) => finish(String((e && e.stack) || e)));
