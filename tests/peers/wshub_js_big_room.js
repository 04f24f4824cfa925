// Drives clients/wshub.js (under Node, with `ws`) through a room that grows big and
// shrinks back: four guests join `chat:big`, whose rooms are big above 2 users (the
// hub under test is configured so). Prints one JSON line: what the first client saw.
//
// Usage: node wshub_js_big_room.js URL
"use strict";

const WebSocket = require("ws");
const WshubClient = require("../../clients/wshub.js");

const url = process.argv[2];
const ROOM = "chat:big";
const result = { ok: false, counts: [], modes: [] };
const clients = [];
const timer = setTimeout(() => finish("timed out"), 15000);

function finish(error) {
  clearTimeout(timer);
  if (error) result.error = error;
  else result.ok = true;
  console.log(JSON.stringify(result));
  for (const c of clients) c.close();
  process.exit(error ? 1 : 0);
}

function client() {
  const c = new WshubClient(url, { WebSocket, backoff: { initialMs: 50, maxMs: 100 } });
  clients.push(c);
  return c;
}

/** Resolves with the first `event` of `c` that `pred` accepts. */
function when(c, event, pred) {
  return new Promise((resolve) => {
    const off = c.on(event, (e) => {
      if (pred(e)) {
        off();
        resolve(e);
      }
    });
  });
}

(async () => {
  const a = client();
  a.on("count", (e) => result.counts.push(e));
  a.on("presence", (e) => result.modes.push(e.big ? "big" : "small"));
  const first = await a.join(ROOM);
  result.firstReplyHasCount = "count" in first;
  result.smallCount = a.count(ROOM);

  // Three more: the third makes the room big (4 users > 2).
  const becameBig = when(a, "count", (e) => e.big && e.users === 4);
  let lastData = null;
  for (let i = 0; i < 3; i++) lastData = await client().join(ROOM);
  result.bigJoinReply = { count: lastData.count, users: Object.keys(lastData.presence).length, next: typeof lastData.next };
  await becameBig;
  result.isBig = a.isBig(ROOM);
  result.bigCount = a.count(ROOM);

  // Page through the member list, two at a time.
  const paged = [];
  let after = null;
  let pages = 0;
  do {
    const page = await a.page(ROOM, { after, limit: 2 });
    paged.push(...page.presence.keys());
    after = page.next;
    pages += 1;
  } while (after !== null);
  result.pages = pages;
  result.pagedUsers = paged.length;
  result.pagedUnique = new Set(paged).size;
  result.pagedSorted = paged.slice().sort().join() === paged.join();

  // Two leave: small again (at most 2 users, once big for `presence_min_big`), with
  // the whole presence.
  const becameSmall = when(a, "presence", (e) => e.snapshot && !e.big);
  clients[2].close();
  clients[3].close();
  const small = await becameSmall;
  result.smallAgain = { users: small.presence.size, count: small.count, isBig: a.isBig(ROOM) };
  finish();
})().catch((e) => finish(String((e && e.stack) || e)));
