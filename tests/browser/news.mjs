// Browser test of the news_feed example: an article POSTed over HTTP shows up on the
// open page, live, newest first, as text.
//
//   node tests/browser/news.mjs http://127.0.0.1:PORT [--chromium PATH] [--screenshots DIR]
//
// Page contract: #status[data-state], #articles with .article (.title, .body, .url),
// newest first. Run by tests/browser_news.rs.

import { assert, log, runScript, waitForState, waitInPage } from "./lib.mjs";

async function post(url, article) {
  const r = await fetch(url + "/articles", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(article),
  });
  const text = await r.text();
  assert(r.status >= 200 && r.status < 300, `POST /articles ${JSON.stringify(article)} answered ${r.status}: ${text}`);
  log(`POST /articles -> ${r.status} ${text.slice(0, 200)}`);
  return text;
}

function articlesIn() {
  return [...document.querySelectorAll("#articles .article")].map((a) => ({
    title: a.querySelector(".title")?.textContent.trim(),
    body: a.querySelector(".body")?.textContent.trim(),
    url: a.querySelector(".url")?.textContent.trim(),
    href: a.querySelector(".url")?.getAttribute("href") ?? a.querySelector(".url a, a.url")?.getAttribute("href") ?? null,
  }));
}

runScript("news", async (run, { url }) => {
  const out = {};
  const tag = Math.random().toString(36).slice(2, 8);

  run.step("an article posted before the page opens");
  const early = { title: `Early ${tag}`, body: "Posted before the page was opened." };
  await post(url, early);

  run.step("the page opens and goes online");
  const page = await run.newPage(await run.newContext(), "reader");
  await page.goto(url + "/");
  await waitForState(page, "online");
  await page.waitForTimeout(300);
  out.listed_on_load = (await page.evaluate(articlesIn)).some((a) => a.title === early.title);
  log(`article posted before the page opened is listed: ${out.listed_on_load}`);

  const describe = () =>
    "#articles holds " + JSON.stringify([...document.querySelectorAll("#articles .article")].slice(0, 6).map((a) => a.textContent.trim().slice(0, 100)));
  const waitFor = (title) =>
    waitInPage(page, `article ${JSON.stringify(title)} on the page`, (t) => [...document.querySelectorAll("#articles .article .title")].some((e) => e.textContent.trim() === t), title, {
      timeout: 10000,
      describe,
    });

  run.step("an article posted over HTTP appears live");
  const first = {
    title: `Breaking ${tag}: <b>not bold</b>`,
    body: `First body ${tag} <img src=x onerror=alert(1)>`,
    url: `https://example.com/news/${tag}`,
  };
  const postedAt = Date.now();
  await post(url, first);
  await waitFor(first.title);
  out.live_after_ms = Date.now() - postedAt;
  let shown = (await page.evaluate(articlesIn)).find((a) => a.title === first.title);
  assert(shown.body === first.body, `.body is ${JSON.stringify(shown.body)}, posted ${JSON.stringify(first.body)}`);
  assert(shown.url === first.url || shown.href === first.url, `.url shows ${JSON.stringify(shown)}, posted ${JSON.stringify(first.url)}`);
  const injected = await page.evaluate(() => document.querySelectorAll("#articles b, #articles img").length);
  assert(injected === 0, `${injected} element(s) injected from article text into #articles`);
  out.first = shown;

  run.step("a newer article goes first");
  const second = { title: `Later ${tag}`, body: "Second body", url: `https://example.com/news/${tag}/2` };
  await post(url, second);
  await waitFor(second.title);
  const all = await page.evaluate(articlesIn);
  const i1 = all.findIndex((a) => a.title === first.title);
  const i2 = all.findIndex((a) => a.title === second.title);
  assert(i2 === 0 && i1 === 1, () => `not newest first: ${JSON.stringify(all.map((a) => a.title))}`);
  out.order = all.map((a) => a.title);
  await page.waitForTimeout(200);
  return out;
});
