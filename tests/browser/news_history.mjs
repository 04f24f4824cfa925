// Browser test of the news_feed example's history and recovery (PROTOCOL.md section
// 9): the page, loaded through a proxy that cuts connections (no close frame), fills
// itself from the room's history (articles POSTed before it opened) without ever
// asking `GET /articles`; shows every article published while its connection is cut
// twice, once each, newest first; and after a restarted hub (a new one behind the same
// address) shows exactly the new hub's articles, then live ones, without a reload.
//
//   node tests/browser/news_history.mjs http://PROXY [--chromium PATH] [--screenshots DIR]
//
// Control commands (answered by tests/browser_news.rs): `stream` (publish "Article 4"
// to "Article 63", one every 10 ms, cutting every connection through the proxy after
// the 20th and the 40th (once the page is back in the room) and holding the page's
// reconnection for the next 5, which it must then recover; answered
// once all are published), `restart` (a new news server with "After restart 1" and
// "After restart 2" takes over the proxy; the old one shuts down), `publish TITLE`.

import { assert, control, log, runScript, waitForState, waitInPage } from "./lib.mjs";

async function post(url, article) {
  const r = await fetch(url + "/articles", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(article),
  });
  const text = await r.text();
  assert(r.status === 201, `POST /articles ${JSON.stringify(article)} answered ${r.status}: ${text}`);
  return JSON.parse(text);
}

/** `[id, title]` of every article shown, in page order. */
const shown = () => [...document.querySelectorAll("#articles .article")].map((a) => [Number(a.dataset.id), a.querySelector(".title")?.textContent.trim()]);

/** Waits until the page shows exactly `want` (`[id, title]`s, in order). */
async function waitForArticles(page, what, want, timeout = 15000) {
  await waitInPage(page, what, (want) => JSON.stringify([...document.querySelectorAll("#articles .article")].map((a) => [Number(a.dataset.id), a.querySelector(".title")?.textContent.trim()])) === JSON.stringify(want), want, {
    timeout,
    describe: () => {
      const ids = [...document.querySelectorAll("#articles .article")].map((a) => Number(a.dataset.id));
      const twice = ids.filter((id, i) => ids.indexOf(id) !== i);
      return `#articles holds ${ids.length}: ids ${JSON.stringify(ids.slice(0, 30))}${ids.length > 30 ? "..." : ""}; shown twice ${JSON.stringify(twice)}`;
    },
  });
}

/** `[id, title]`s from `to` down to `from` ("Article N", or "Early N" up to 3). */
function expected(from, to) {
  const out = [];
  for (let id = to; id >= from; id--) out.push([id, id <= 3 ? `Early ${id}` : `Article ${id}`]);
  return out;
}

runScript("news_history", async (run, { url }) => {
  const out = {};

  run.step("3 articles posted before the page opens");
  for (let i = 1; i <= 3; i++) await post(url, { title: `Early ${i}`, body: `Posted before the page, number ${i}.` });

  run.step("the page fills itself from the room's history");
  const page = await run.newPage(await run.newContext(), "reader");
  const listRequests = [];
  page.on("request", (r) => {
    if (new URL(r.url()).pathname === "/articles") listRequests.push(`${r.method()} ${r.url()}`);
  });
  // What the page's re-joins asked for and were answered, read off its WebSockets.
  let connections = 0;
  const recoveries = [];
  page.on("websocket", (ws) => {
    connections += 1;
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
  await page.goto(url + "/");
  await waitForState(page, "online");
  await waitForArticles(page, "the 3 early articles, newest first", expected(1, 3));
  out.on_load = await page.evaluate(shown);

  run.step("60 articles published while the proxy cuts the connection twice");
  out.stream_control = await control("stream", 30000);
  await waitForArticles(page, "all 63 articles once, newest first", expected(1, 63));
  out.after_cuts = (await page.evaluate(shown)).length;
  out.connections_after_cuts = connections;
  out.recoveries_after_cuts = [...recoveries];
  const hint = await page.evaluate(() => document.querySelector("#empty").hidden);
  assert(hint, "the \"no article yet\" hint shows next to articles");

  run.step("the hub restarts: the page shows the new hub's articles, then live ones");
  await page.evaluate(() => {
    window.__wshubNoReload = "still here";
  });
  let navigations = 0;
  page.on("framenavigated", (f) => {
    if (f === page.mainFrame()) navigations += 1;
  });
  await control("restart");
  const restarted = [
    [2, "After restart 2"],
    [1, "After restart 1"],
  ];
  await waitForArticles(page, "only the new hub's 2 articles", restarted);
  await control("publish Live after restart");
  await waitForArticles(page, "the live article on top", [[3, "Live after restart"], ...restarted]);
  out.after_restart = await page.evaluate(shown);
  const marker = await page.evaluate(() => window.__wshubNoReload);
  assert(marker === "still here" && navigations === 0, "the page was reloaded");
  await waitForState(page, "online", 1000);
  out.connections = connections;
  out.recoveries = recoveries;
  out.list_requests = listRequests;
  log(`GET /articles requests from the page: ${JSON.stringify(listRequests)}`);
  return out;
});
