/*!
 * wshub.js: a small, dependency-free client for wshub's `wshub.v1` protocol (PROTOCOL.md).
 *
 * A classic script: in a browser it defines `window.WshubClient`; under Node (or a
 * bundler) it is `module.exports`. Documented in clients/README.md.
 *
 *   const hub = new WshubClient("wss://example.com/ws?token=...", {
 *     onStatus: (status) => console.log(status),     // "connecting" | "online" | "offline"
 *     backoff: { initialMs: 500, maxMs: 10000 },
 *   });
 *   hub.on("message", ({ room, from, data, seq }) => console.log(room, seq, from, data));
 *   hub.on("presence", ({ room, presence, joined, left }) => render(presence));
 *   hub.on("recovery", ({ room, recovered }) => { if (!recovered) clearAndWarn(room); });
 *   await hub.join("chat:lobby", { name: "alice" }, { history: 50 }); // + the last 50
 *   await hub.publish("chat:lobby", { kind: "text", text: "hi" });
 *   hub.publish("chat:lobby", { kind: "typing" }, { ephemeral: true, ack: false });
 *   const rooms = await hub.call("rooms.list");       // a method the server registered
 *
 * What it does for you:
 * - reconnects after every close but a normal one (1000) from the server, waiting a
 *   random delay between 0 and min(maxMs, initialMs * 2^attempt) ("full jitter");
 * - re-joins every room it joined, with the same meta, after each reconnect, asking for
 *   what it missed: it keeps the stream position (`seq`, `epoch`) of the last message
 *   of each room and re-joins with `since` (PROTOCOL.md section 9), so every stored
 *   message reaches the application exactly once and in order; a "recovery" event
 *   says whether that worked (`recovered: false`: messages may be missing; the room's
 *   last `history` messages follow instead when `join` asked for them);
 * - asks for a room's recent history on a fresh join (`join(room, meta, {history})`);
 * - keeps each room's presence from the join snapshot plus `presence_diff`s, holding
 *   the diffs that arrive before the join reply (PROTOCOL.md section 6);
 * - follows big rooms (section 6, "Big rooms"): their exact count ("count" events,
 *   `count(room)`), the users shown (the first page, pages asked for with
 *   `page(room)`, users of interest), and the switch back to a small room's whole
 *   presence;
 * - rejects pending requests when the connection drops (code "disconnected").
 */
