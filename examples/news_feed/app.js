// The news_feed example's page logic (examples/news_feed.rs serves it at /app.js).
// It uses WshubClient from /wshub.js (clients/wshub.js) and nothing else.
//
// On every connection it joins news:latest first and then loads GET /articles, so no
// article published in between is missed: the list shown is the loaded one plus
// whatever arrived live on this connection, newest (highest id) first. Article text is
// rendered with textContent; only http(s) URLs become links.
"use strict";

(() => {
  const ROOM = "news:latest";
  const MAX_SHOWN = 100;

  const $ = (selector) => document.querySelector(selector);
  const ui = {
    status: $("#status"),
    error: $("#error"),
    articles: $("#articles"),
    empty: $("#empty"),
    curl: $("#curl"),
  };

  /** Articles received live on the current connection, by id. */
  let live = new Map();
  /** Articles from the last GET /articles on this connection, or null until it answers. */
  let listed = null;
  /** Which load is the latest (a reconnect may start another). */
  let loadSeq = 0;

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function str(value) {
    return typeof value === "string" ? value : "";
  }

  function setStatus(state) {
    ui.status.dataset.state = state;
    ui.status.textContent = state;
  }

  function showError(text) {
    ui.error.textContent = text;
    ui.error.hidden = false;
  }

  function clearError() {
    ui.error.textContent = "";
    ui.error.hidden = true;
  }

  function isArticle(a) {
    return a && typeof a === "object" && Number.isSafeInteger(a.id) && typeof a.title === "string";
  }

  /** Only http: and https: URLs become links (never javascript:, data:, ...). */
  function isWebUrl(url) {
    try {
      const u = new URL(url);
      return u.protocol === "http:" || u.protocol === "https:";
    } catch (_) {
      return false;
    }
  }

  function articleElement(article, fresh) {
    const node = el("article", fresh ? "article fresh" : "article");
    node.dataset.id = String(article.id);
    node.append(el("h2", "title", article.title));
    if (Number.isFinite(article.published_at)) {
      const when = new Date(article.published_at);
      const time = el("time", "time", when.toLocaleString());
      time.dateTime = when.toISOString();
      node.append(time);
    }
    node.append(el("p", "body", str(article.body)));
    const url = str(article.url);
    if (url) {
      if (isWebUrl(url)) {
        const link = el("a", "url", url);
        link.href = url;
        link.target = "_blank";
        link.rel = "noopener noreferrer nofollow";
        node.append(link);
      } else {
        node.append(el("span", "url", url));
      }
    }
    return node;
  }

  /** Re-renders everything: the loaded list plus the live articles, newest first. */
  function renderAll() {
    const shownBefore = new Set(Array.from(ui.articles.children, (n) => n.dataset.id));
    const all = new Map(listed || []);
    for (const [id, a] of live) all.set(id, a);
    const sorted = Array.from(all.values())
      .sort((a, b) => b.id - a.id)
      .slice(0, MAX_SHOWN);
    ui.articles.replaceChildren(
      ...sorted.map((a) => articleElement(a, live.has(a.id) && !shownBefore.has(String(a.id)))),
    );
    ui.empty.hidden = sorted.length > 0;
  }

  /** Adds one live article in its place (by id, newest first). */
  function insertLive(article) {
    if (ui.articles.querySelector(`[data-id="${article.id}"]`)) return;
    let before = null;
    for (const child of ui.articles.children) {
      if (Number(child.dataset.id) < article.id) {
        before = child;
        break;
      }
    }
    ui.articles.insertBefore(articleElement(article, true), before);
    while (ui.articles.childElementCount > MAX_SHOWN) ui.articles.lastElementChild.remove();
    ui.empty.hidden = true;
  }

  async function loadArticles() {
    const seq = ++loadSeq;
    let articles = [];
    try {
      const resp = await fetch("/articles", { cache: "no-store" });
      if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
      const body = await resp.json();
      articles = Array.isArray(body.articles) ? body.articles.filter(isArticle) : [];
      clearError();
    } catch (e) {
      showError(`Cannot load the articles: ${e.message}`);
    }
    if (seq !== loadSeq) return;
    listed = new Map(articles.map((a) => [a.id, a]));
    renderAll();
  }

  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const hub = new WshubClient(`${scheme}//${location.host}/ws`, {
    onStatus: setStatus,
    backoff: { initialMs: 500, maxMs: 8000 },
  });
  // A new connection: articles are numbered by the server that is up now, which may be
  // a restarted one; start over from what it says.
  hub.on("open", () => {
    live = new Map();
    listed = null;
  });
  hub.on("message", ({ room, data }) => {
    if (room !== ROOM || !isArticle(data)) return;
    live.set(data.id, data);
    if (listed !== null) insertLive(data);
  });
  hub.on("joined", ({ room }) => {
    if (room === ROOM) loadArticles();
  });
  hub.join(ROOM).catch((e) => showError(`Cannot join ${ROOM}: ${e.message}`));

  const insecure = location.protocol === "https:" ? "-k " : "";
  ui.curl.textContent =
    `curl ${insecure}-X POST ${location.origin}/articles -H 'content-type: application/json' \\\n` +
    `  -d '{"title": "Hello from curl", "body": "It works.", "url": "https://example.org"}'`;
})();
