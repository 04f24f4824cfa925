// The chat example's page logic (examples/chat.rs serves it at /app.js). It uses
// WshubClient from /wshub.js (clients/wshub.js) and nothing else.
//
// Every string that comes from a user (names, messages, room names) reaches the page
// through textContent or dataset, never as HTML.
//
// Messages are never lost or shown twice: every room is joined with `history`, so a
// reload or a second tab shows the room's recent messages; after a reconnect wshub.js
// re-joins with the position of the last message it received and the server sends
// what was missed (silently: they just appear, in order). When the server cannot
// (it restarted, or too much was missed), the room's list is cleared, says "some
// messages may be missing" and fills again from the recent history that follows.
"use strict";

(() => {
  const STORAGE_KEY = "wshub-chat"; // sessionStorage: {name, user, token, accepted, rooms, active}
  const DEFAULT_ROOM = "chat:lobby";
  const ROOM_ID = /^[a-z0-9_-]{1,32}$/;
  const REFUSED = "Login refused: invalid or expired token";
  /** A typist is announced at most this often... */
  const TYPING_SEND_EVERY_MS = 2000;
  /** ...and shown this long after their last announcement. */
  const TYPING_SHOW_MS = 3000;
  /** Messages kept per room (the oldest go first). */
  const MAX_ITEMS = 500;
  /** Recent messages asked for when joining a room (the server keeps 100 by default). */
  const HISTORY = 50;
  /** Shown first in a room whose missed messages the server could not send. */
  const MISSING = "Reconnected: some messages may be missing. The room's recent messages follow.";
  /** The "Rooms with people" panel asks the server (`rooms.list`) this often... */
  const BUSY_ROOMS_EVERY_MS = 5000;
  /** ...and this long after a presence change, so a burst of joins costs one call. */
  const BUSY_ROOMS_DEBOUNCE_MS = 300;

  const $ = (selector) => document.querySelector(selector);
  const ui = {
    status: $("#status"),
    error: $("#error"),
    me: $("#me"),
    logout: $("#logout-button"),
    loginForm: $("#login-form"),
    nameInput: $("#name-input"),
    loginButton: $("#login-button"),
    chat: $("#chat"),
    roomList: $("#room-list"),
    newRoomForm: $("#new-room-form"),
    newRoomInput: $("#new-room-input"),
    roomTitle: $("#room-title"),
    messages: $("#messages"),
    typing: $("#typing"),
    composer: $("#composer"),
    messageInput: $("#message-input"),
    online: $("#online"),
    onlineCount: $("#online-count"),
    onlineMore: $("#online-more"),
    busyRooms: $("#busy-rooms"),
  };

  /** {name, user, token, accepted, rooms, active}; `accepted` once the hub took the token. */
  let session = loadSession();
  /** @type {WshubClient | null} */
  let hub = null;
  /** The "Rooms with people" panel's refresh interval and pending debounced refresh. */
  let busyRoomsTimer = null;
  let busyRoomsSoon = null;
  /** room -> {items: [{kind: "message"|"notice", ...}], unread, online: Map|null, typing: Map,
   * countReplay, count, next}; `countReplay`: whether replayed messages are unread
   * (missed while away) rather than history the reader is shown on opening the room;
   * `count`: {users, conns, big} (a big room's exact count); `next`: in a big room,
   * the cursor of the member list's next page (null: none, or not big). */
  const rooms = new Map();
  let active = DEFAULT_ROOM;
  let lastTypingSent = 0;
  let typingTimer = null;

  // ---- small helpers -------------------------------------------------------------

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function str(value) {
    return typeof value === "string" ? value : "";
  }

  function roomLabel(room) {
    return "#" + room.slice("chat:".length);
  }

  function showError(text) {
    ui.error.textContent = text;
    ui.error.hidden = false;
  }

  function clearError() {
    ui.error.textContent = "";
    ui.error.hidden = true;
  }

  function setStatus(state) {
    ui.status.dataset.state = state;
    ui.status.textContent = state;
    ui.online.classList.toggle("stale", state !== "online");
  }

  function loadSession() {
    try {
      const s = JSON.parse(sessionStorage.getItem(STORAGE_KEY) || "null");
      return s && typeof s.token === "string" && typeof s.name === "string" ? s : null;
    } catch (_) {
      return null;
    }
  }

  function saveSession() {
    try {
      if (session) {
        session.rooms = Array.from(rooms.keys());
        session.active = active;
        sessionStorage.setItem(STORAGE_KEY, JSON.stringify(session));
      } else {
        sessionStorage.removeItem(STORAGE_KEY);
      }
    } catch (_) {
      // Storage may be disabled: the page still works, it just forgets on reload.
    }
  }

  function wsUrl() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    return `${scheme}//${location.host}/ws?token=${encodeURIComponent(session.token)}`;
  }

  /**
   * The name to show for `user`: the display name the server stamped into its presence
   * entries (from the signed token), never a name a client put in its own meta.
   */
  function displayName(user, metas) {
    for (const m of metas || []) {
      const name = m ? str(m.name).trim() : "";
      if (name) return name;
    }
    return user;
  }

  // ---- signing in ----------------------------------------------------------------

  async function postLogin(name) {
    let resp;
    try {
      resp = await fetch("/login", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ name }),
      });
    } catch (_) {
      throw new Error("Cannot reach the server");
    }
    let body = null;
    try {
      body = await resp.json();
    } catch (_) {
      // not JSON: reported below by status
    }
    if (!resp.ok || !body || typeof body.token !== "string") {
      const why = body && body.error ? body.error : `HTTP ${resp.status}`;
      throw new Error(`Login failed: ${why}`);
    }
    return body;
  }

  ui.loginForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearError();
    ui.loginButton.disabled = true;
    try {
      const login = await postLogin(ui.nameInput.value);
      session = { name: login.name, user: login.user, token: login.token, accepted: false };
      startChat();
    } catch (e) {
      showError(e.message);
    } finally {
      ui.loginButton.disabled = false;
    }
  });

  ui.logout.addEventListener("click", () => {
    stopChat();
    session = null;
    saveSession();
    showLogin("");
  });

  function showLogin(name) {
    ui.chat.hidden = true;
    ui.logout.hidden = true;
    ui.me.textContent = "";
    ui.loginForm.hidden = false;
    ui.nameInput.value = name;
    ui.nameInput.focus();
  }

  /**
   * The WebSocket closed before it opened. Browsers hide the HTTP status of a refused
   * handshake, so ask the server what it thinks of the token.
   */
  async function onConnectFailure() {
    let resp;
    try {
      resp = await fetch(`/session?token=${encodeURIComponent(session.token)}`, { cache: "no-store" });
    } catch (_) {
      return true; // the server is down: keep trying
    }
    if (resp.status !== 401) return true; // refused for another reason (limits, restart)
    let why = REFUSED;
    if (session.accepted) {
      // A token the server took before: it expired, or the server restarted with a new
      // key. Signing in needs only the name (the login cookie shows the server we
      // held it), so do it again.
      try {
        const login = await postLogin(session.name);
        session.token = login.token;
        saveSession();
        return 0; // retry at once with the new token
      } catch (e) {
        // Refused: say why (the name may have been taken meanwhile).
        why = e.message;
      }
    }
    const name = session.name;
    stopChat();
    session = null;
    saveSession();
    showLogin(name);
    showError(why);
    return false;
  }

  // ---- the chat ------------------------------------------------------------------

  function startChat() {
    ui.loginForm.hidden = true;
    ui.chat.hidden = false;
    ui.logout.hidden = false;
    ui.me.textContent = session.name;
    rooms.clear();
    const saved = Array.isArray(session.rooms) ? session.rooms : [];
    for (const room of [DEFAULT_ROOM, ...saved]) {
      if (typeof room === "string" && ROOM_ID.test(room.slice(5)) && room.startsWith("chat:")) {
        ensureRoom(room);
      }
    }
    active = rooms.has(session.active) ? session.active : DEFAULT_ROOM;
    saveSession();

    hub = new WshubClient(wsUrl, {
      onStatus: setStatus,
      backoff: { initialMs: 500, maxMs: 8000 },
      onConnectFailure,
    });
    hub.on("welcome", () => {
      session.accepted = true;
      saveSession();
      clearError();
      refreshBusyRooms();
    });
    hub.on("message", onMessage);
    hub.on("recovery", onRecovery);
    hub.on("presence", onPresence);
    hub.on("count", onCount);
    // A big room's join reply carries the first page of members and the next cursor.
    hub.on("joined", ({ room, data }) => {
      const r = rooms.get(room);
      if (!r) return;
      r.next = data && data.count && typeof data.next === "string" ? data.next : null;
      if (room === active) renderOnline();
    });
    hub.on("close", ({ code, opened }) => {
      if (opened && code === 1000) showError("The server closed the connection; reload to come back.");
    });
    hub.on("error", ({ code, message, room }) => {
      if (room) {
        showError(`Cannot join ${roomLabel(room)}: ${message || code}`);
        dropRoom(room);
      } else {
        console.warn("wshub:", code, message);
      }
    });
    for (const room of rooms.keys()) joinRoom(room);
    busyRoomsTimer = setInterval(refreshBusyRooms, BUSY_ROOMS_EVERY_MS);
    renderRooms();
    renderActive();
    ui.messageInput.focus();
  }

  // ---- rooms with people (the `rooms.list` RPC) -------------------------------------

  /** Asks the server which rooms have people in them and shows them. */
  function refreshBusyRooms() {
    if (!hub || hub.status !== "online") return;
    hub.call("rooms.list").then(renderBusyRooms, (e) => {
      if (e.code !== "disconnected" && e.code !== "closed") console.warn("rooms.list:", e.code, e.message);
    });
  }

  /** A refresh shortly, coalescing the presence changes of a burst. */
  function refreshBusyRoomsSoon() {
    if (busyRoomsSoon !== null) return;
    busyRoomsSoon = setTimeout(() => {
      busyRoomsSoon = null;
      refreshBusyRooms();
    }, BUSY_ROOMS_DEBOUNCE_MS);
  }

  function renderBusyRooms(list) {
    const items = [];
    for (const entry of Array.isArray(list) ? list : []) {
      const room = str(entry && entry.room);
      if (!room.startsWith("chat:") || !ROOM_ID.test(room.slice(5))) continue;
      const users = Number(entry.users) || 0;
      const li = el("li", "room busy-room");
      li.dataset.room = room;
      li.dataset.users = String(users);
      li.tabIndex = 0;
      li.setAttribute("role", "button");
      li.title = `Join ${roomLabel(room)}`;
      li.append(el("span", "room-name", roomLabel(room)), el("span", "users", String(users)));
      const open = () => {
        if (!rooms.has(room)) joinRoom(room);
        switchTo(room);
      };
      li.addEventListener("click", open);
      li.addEventListener("keydown", (ev) => {
        if (ev.key === "Enter" || ev.key === " ") {
          ev.preventDefault();
          open();
        }
      });
      items.push(li);
    }
    ui.busyRooms.replaceChildren(...items);
  }

  function stopChat() {
    if (hub) hub.close();
    hub = null;
    clearInterval(busyRoomsTimer);
    clearTimeout(busyRoomsSoon);
    busyRoomsTimer = null;
    busyRoomsSoon = null;
    ui.busyRooms.replaceChildren();
    rooms.clear();
    clearTimeout(typingTimer);
    ui.roomList.replaceChildren();
    ui.messages.replaceChildren();
    ui.online.replaceChildren();
    ui.typing.textContent = "";
  }

  function ensureRoom(room) {
    let r = rooms.get(room);
    if (!r) {
      r = { items: [], unread: 0, online: null, typing: new Map(), countReplay: false, count: null, next: null };
      rooms.set(room, r);
    }
    return r;
  }

  function joinRoom(room) {
    ensureRoom(room);
    // The server stamps the display name into presence; the page's own meta is empty.
    // The room's recent messages follow the join (a reload, a second tab, a new room).
    hub.join(room, {}, { history: HISTORY }).catch((e) => {
      if (e.code === "left" || e.code === "closed") return;
      showError(`Cannot join ${roomLabel(room)}: ${e.message}`);
      dropRoom(room);
    });
  }

  function dropRoom(room) {
    if (room === DEFAULT_ROOM || !rooms.has(room)) return;
    rooms.delete(room);
    if (hub) hub.leave(room).catch(() => {});
    if (active === room) active = DEFAULT_ROOM;
    saveSession();
    renderRooms();
    renderActive();
  }

  function switchTo(room) {
    if (!rooms.has(room)) return;
    active = room;
    rooms.get(room).unread = 0;
    saveSession();
    renderRooms();
    renderActive();
  }

  ui.newRoomForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const id = ui.newRoomInput.value.trim().replace(/^#/, "").replace(/^chat:/, "").toLowerCase();
    if (!ROOM_ID.test(id)) {
      showError("Room names are 1 to 32 characters: a-z, 0-9, - and _.");
      return;
    }
    clearError();
    const room = "chat:" + id;
    if (!rooms.has(room)) joinRoom(room);
    ui.newRoomInput.value = "";
    switchTo(room);
    ui.messageInput.focus();
  });

  ui.composer.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const text = ui.messageInput.value;
    if (!text.trim() || !hub) return;
    try {
      await hub.publish(active, { kind: "text", text });
      // Cleared once the hub took it, unless the user typed on meanwhile.
      if (ui.messageInput.value === text) ui.messageInput.value = "";
      lastTypingSent = 0;
      clearError();
    } catch (e) {
      showError(
        e.code === "disconnected" ? "Not connected: the message was not sent." : `Not sent: ${e.message}`,
      );
    }
  });

  ui.messageInput.addEventListener("input", () => {
    if (!hub || hub.status !== "online" || !ui.messageInput.value.trim()) return;
    const now = Date.now();
    if (now - lastTypingSent < TYPING_SEND_EVERY_MS) return;
    lastTypingSent = now;
    // Ephemeral (never kept for history) and fire-and-forget: losing one is harmless.
    hub.publish(active, { kind: "typing" }, { ephemeral: true, ack: false }).catch(() => {});
  });

  // ---- events from the hub -----------------------------------------------------------

  /**
   * A room was joined again after a reconnect. Recovered: what was missed follows as
   * messages, nothing to do. Not recovered: start the room's list over, saying so; the
   * recent history follows.
   */
  function onRecovery({ room, recovered }) {
    const r = rooms.get(room);
    if (!r) return;
    r.countReplay = recovered;
    if (recovered) return;
    r.items = [{ kind: "notice", gap: true, text: MISSING }];
    if (room === active) renderActive();
  }

  function onMessage({ room, from, data, replay }) {
    const r = rooms.get(room);
    if (!r || !data || typeof data !== "object") return;
    if (data.kind === "text") {
      r.typing.delete(from);
      // wshub.js hands each stored message over once, in order (it drops any it has
      // had already), so appending never shows one twice.
      addItem(room, {
        kind: "message",
        from,
        name: str(data.name) || from || "server",
        text: str(data.text),
        at: Number.isFinite(data.at) && data.at > 0 ? data.at : Date.now(),
      });
      if (room === active) {
        renderTyping();
      } else if (!replay || r.countReplay) {
        // History shown on opening a room is not unread; messages missed while away are.
        r.unread += 1;
        renderRooms();
      }
    } else if (data.kind === "typing") {
      if (from === null || from === hub.user) return; // not our own tabs
      r.typing.set(from, { name: str(data.name) || from, until: Date.now() + TYPING_SHOW_MS });
      if (room === active) renderTyping();
    }
  }

  function onPresence({ room, presence, joined, left, snapshot, big, count }) {
    const r = rooms.get(room);
    if (!r) return;
    r.online = presence;
    r.count = count || null;
    if (!big) r.next = null;
    if (snapshot || joined.length || left.length) refreshBusyRoomsSoon();
    // A snapshot (a join, or a re-join after a reconnect) announces nobody; diffs
    // announce users (not tabs): a second tab or one of two closing says nothing.
    if (!snapshot) {
      for (const { user, metas } of joined) {
        addItem(room, { kind: "notice", text: `${displayName(user, metas)} joined` });
      }
      for (const { user, metas } of left) {
        addItem(room, { kind: "notice", text: `${displayName(user, metas)} left` });
        r.typing.delete(user);
      }
    }
    if (room === active) {
      renderOnline();
      renderTyping();
    }
  }

  /** A big room's count changed, or a room turned big or small again. */
  function onCount({ room, users, conns, big }) {
    const r = rooms.get(room);
    if (!r) return;
    r.count = { users, conns, big };
    if (!big) r.next = null;
    if (room === active) renderOnline();
  }

  /** Loads the next page of the active big room's member list (the "Show more" button). */
  function loadMoreOnline() {
    const room = active;
    const r = rooms.get(room);
    if (!hub || !r || r.next === null) return;
    ui.onlineMore.disabled = true;
    hub
      .page(room, { after: r.next })
      .then(
        (page) => {
          r.next = page.next;
        },
        (e) => console.warn("presence_page:", e.code, e.message),
      )
      .finally(() => {
        ui.onlineMore.disabled = false;
        if (room === active) renderOnline();
      });
  }

  // ---- rendering -----------------------------------------------------------------

  function addItem(room, item) {
    const r = rooms.get(room);
    r.items.push(item);
    if (r.items.length > MAX_ITEMS) r.items.shift();
    if (room !== active) return;
    const nearBottom = ui.messages.scrollHeight - ui.messages.scrollTop - ui.messages.clientHeight < 80;
    ui.messages.append(itemElement(item));
    while (ui.messages.childElementCount > MAX_ITEMS) ui.messages.firstElementChild.remove();
    if (nearBottom) ui.messages.scrollTop = ui.messages.scrollHeight;
  }

  function itemElement(item) {
    if (item.kind === "notice") return el("div", item.gap ? "notice gap" : "notice", item.text);
    const node = el("div", "message");
    if (hub && item.from === hub.user) node.classList.add("mine");
    node.dataset.user = item.from || "";
    const when = new Date(item.at);
    const time = el("time", "time", when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }));
    time.dateTime = when.toISOString();
    time.title = when.toLocaleString();
    node.append(el("span", "author", item.name), time, el("div", "text", item.text));
    return node;
  }

  function renderRooms() {
    const items = [];
    for (const [room, r] of rooms) {
      const li = el("li", "room");
      li.dataset.room = room;
      li.tabIndex = 0;
      li.setAttribute("role", "button");
      if (room === active) li.classList.add("active");
      li.append(el("span", "room-name", roomLabel(room)));
      if (r.unread > 0 && room !== active) li.append(el("span", "unread", String(r.unread)));
      li.addEventListener("click", () => switchTo(room));
      li.addEventListener("keydown", (ev) => {
        if (ev.key === "Enter" || ev.key === " ") {
          ev.preventDefault();
          switchTo(room);
        }
      });
      items.push(li);
    }
    ui.roomList.replaceChildren(...items);
  }

  function renderActive() {
    const r = rooms.get(active);
    ui.roomTitle.textContent = roomLabel(active);
    ui.messages.replaceChildren(...(r ? r.items.map(itemElement) : []));
    ui.messages.scrollTop = ui.messages.scrollHeight;
    renderOnline();
    renderTyping();
  }

  function renderOnline() {
    const r = rooms.get(active);
    // "1,234 online": a big room's exact count, or the size of a small room's list.
    const users_ = r && r.count ? r.count.users : r && r.online ? r.online.size : null;
    ui.onlineCount.textContent = users_ === null ? "Online" : `${users_.toLocaleString("en-US")} online`;
    ui.onlineCount.dataset.big = r && r.count && r.count.big ? "true" : "false";
    ui.onlineMore.hidden = !(r && r.count && r.count.big && r.next !== null);
    const users = [];
    for (const [user, entry] of (r && r.online) || new Map()) {
      users.push({ user, name: displayName(user, entry.metas) });
    }
    users.sort((a, b) => a.name.localeCompare(b.name));
    ui.online.replaceChildren(
      ...users.map(({ user, name }) => {
        const li = el("li", "user", name);
        li.dataset.user = user;
        if (hub && user === hub.user) li.classList.add("me");
        return li;
      }),
    );
  }

  /** Shows who is typing in the active room, and comes back when the first one expires. */
  function renderTyping() {
    clearTimeout(typingTimer);
    const r = rooms.get(active);
    const now = Date.now();
    const names = [];
    let next = Infinity;
    if (r) {
      for (const [user, t] of r.typing) {
        if (t.until <= now) {
          r.typing.delete(user);
        } else {
          names.push(t.name);
          next = Math.min(next, t.until);
        }
      }
    }
    names.sort((a, b) => a.localeCompare(b));
    let text = "";
    if (names.length === 1) text = `${names[0]} is typing...`;
    else if (names.length === 2) text = `${names[0]} and ${names[1]} are typing...`;
    else if (names.length > 2) text = `${names[0]}, ${names[1]} and ${names.length - 2} more are typing...`;
    ui.typing.textContent = text;
    if (next !== Infinity) typingTimer = setTimeout(renderTyping, next - now + 20);
  }

  // ---- start ---------------------------------------------------------------------

  ui.onlineMore.addEventListener("click", loadMoreOnline);
  setStatus("offline");
  if (session) startChat();
  else showLogin("");
})();
