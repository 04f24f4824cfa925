// The news_feed example's page logic (examples/news_feed.rs serves it at /app.js).
// It uses WshubClient from /wshub.js (clients/wshub.js) and nothing else.
//
// The room's history is the list of articles: the page joins news:latest asking for
// its last 100 messages, shows them, then shows new articles as they are published,
// newest (highest id) first. After a reconnect wshub.js re-joins with the position of
// the last article it received and the server sends the ones missed meanwhile; when
// it cannot (the server restarted, or they aged out), the page empties its list and
// fills it again from the history that follows. It never needs `GET /articles` (an
// API for other HTTP clients). Article text is rendered with textContent; only
// http(s) URLs become links.
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

  /** Ids of the articles shown. */
  const shown = new Set();
  /**
   * Whether articles replayed after a join are new to the reader (missed while the
   * connection was down: highlighted like live ones) rather than the history a
   * freshly loaded page fills itself with.
   */
  let replayIsNews = false;

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

  /** Adds one article in its place (by id, newest first), once. */
  function insert(article, fresh) {
    if (shown.has(article.id)) return;
    let before = null;
    for (const child of ui.articles.children) {
      if (Number(child.dataset.id) < article.id) {
        before = child;
        break;
      }
    }
    ui.articles.insertBefore(articleElement(article, fresh), before);
    shown.add(article.id);
    while (ui.articles.childElementCount > MAX_SHOWN) {
      shown.delete(Number(ui.articles.lastElementChild.dataset.id));
      ui.articles.lastElementChild.remove();
    }
    ui.empty.hidden = true;
  }

  /** Empties the list: the history that follows fills it again. */
  function clearAll() {
    shown.clear();
    ui.articles.replaceChildren();
    ui.empty.hidden = false;
  }

  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const hub = new WshubClient(`${scheme}//${location.host}/ws`, {
    onStatus: setStatus,
    backoff: { initialMs: 500, maxMs: 8000 },
  });
  // Emitted on every re-join, before the replayed articles arrive.
  hub.on("recovery", ({ room, recovered }) => {
    if (room !== ROOM) return;
    replayIsNews = recovered;
    // The server could not send everything missed (a restarted server numbers its
    // articles afresh): start over from the history that follows.
    if (!recovered) clearAll();
  });
  hub.on("message", ({ room, data, replay }) => {
    if (room !== ROOM || !isArticle(data)) return;
    insert(data, !replay || replayIsNews);
  });
  hub.on("joined", ({ room }) => {
    if (room === ROOM) clearError();
  });
  hub.join(ROOM, {}, { history: MAX_SHOWN }).catch((e) => showError(`Cannot join ${ROOM}: ${e.message}`));

  const insecure = location.protocol === "https:" ? "-k " : "";
  ui.curl.textContent =
    `curl ${insecure}-X POST ${location.origin}/articles -H 'content-type: application/json' \\\n` +
    `  -d '{"title": "Hello from curl", "body": "It works.", "url": "https://example.org"}'`;
})();