(function (root, factory) {
  "use strict";
  const WshubClient = factory();
  if (typeof module === "object" && module && module.exports) {
    module.exports = WshubClient;
  } else {
    root.WshubClient = WshubClient;
  }
})(typeof globalThis !== "undefined" ? globalThis : this, function () {
  "use strict";

  const OPEN = 1; // WebSocket.OPEN, without depending on the global

  /** An error from the server (a failed reply or a bare `error`) or from the client. */
  class WshubError extends Error {
    constructor(code, message) {
      super(message || code);
      this.name = "WshubError";
      /** A PROTOCOL.md section 5 code, or "disconnected", "timeout", "closed", "left". */
      this.code = code;
    }
  }

  /** Presence as a Map of user id -> {metas: [{conn_id, meta}]}, from the wire object. */
  function presenceFromWire(obj) {
    const map = new Map();
    if (obj && typeof obj === "object") {
      for (const [user, entry] of Object.entries(obj)) {
        map.set(user, { metas: metasOf(entry) });
      }
    }
    return map;
  }

  /** `{seq, epoch}` of a message or join reply (section 9), or null without one. */
  function positionOf(obj) {
    if (obj && Number.isSafeInteger(obj.seq) && obj.seq >= 0 && typeof obj.epoch === "string") {
      return { seq: obj.seq, epoch: obj.epoch };
    }
    return null;
  }

  /** `{users, conns}` from a wire count, or null. */
  function countOf(obj) {
    if (obj && Number.isSafeInteger(obj.users) && Number.isSafeInteger(obj.conns)) {
      return { users: obj.users, conns: obj.conns };
    }
    return null;
  }

  /** The count of a presence Map (a small room's, which holds everyone). */
  function countMap(state) {
    let conns = 0;
    for (const entry of state.values()) conns += entry.metas.length;
    return { users: state.size, conns };
  }

  function metasOf(entry) {
    return entry && Array.isArray(entry.metas) ? entry.metas.slice() : [];
  }

  class WshubClient {
    /**
     * @param {string | (() => string | Promise<string>)} url  the hub's ws:// or wss:// URL,
     *   or a function returning it, called before every connection attempt (so a token
     *   in the query string can be renewed).
     * @param {object} [options]
     * @param {string[]} [options.protocols]  default ["wshub.v1"]
     * @param {(status: string, detail?: object) => void} [options.onStatus]
     * @param {{initialMs?: number, maxMs?: number}} [options.backoff]  default 500 / 10000
     * @param {(info: {code: number, reason: string, attempt: number}) => (boolean | number | Promise<boolean | number>)} [options.onConnectFailure]
     *   called when a socket closes before it ever opened (refused handshake, server
     *   down); reconnecting waits for it, stops if it returns false, retries after
     *   that many milliseconds if it returns a number, else backs off as usual.
     * @param {number} [options.requestTimeoutMs]  default 15000; 0 waits forever
     * @param {boolean} [options.autoConnect]  default true
     * @param {Function} [options.WebSocket]  the WebSocket constructor (Node: require("ws"))
     */
    constructor(url, options = {}) {
      this._url = url;
      this._protocols = options.protocols || ["wshub.v1"];
      this._backoff = Object.assign({ initialMs: 500, maxMs: 10000 }, options.backoff || {});
      this._onConnectFailure = options.onConnectFailure || null;
      this._requestTimeoutMs =
        options.requestTimeoutMs === undefined ? 15000 : options.requestTimeoutMs;
      this._WebSocket = options.WebSocket || globalThis.WebSocket;
      this._listeners = new Map(); // event -> Set<fn>
      this._rooms = new Map(); // room -> {meta, state, held, ready, promise, resolve, reject}
      this._pending = new Map(); // request id -> {resolve, reject, timer}
      this._nextId = 1;
      this._ws = null;
      this._generation = 0; // bumped for every socket: events of older sockets are ignored
      this._running = false;
      this._attempt = 0;
      this._retryTimer = null;
      this._status = "offline";
      this._onBrowserOnline = () => {
        // The network is back: retry now rather than at the end of the backoff.
        if (this._running && this._retryTimer !== null) {
          this._attempt = 0;
          this._open();
        }
      };
      /** The authenticated user id, from the latest `welcome` (null before). */
      this.user = null;
      /** This connection's id (an opaque string), from the latest `welcome`. */
      this.connId = null;
      if (options.onStatus) this.on("status", options.onStatus);
      if (options.autoConnect !== false) this.connect();
    }

    /** "connecting", "online" (welcome received) or "offline". */
    get status() {
      return this._status;
    }

    /** Starts connecting (done by the constructor unless `autoConnect: false`). */
    connect() {
      if (this._running) return;
      this._running = true;
      this._attempt = 0;
      if (typeof window !== "undefined" && window.addEventListener) {
        window.addEventListener("online", this._onBrowserOnline);
      }
      this._open();
    }

    /**
     * Closes the connection and stops reconnecting. Rooms stay registered: `connect()`
     * joins them again.
     */
    close(code = 1000, reason = "") {
      this._running = false;
      this._generation++;
      clearTimeout(this._retryTimer);
      this._retryTimer = null;
      if (typeof window !== "undefined" && window.removeEventListener) {
        window.removeEventListener("online", this._onBrowserOnline);
      }
      const ws = this._ws;
      this._ws = null;
      this._connectionLost(new WshubError("closed", "client closed the connection"));
      if (ws) {
        try {
          ws.close(code, reason);
        } catch (_) {
          // already closing
        }
      }
      this._setStatus("offline", { code, reason, opened: true });
    }

    /**
     * Joins `room` with presence `meta` (an object shown to the other members) and keeps
     * it joined across reconnects. Resolves with the join reply's data (`{presence}`)
     * once joined, after reconnects if need be; rejects if the server refuses the join
     * (WshubError with its code) or `leave(room)` is called first. Joining a room again
     * returns the first join's promise (the server keeps the first meta and options too).
     *
     * In a namespace that keeps history the data also has `seq`, `epoch` and `replayed`
     * (PROTOCOL.md section 9). With `history: N` the server sends the room's last N
     * stored messages right after the reply (as "message" events with `replay: true`),
     * and every re-join asks for them again in case what was missed cannot be recovered.
     *
     * @param {string} room
     * @param {object} [meta]
     * @param {{history?: number}} [options]  `history`: how many recent messages to ask
     *   for (a non-negative integer; the server caps it, 100 by default). Default none.
     */
    join(room, meta = {}, { history } = {}) {
      const existing = this._rooms.get(room);
      if (existing) return existing.promise;
      if (history !== undefined && !(Number.isSafeInteger(history) && history >= 0)) {
        return Promise.reject(new TypeError(`history must be a non-negative integer, not ${history}`));
      }
      const entry = {
        meta: meta || {},
        history,
        state: null,
        held: [],
        ready: false,
        // The stream position ({seq, epoch}) of the last stored message handed to the
        // application, or of the join reply when it is later: what a re-join asks to
        // continue from. Kept across reconnects, forgotten with the room.
        pos: null,
        // Messages still to come from the latest join reply's `replayed`.
        replaying: 0,
        // The reply's position, reached once the replayed messages are in.
        replayEnd: null,
      };
      entry.promise = new Promise((resolve, reject) => {
        entry.resolve = resolve;
        entry.reject = reject;
      });
      // Nobody may be awaiting: do not report an unhandled rejection for it.
      entry.promise.catch(() => {});
      this._rooms.set(room, entry);
      if (this._isOpen()) this._sendJoin(room, entry);
      return entry.promise;
    }

    /** Leaves `room` (and stops re-joining it). Resolves with the reply's data. */
    leave(room) {
      const entry = this._rooms.get(room);
      if (!entry) return Promise.resolve({});
      this._rooms.delete(room);
      if (!entry.ready) entry.reject(new WshubError("left", `left ${room} before joining it`));
      if (!this._isOpen()) return Promise.resolve({});
      return this.request({ op: "leave", room }).catch((e) => {
        if (e.code === "not_joined" || e.code === "disconnected") return {};
        throw e;
      });
    }

    /**
     * Publishes `data` to `room` (which must be joined). With `ack` (the default) it
     * resolves with the reply's data (`{delivered, seq, epoch}`) or rejects with a WshubError; with
     * `ack: false` it is fire-and-forget (a failure arrives as an "error" event).
     * Rejects with code "disconnected" when not connected: nothing is queued.
     */
    publish(room, data, { ephemeral = false, ack = true } = {}) {
      const msg = { op: "publish", room, data };
      if (ephemeral) msg.ephemeral = true;
      if (ack) return this.request(msg);
      if (!this._isOpen()) return Promise.reject(new WshubError("disconnected", "not connected"));
      this._send(msg);
      return Promise.resolve(undefined);
    }

    /**
     * Calls the server method `method` (registered with `HubBuilder::rpc`) with `data`
     * (any JSON value; omitted when undefined) and resolves with its response, or
     * rejects with a WshubError: the method's own error code, or "not_found" (no such
     * method), "invalid_data" (data of the wrong shape), "timeout" (the server cut
     * the method, or no reply within requestTimeoutMs), "too_large", "rate_limited",
     * "disconnected". Not retried: a call lost with the connection rejects.
     */
    call(method, data) {
      const msg = { op: "call", method };
      if (data !== undefined) msg.data = data;
      return this.request(msg);
    }

    /**
     * The presence of a joined room as a Map of user id -> {metas: [{conn_id, meta}]},
     * or null while the room is not joined (or being re-joined). A copy: do not expect
     * it to change; listen to "presence" events.
     */
    presence(room) {
      const entry = this._rooms.get(room);
      return entry && entry.state ? new Map(entry.state) : null;
    }

    /**
     * The count of a joined room, `{users, conns, big}`, or null while it is not
     * joined. Exact in a big room (the server's latest `presence_count`); in a small
     * room it is counted from the presence, which holds everyone.
     */
    count(room) {
      const entry = this._rooms.get(room);
      if (!entry || !entry.state) return null;
      const count = entry.big && entry.count ? entry.count : countMap(entry.state);
      return { users: count.users, conns: count.conns, big: !!entry.big };
    }

    /** Whether a joined room is big (PROTOCOL.md section 6): counts and pages. */
    isBig(room) {
      const entry = this._rooms.get(room);
      return !!(entry && entry.big);
    }

    /**
     * One page of a joined room's member list (`presence_page`, PROTOCOL.md section 4),
     * in user id order: resolves with `{presence: Map, count: {users, conns}, next}`,
     * `next` being the `after` of the following page (null after the last). A page is
     * a snapshot; in a big room its users are added to what `presence(room)` shows.
     *
     * @param {string} room
     * @param {{after?: string|null, limit?: number}} [options]
     */
    page(room, { after = null, limit } = {}) {
      const msg = { op: "presence_page", room };
      if (after !== null && after !== undefined) msg.after = after;
      if (limit !== undefined) msg.limit = limit;
      return this.request(msg).then((data) => {
        const presence = presenceFromWire(data.presence);
        const count = countOf(data.count);
        const entry = this._rooms.get(room);
        if (entry && entry.ready && entry.big) {
          if (count) entry.count = count;
          let changed = false;
          for (const [user, e] of presence) {
            if (!entry.state.has(user)) {
              entry.state.set(user, { metas: e.metas.slice() });
              changed = true;
            }
          }
          if (changed) this._emitPresence(room, entry, true);
        }
        return { presence, count, next: typeof data.next === "string" ? data.next : null };
      });
    }

    /** The rooms this client keeps joined. */
    rooms() {
      return Array.from(this._rooms.keys());
    }

    /**
     * Sends any op with a fresh `id` and resolves with the reply's `data` (rejects with
     * a WshubError on `ok: false`, a disconnect or a timeout).
     */
    request(msg) {
      if (!this._isOpen()) {
        return Promise.reject(new WshubError("disconnected", "not connected"));
      }
      return new Promise((resolve, reject) => this._sendRequest(msg, resolve, reject));
    }

    /**
     * Listens to an event; returns a function that stops listening. Events:
     * "status" (status, detail), "open", "welcome" {user, conn_id},
     * "message" {room, from, data, seq, epoch, replay},
     * "presence" {room, presence, joined, left, snapshot, big, count} (in a big room
     * `presence` is the users shown, not everyone: see `count`),
     * "count" {room, users, conns, big} (a big room's count, and the switches),
     * "recovery" {room, recovered, replayed, seq, epoch} (every re-join, before the
     * replayed messages), "joined" {room, data, rejoin}, "error" {code, message, room?},
     * "close" {code, reason, opened}, "reconnecting" {delayMs, attempt}.
     */
    on(event, fn) {
      let set = this._listeners.get(event);
      if (!set) this._listeners.set(event, (set = new Set()));
      set.add(fn);
      return () => this.off(event, fn);
    }

    /** Stops calling `fn` for `event`. */
    off(event, fn) {
      const set = this._listeners.get(event);
      if (set) set.delete(fn);
    }

    // ---- internals ---------------------------------------------------------------

    _emit(event, ...args) {
      const set = this._listeners.get(event);
      if (!set) return;
      for (const fn of Array.from(set)) {
        try {
          fn(...args);
        } catch (e) {
          // A listener's bug must not break the connection's bookkeeping.
          setTimeout(() => {
            throw e;
          });
        }
      }
    }

    _setStatus(status, detail) {
      if (this._status === status) return;
      this._status = status;
      this._emit("status", status, detail || {});
    }

    /**
     * Sends `msg` with a fresh id; `resolve(data)` or `reject(WshubError)` is called
     * exactly once, synchronously from the frame handler for the reply. Joins need
     * that: the replayed messages follow the reply at once, and `ws` under Node may
     * hand several frames over before any promise callback runs.
     */
    _sendRequest(msg, resolve, reject) {
      const id = this._nextId++;
      let timer = null;
      if (this._requestTimeoutMs > 0) {
        timer = setTimeout(() => {
          this._pending.delete(id);
          reject(new WshubError("timeout", `no reply to ${msg.op} in ${this._requestTimeoutMs} ms`));
        }, this._requestTimeoutMs);
      }
      this._pending.set(id, { resolve, reject, timer });
      this._send(Object.assign({}, msg, { id }));
    }

    _isOpen() {
      return this._ws !== null && this._ws.readyState === OPEN;
    }

    _send(msg) {
      try {
        this._ws.send(JSON.stringify(msg));
      } catch (_) {
        // The socket is closing; its close event rejects what is pending.
      }
    }

    async _open() {
      clearTimeout(this._retryTimer);
      this._retryTimer = null;
      if (!this._running) return;
      const gen = ++this._generation;
      this._setStatus("connecting");
      let url;
      try {
        url = typeof this._url === "function" ? await this._url() : this._url;
      } catch (e) {
        if (gen !== this._generation) return;
        this._emit("error", { code: "url", message: String((e && e.message) || e) });
        this._setStatus("offline");
        this._scheduleRetry();
        return;
      }
      if (gen !== this._generation || !this._running) return;
      let ws;
      try {
        ws = new this._WebSocket(url, this._protocols);
      } catch (e) {
        // A malformed URL never gets better: stop.
        this._running = false;
        this._emit("error", { code: "url", message: String((e && e.message) || e) });
        this._setStatus("offline");
        return;
      }
      this._ws = ws;
      let opened = false;
      ws.onopen = () => {
        if (gen !== this._generation) return;
        opened = true;
        this._emit("open");
        // The server answers ops in order, so joins need not wait for the welcome.
        for (const [room, entry] of this._rooms) this._sendJoin(room, entry);
      };
      ws.onmessage = (ev) => {
        if (gen === this._generation) this._onFrame(ev.data);
      };
      ws.onerror = () => {
        // A close event always follows, with what little the browser tells.
      };
      ws.onclose = (ev) => {
        if (gen === this._generation) this._onClose(ev, opened, gen);
      };
    }

    async _onClose(ev, opened, gen) {
      this._ws = null;
      const info = { code: ev.code, reason: ev.reason || "", opened };
      this._connectionLost(new WshubError("disconnected", "connection closed"));
      this._emit("close", info);
      this._setStatus("offline", info);
      if (!this._running) return;
      if (opened && ev.code === 1000) {
        // A normal closure from the server: the application disconnected us on purpose.
        this._running = false;
        return;
      }
      if (!opened && this._onConnectFailure) {
        let again = true;
        try {
          again = await this._onConnectFailure({
            code: ev.code,
            reason: ev.reason || "",
            attempt: this._attempt,
          });
        } catch (_) {
          again = true;
        }
        if (gen !== this._generation || !this._running) return;
        if (again === false) {
          this._running = false;
          return;
        }
        if (typeof again === "number" && again >= 0) {
          // The hook fixed something (a renewed token, say): retry after its delay.
          this._scheduleRetry(again);
          return;
        }
      }
      this._scheduleRetry();
    }

    _scheduleRetry(delayMs) {
      if (delayMs === undefined) {
        const { initialMs, maxMs } = this._backoff;
        const cap = Math.min(maxMs, initialMs * Math.pow(2, this._attempt));
        delayMs = Math.floor(Math.random() * cap);
      }
      this._attempt = Math.min(this._attempt + 1, 30);
      this._emit("reconnecting", { delayMs, attempt: this._attempt });
      this._retryTimer = setTimeout(() => this._open(), delayMs);
    }

    /** Rejects pending requests and marks every room as needing a new join. */
    _connectionLost(error) {
      const pending = Array.from(this._pending.values());
      this._pending.clear();
      for (const p of pending) {
        clearTimeout(p.timer);
        p.reject(error);
      }
      for (const [room, entry] of Array.from(this._rooms.entries())) {
        // Rooms the server joined us to are the server's to restore.
        if (entry.server) {
          this._rooms.delete(room);
          continue;
        }
        entry.state = null;
        entry.held = [];
        entry.ready = false;
        // A replay cut short: `pos` is its last message, so the re-join continues
        // right after it.
        entry.replaying = 0;
        entry.replayEnd = null;
      }
    }

    _sendJoin(room, entry) {
      const rejoin = entry.joinedOnce === true;
      entry.state = null;
      entry.held = [];
      entry.ready = false;
      entry.replaying = 0;
      entry.replayEnd = null;
      const op = { op: "join", room, meta: entry.meta };
      // Section 9: continue from the last message received; with `history`, the
      // server sends the recent messages instead when it cannot vouch for the gap.
      const since = entry.pos;
      if (since) op.since = { seq: since.seq, epoch: since.epoch };
      if (entry.history !== undefined) op.history = entry.history;
      this._sendRequest(
        op,
        (data) => this._onJoinReply(room, entry, rejoin, since, data),
        (error) => {
          // Lost with the connection: the next connection joins again.
          if (error.code === "disconnected" || error.code === "closed") return;
          if (this._rooms.get(room) !== entry) return;
          this._rooms.delete(room);
          entry.reject(error);
          this._emit("error", { code: error.code, message: error.message, room });
        },
      );
    }

    /**
     * A join reply, handled before the next frame (the replayed messages) is read.
     * Emits, in order: "presence" (the snapshot, then held diffs), "recovery" (on a
     * re-join), "joined"; then the replayed messages come as "message" events.
     */
    _onJoinReply(room, entry, rejoin, since, data) {
      if (this._rooms.get(room) !== entry || entry.ready) return;
      data = data || {};
      // Section 6: the snapshot is the state; then the diffs held since the join
      // was sent, in order; then each new one as it comes.
      entry.state = presenceFromWire(data.presence);
      this._setMode(entry, data);
      entry.ready = true;
      entry.joinedOnce = true;
      const position = positionOf(data);
      const replayed = Number.isSafeInteger(data.replayed) && data.replayed > 0 ? data.replayed : 0;
      // Without `since` there is nothing to recover (a first join, or a namespace
      // without history, where no message carries a position).
      const recovered = since !== null && data.recovered === true;
      if (!recovered) {
        // Whatever follows starts a new run: history (possibly older than, or of
        // another epoch than, what the application saw), then live messages.
        entry.pos = null;
      }
      if (replayed > 0) {
        entry.replaying = replayed;
        entry.replayEnd = position;
      } else if (position) {
        entry.pos = position;
      }
      const held = entry.held;
      entry.held = [];
      this._emitPresence(room, entry, true);
      this._emitCount(room, entry);
      for (const diff of held) this._onPresenceMsg(room, entry, diff);
      if (rejoin) {
        this._emit("recovery", {
          room,
          recovered,
          replayed,
          seq: position ? position.seq : undefined,
          epoch: position ? position.epoch : undefined,
        });
      }
      this._emit("joined", { room, data, rejoin });
      entry.resolve(data);
    }

    /**
     * A room `message`: emitted unless it is a stored message the application has
     * had already (same epoch, `seq` not past the kept position), which the server
     * never sends but costs nothing to rule out.
     */
    _onMessage(msg) {
      const entry = this._rooms.get(msg.room);
      const position = positionOf(msg);
      let replay = false;
      if (entry && position) {
        if (entry.replaying > 0) {
          replay = true;
          entry.replaying -= 1;
        }
        const kept = entry.pos;
        const duplicate = kept !== null && kept.epoch === position.epoch && position.seq <= kept.seq;
        if (!duplicate) entry.pos = position;
        if (entry.replaying === 0 && entry.replayEnd) {
          // The replay is over: the position is the reply's (normally this message's).
          const end = entry.replayEnd;
          entry.replayEnd = null;
          if (!entry.pos || entry.pos.epoch !== end.epoch || entry.pos.seq < end.seq) entry.pos = end;
        }
        if (duplicate) return;
      }
      this._emit("message", {
        room: msg.room,
        from: msg.from === undefined ? null : msg.from,
        data: msg.data,
        seq: position ? position.seq : undefined,
        epoch: position ? position.epoch : undefined,
        replay,
      });
    }

    _onFrame(text) {
      let msg;
      try {
        msg = JSON.parse(text);
      } catch (_) {
        this._emit("error", { code: "bad_frame", message: "the server sent invalid JSON" });
        return;
      }
      if (!msg || typeof msg !== "object") return;
      switch (msg.op) {
        case "welcome":
          this.user = msg.user;
          this.connId = msg.conn_id;
          this._attempt = 0;
          this._setStatus("online");
          this._emit("welcome", { user: msg.user, conn_id: msg.conn_id });
          break;
        case "reply": {
          const p = this._pending.get(msg.id);
          if (!p) return;
          this._pending.delete(msg.id);
          clearTimeout(p.timer);
          if (msg.ok) {
            p.resolve(msg.data === undefined ? {} : msg.data);
          } else {
            const e = msg.error || {};
            p.reject(new WshubError(e.code || "unknown", e.message));
          }
          break;
        }
        case "message":
          this._onMessage(msg);
          break;
        case "presence_diff":
        case "presence_count":
        case "presence_state": {
          const entry = this._rooms.get(msg.room);
          if (!entry) return;
          if (entry.ready) this._onPresenceMsg(msg.room, entry, msg);
          else entry.held.push(msg);
          break;
        }
        case "joined": {
          // The server joined this connection to a room. It is not re-joined after a
          // reconnect (the server decides that again); `leave(room)` leaves it.
          let entry = this._rooms.get(msg.room);
          if (!entry) {
            entry = {
              meta: {},
              state: null,
              held: [],
              ready: false,
              server: true,
              pos: null,
              replaying: 0,
              replayEnd: null,
            };
            entry.promise = Promise.resolve({ presence: msg.presence });
            entry.resolve = () => {};
            entry.reject = () => {};
            this._rooms.set(msg.room, entry);
          }
          entry.state = presenceFromWire(msg.presence);
          this._setMode(entry, msg);
          entry.ready = true;
          // Nothing is replayed after a server join: live messages follow its position.
          const position = positionOf(msg);
          if (position) entry.pos = position;
          this._emitPresence(msg.room, entry, true);
          this._emitCount(msg.room, entry);
          const data = { presence: msg.presence };
          if (msg.count) Object.assign(data, { count: msg.count, next: msg.next });
          if (position) Object.assign(data, position);
          this._emit("joined", { room: msg.room, data, server: true });
          break;
        }
        case "left": {
          // The server took this connection out of a room (a ban, a kick from it).
          const entry = this._rooms.get(msg.room);
          if (entry) {
            this._rooms.delete(msg.room);
            if (!entry.ready) entry.reject(new WshubError("left", msg.reason || "removed"));
          }
          this._emit("left", { room: msg.room, reason: msg.reason || "" });
          break;
        }
        case "direct":
          this._emit("direct", {
            from: msg.from === undefined ? null : msg.from,
            data: msg.data,
          });
          break;
        case "error": {
          const e = msg.error || {};
          this._emit("error", { code: e.code || "unknown", message: e.message || "" });
          break;
        }
        default:
        // Ops this client does not know are ignored: later revisions may add some.
      }
    }

    /** A join reply's (or `joined`'s) mode: big when it carries `count`. */
    _setMode(entry, data) {
      entry.count = countOf(data.count);
      entry.big = entry.count !== null;
      entry.next = entry.big && typeof data.next === "string" ? data.next : null;
    }

    _emitPresence(room, entry, snapshot, joined = [], left = []) {
      this._emit("presence", {
        room,
        presence: new Map(entry.state),
        joined,
        left,
        snapshot,
        big: !!entry.big,
        count: this.count(room),
      });
    }

    _emitCount(room, entry) {
      if (entry.big) this._emit("count", { room, ...this.count(room) });
    }

    /**
     * A room's `presence_diff`, `presence_count` or `presence_state` (section 6), once
     * its join reply is in. A count says the room is big (the first after a small
     * room grows big switches it); a state says it is small again and replaces the
     * presence.
     */
    _onPresenceMsg(room, entry, msg) {
      if (msg.op === "presence_diff") {
        this._applyDiff(room, entry, msg);
      } else if (msg.op === "presence_count") {
        const count = countOf(msg);
        if (!count) return;
        const switched = !entry.big;
        entry.big = true;
        entry.count = count;
        if (switched) this._emitPresence(room, entry, true);
        this._emitCount(room, entry);
      } else if (msg.op === "presence_state") {
        entry.big = false;
        entry.count = null;
        entry.next = null;
        entry.state = presenceFromWire(msg.presence);
        this._emitPresence(room, entry, true);
        this._emit("count", { room, ...this.count(room) });
      }
    }

    /**
     * Applies one diff (section 6): every user in `leaves` is removed entirely, then
     * every user in `joins` is added, skipping metas whose conn_id is already known.
     * Emits "presence" when the state changed; `joined` and `left` list the users that
     * actually came or went.
     */
    _applyDiff(room, entry, diff) {
      const state = entry.state;
      const joined = [];
      const left = [];
      let changed = false;
      for (const [user, gone] of Object.entries(diff.leaves || {})) {
        const had = state.get(user);
        if (had) {
          state.delete(user);
          changed = true;
          const metas = metasOf(gone);
          left.push({ user, metas: metas.length ? metas : had.metas });
        }
      }
      for (const [user, came] of Object.entries(diff.joins || {})) {
        const metas = metasOf(came);
        const known = state.get(user);
        if (!known) {
          state.set(user, { metas });
          joined.push({ user, metas });
          changed = true;
          continue;
        }
        for (const m of metas) {
          if (!known.metas.some((k) => k.conn_id === m.conn_id)) {
            known.metas.push(m);
            changed = true;
          }
        }
      }
      if (changed) this._emitPresence(room, entry, false, joined, left);
    }
  }

  WshubClient.WshubError = WshubError;
  return WshubClient;
});
