// Browser test of the chat example's history and recovery (PROTOCOL.md section 9): the
// page is loaded through a proxy that cuts its connections (no close frame), while the
// server publishes numbered messages; it shows each exactly once, in order. A reload
// and another user's new page show the room's last 50 messages. A restarted hub (a new
// one behind the same address) makes the page say "some messages may be missing",
// show the new hub's recent messages and go on live, without a reload.
//
//   node tests/browser/chat_history.mjs http://PROXY [--chromium PATH] [--screenshots DIR]
//
// Control commands (answered by tests/browser_chat.rs): `stream` (publish n1..n300 to
// the lobby, one every 10 ms, cutting every connection through the proxy after n75,
// n150 and n225 and holding the page's reconnection for the next 10 messages;
// answered once all are published), `restart` (a new chat server with
// r1, r2, r3 in the lobby takes over the proxy; the old one shuts down), `publish TEXT`.

import { control, log, runScript, waitForState, waitInPage } from "./lib.mjs";
import { assert, messageTexts, openAndLogin, waitForMessage } from "./chat_page.mjs";

const N = 300;
/** How many recent messages the page asks for when it joins a room. */
const HISTORY = 50;

function numbered(from, to) {
  return Array.from({ length: to - from + 1 }, (_, i) => `n${from + i}`);
}

/** Why `got` is not `want`: missing, duplicated and misplaced entries. */
function difference(got, want) {
  const count = new Map();
  for (const t of got) count.set(t, (count.get(t) || 0) + 1);
  const missing = want.filter((t) => !count.has(t));
  const twice = [...count].filter(([, n]) => n > 1).map(([t, n]) => `${t} x${n}`);
  const first = got.findIndex((t, i) => t !== want[i]);
  return (
    `${got.length} shown, ${want.length} expected; missing ${JSON.stringify(missing.slice(0, 20))}; ` +
    `shown more than once ${JSON.stringify(twice.slice(0, 20))}; first difference at ${first}: ` +
    `${JSON.stringify(got.slice(Math.max(0, first - 2), first + 3))}`
  );
}

async function expectTexts(page, label, want) {
  const got = await messageTexts(page);
  assert(JSON.stringify(got) === JSON.stringify(want), () => `${label}: ${difference(got, want)}`);
  return got;
}

const gapNotices = () => [...document.querySelectorAll("#messages .notice.gap")].map((n) => n.textContent.trim());

runScript("chat_history", async (run, { url }) => {
  const out = {};

  run.step("the reader logs in through the proxy");
  const { page: reader } = await openAndLogin(run, await run.newContext(), "reader", url, "reader");
  // What the page's re-joins asked for and were answered, read off its WebSockets.
  let reconnections = 0;
  const recoveries = [];
  reader.on("websocket", (ws) => {
    reconnections += 1;
    const asked = new Map(); // join id -> since
    ws.on("framesent", ({ payload }) => {
      const m = JSON.parse(payload);
      if (m.op === "join" && m.since) asked.set(m.id, m.since);
    });
    ws.on("framereceived", ({ payload }) => {
      const m = JSON.parse(payload);
      if (m.op !== "reply" || !asked.has(m.id)) return;
      const { recovered, replayed, seq } = m.data || {};
      recoveries.push({ since: asked.get(m.id).seq, recovered, replayed, seq });
    });
  });

  run.step(`${N} numbered messages while the proxy cuts the connection 3 times`);
  const streamed = await control("stream", 60000);
  await waitForMessage(reader, `n${N}`, null, 20000);
  await expectTexts(reader, "the reader after the cuts", numbered(1, N));
  const gaps = await reader.evaluate(gapNotices);
  assert(gaps.length === 0, `the page says messages are missing after cuts it recovered from: ${JSON.stringify(gaps)}`);
  out.stream = { control: streamed, shown: N, reconnections, recoveries: [...recoveries] };
  log(`all ${N} messages shown once, in order, across ${reconnections} reconnection(s)`);

  run.step(`a reload shows the room's last ${HISTORY} messages`);
  await reader.reload();
  await waitForState(reader, "online");
  await waitForMessage(reader, `n${N}`, null);
  await expectTexts(reader, "the reader after a reload", numbered(N - HISTORY + 1, N));

  run.step(`another user's new page shows them too`);
  const { page: late } = await openAndLogin(run, await run.newContext(), "late", url, "late");
  await waitForMessage(late, `n${N}`, null);
  await expectTexts(late, "a new page", numbered(N - HISTORY + 1, N));
  out.recent = { reader: HISTORY, late: HISTORY };

  run.step("the hub restarts: the pages say messages may be missing and go on live");
  const navigations = { reader: 0, late: 0 };
  for (const [label, p] of [["reader", reader], ["late", late]]) {
    await p.evaluate(() => {
      window.__wshubNoReload = "still here";
    });
    p.on("framenavigated", (f) => {
      if (f === p.mainFrame()) navigations[label] += 1;
    });
  }
  await control("restart");
  for (const [label, p] of [["reader", reader], ["late", late]]) {
    await waitInPage(p, `${label}: a "may be missing" notice`, () => document.querySelectorAll("#messages .notice.gap").length > 0, null, {
      describe: () => `#messages holds ${JSON.stringify([...document.querySelectorAll("#messages > *")].slice(-8).map((e) => e.textContent.trim()))}`,
    });
    await waitForMessage(p, "r3", null);
  }
  await control("publish live after the restart");
  out.restart = {};
  for (const [label, p] of [["reader", reader], ["late", late]]) {
    await waitForMessage(p, "live after the restart", null);
    await expectTexts(p, `${label} after the restart`, ["r1", "r2", "r3", "live after the restart"]);
    const first = await p.evaluate(() => {
      const e = document.querySelector("#messages > *");
      return e ? { className: e.className, text: e.textContent.trim() } : null;
    });
    assert(first && first.className === "notice gap", () => `${label}: the list starts with ${JSON.stringify(first)}, not the notice`);
    const marker = await p.evaluate(() => window.__wshubNoReload);
    assert(marker === "still here" && navigations[label] === 0, `${label}'s page was reloaded`);
    await waitForState(p, "online", 1000);
    out.restart[label] = { notices: await p.evaluate(gapNotices), messages: await messageTexts(p) };
  }
  out.restart_recoveries = recoveries.slice(out.stream.recoveries.length);
  return out;
});
