// Drives clients/wshub.js (under Node, with the `ws` package as its WebSocket) for
// tests/wshub_js_recovery.rs: joins one room and prints, as it happens, one JSON line
// per event the client emits, for the Rust side to react to (cut the connection,
// restart the hub, publish) and check. Exits when its stdin closes (the test is over)
// or after 60 s.
//
// Usage: node wshub_js_recovery.js URL ROOM [--history N]
//
// Lines: {"ev": "open"} | {"ev": "close", "code"} | {"ev": "joined", "rejoin", "data"}
//      | {"ev": "recovery", "recovered", "replayed", "seq", "epoch"}
//      | {"ev": "message", "text", "seq", "epoch", "replay"} | {"ev": "error", "code", "message"}
"use strict";

const WebSocket = require("ws");
const WshubClient = require("../../clients/wshub.js");

const [url, room, ...rest] = process.argv.slice(2);
let history;
for (let i = 0; i < rest.length; i++) {
  if (rest[i] === "--history") history = Number(rest[++i]);
  else throw new Error(`unknown argument ${rest[i]}`);
}

function out(line) {
  process.stdout.write(JSON.stringify(line) + "\n");
}

// Short backoff: the test waits for each reconnection.
const hub = new WshubClient(url, { WebSocket, backoff: { initialMs: 50, maxMs: 200 } });
hub.on("open", () => out({ ev: "open" }));
hub.on("close", ({ code }) => out({ ev: "close", code }));
hub.on("joined", ({ rejoin, data }) => out({ ev: "joined", rejoin, data: { ...data, presence: undefined } }));
hub.on("recovery", (e) => out({ ev: "recovery", ...e }));
hub.on("message", ({ room: r, data, seq, epoch, replay }) => {
  if (r === room) out({ ev: "message", text: data && data.text, seq, epoch, replay });
});
hub.on("error", ({ code, message }) => out({ ev: "error", code, message }));
hub.join(room, {}, history === undefined ? {} : { history }).catch((e) => out({ ev: "error", code: e.code, message: e.message }));

function stop() {
  hub.close();
  process.exit(0);
}
process.stdin.on("end", stop);
process.stdin.on("close", stop);
process.stdin.resume();
setTimeout(stop, 60000).unref();
