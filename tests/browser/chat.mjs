// Browser test of the chat example: two users (two browser contexts) in one room.
//
//   node tests/browser/chat.mjs http://127.0.0.1:PORT [--chromium PATH] [--screenshots DIR]
//
// Shows: both see each other's messages, names and the online list (and join/leave
// notices); the typing indicator appears and clears by itself; a second tab of the
// same user is not a second user (no duplicate, no leave when it closes); a message
// holding HTML renders as text; a refused name (HTML, an invisible character, taken)
// shows the server's reason; a forged token is refused with an error on the page;
// rooms made with #new-room-input are shared. Run by tests/browser_chat.rs.

import { log, runScript, waitForState, waitInPage } from "./lib.mjs";
import {
  activeRoom,
  assert,
  login,
  notices,
  onlineUsers,
  openAndLogin,
  send,
  sendAndSee,
  typingText,
  waitForMessage,
  waitForNotice,
  waitForOnline,
} from "./chat_page.mjs";

const XSS = "<img src=x onerror=alert(1)>";

/** A token that is not the server's: a JWT with its claims changed (signature kept),
 * or any other token with its characters changed. */
function forge(token) {
  if (typeof token !== "string" || token.length === 0) return "forged-token";
  const parts = token.split(".");
  if (parts.length === 3) {
    let claims = {};
    try {
      claims = JSON.parse(Buffer.from(parts[1], "base64url").toString());
    } catch {}
    claims.sub = "mallory-admin";
    claims.name = "mallory";
    return [parts[0], Buffer.from(JSON.stringify(claims)).toString("base64url"), parts[2]].join(".");
  }
  const flipped = [...token].map((c) => (c === "a" ? "b" : c === "0" ? "1" : c)).join("");
  return flipped === token ? token + "x" : flipped;
}

runScript("chat", async (run, { url }) => {
  const out = {};

  run.step("alice and bob log in");
  const ctxA = await run.newContext();
  const ctxB = await run.newContext();
  const { page: alice, login: aliceLogin } = await openAndLogin(run, ctxA, "alice", url, "alice");
  assert(aliceLogin && aliceLogin.status === 200 && typeof aliceLogin.body?.token === "string", () => `POST /login answered ${JSON.stringify(aliceLogin)}`);
  const { page: bob } = await openAndLogin(run, ctxB, "bob", url, "bob");
  const room = await activeRoom(alice);
  assert(/^chat:.+/.test(room), `active room ${JSON.stringify(room)} is not a chat:NAME room`);
  assert((await activeRoom(bob)) === room, "alice and bob start in different rooms");
  out.room = room;
  const loginForm = await alice.locator("#login-form").isVisible();
  log(`room ${room}; login form still visible after login: ${loginForm}`);

  run.step("online list shows both users");
  const onlineA = await waitForOnline(alice, ["alice", "bob"]);
  const onlineB = await waitForOnline(bob, ["alice", "bob"]);
  const ids = Object.fromEntries(onlineA.map((u) => [u.name, u.id]));
  assert(ids.alice && ids.bob && ids.alice !== ids.bob, () => `data-user ids ${JSON.stringify(onlineA)}`);
  assert(JSON.stringify(onlineB.map((u) => u.id).sort()) === JSON.stringify(onlineA.map((u) => u.id).sort()), () => `alice sees ${JSON.stringify(onlineA)}, bob sees ${JSON.stringify(onlineB)}`);
  out.user_ids = ids;
  await waitForNotice(alice, "bob joined");

  run.step("messages both ways (Enter and the send button)");
  await sendAndSee(alice, "hello from alice", "alice", [alice, bob]);
  const seen = await waitForMessage(bob, "hello from alice", "alice");
  assert(seen.time && seen.time.length > 0, () => `.time is empty: ${JSON.stringify(seen)}`);
  await sendAndSee(bob, "hi alice, bob here", "bob", [alice, bob], { via: "button" });
  out.message = seen;

  run.step("typing indicator appears and clears");
  const typedAt = Date.now();
  await alice.locator("#message-input").pressSequentially("hel", { delay: 40 });
  await waitInPage(bob, "bob sees \"alice is typing\" in #typing", () => /alice is typing/.test(document.querySelector("#typing")?.textContent ?? ""), null, {
    timeout: 5000,
    describe: () => `#typing is ${JSON.stringify(document.querySelector("#typing")?.textContent)}`,
  });
  out.typing_shown_after_ms = Date.now() - typedAt;
  const ownTyping = await typingText(alice);
  assert(!/alice/.test(ownTyping ?? ""), `alice is shown her own typing: ${JSON.stringify(ownTyping)}`);
  await waitInPage(bob, "#typing to clear by itself", () => (document.querySelector("#typing")?.textContent ?? "").trim() === "", null, {
    timeout: 8000,
    describe: () => `#typing is ${JSON.stringify(document.querySelector("#typing")?.textContent)}`,
  });
  out.typing_cleared_after_ms = Date.now() - typedAt;
  assert(out.typing_cleared_after_ms >= 1000, `#typing cleared after only ${out.typing_cleared_after_ms} ms`);
  await alice.locator("#message-input").fill("");

  run.step("a second tab of alice is not a second alice");
  const joinedNoticesBefore = (await notices(bob)).filter((n) => n.includes("alice joined")).length;
  const alice2 = await run.newPage(ctxA, "alice-tab2");
  await alice2.goto(url + "/");
  // The tab may log in by itself (stored credentials) or show the login form.
  await waitInPage(
    alice2,
    "the second tab to show the login form or go online",
    () => document.querySelector("#status")?.dataset.state === "online" || (document.querySelector("#name-input")?.offsetParent ?? null) !== null,
    null,
  );
  const tab2AutoLogin = (await alice2.evaluate(() => document.querySelector("#status")?.dataset.state)) === "online";
  if (!tab2AutoLogin) await login(alice2, "alice");
  await waitForState(alice2, "online");
  out.second_tab_auto_login = tab2AutoLogin;
  const online2 = await waitForOnline(alice2, ["alice", "bob"]);
  assert(online2.find((u) => u.name === "alice")?.id === ids.alice, () => `the second tab is another user: ${JSON.stringify(online2)} vs ${JSON.stringify(ids)}`);
  // A round trip through bob's connection: any presence diff from tab 2's join was
  // queued to bob before his own message comes back.
  await sendAndSee(bob, "sync after tab 2 joined", "bob", [bob, alice2]);
  for (const [label, p] of [["bob", bob], ["alice", alice]]) {
    const users = await onlineUsers(p);
    assert(users.filter((u) => u.id === ids.alice).length === 1 && users.length === 2, () => `${label}'s online list after alice's second tab: ${JSON.stringify(users)}`);
  }
  const joinedNoticesAfter = (await notices(bob)).filter((n) => n.includes("alice joined")).length;
  assert(joinedNoticesAfter === joinedNoticesBefore, `bob got another "alice joined" notice for alice's second tab (${joinedNoticesBefore} -> ${joinedNoticesAfter})`);
  await sendAndSee(alice2, "from alice's second tab", "alice", [alice, bob, alice2]);

  run.step("closing the second tab keeps alice online");
  await alice2.close();
  await bob.waitForTimeout(1000);
  await sendAndSee(bob, "sync after tab 2 closed", "bob", [bob, alice]);
  for (const [label, p] of [["bob", bob], ["alice", alice]]) {
    const users = await onlineUsers(p);
    assert(users.filter((u) => u.id === ids.alice).length === 1 && users.length === 2, () => `${label}'s online list after alice's second tab closed: ${JSON.stringify(users)}`);
  }
  const left = (await notices(bob)).filter((n) => n.includes("alice left"));
  assert(left.length === 0, `bob was told ${JSON.stringify(left)} when only alice's second tab closed`);
  await waitForState(alice, "online", 1000);
  await sendAndSee(alice, "first tab still works", "alice", [bob]);

  run.step("HTML in a message renders as text");
  await sendAndSee(bob, XSS, "bob", [alice, bob]);
  for (const [label, p] of [["alice", alice], ["bob", bob]]) {
    const m = await waitForMessage(p, XSS, "bob");
    assert(m.text === XSS, `${label}: .text is ${JSON.stringify(m.text)}`);
    const imgs = await p.evaluate(() => document.querySelectorAll("#messages img").length);
    assert(imgs === 0, `${label}: ${imgs} <img> element(s) in #messages`);
  }
  await alice.waitForTimeout(300); // an onerror handler would have fired by now
  assert(run.dialogs.length === 0, () => `a dialog fired: ${JSON.stringify(run.dialogs)}`);
  out.xss_html = (await waitForMessage(alice, XSS, "bob")).html;

  run.step("a refused name: the page shows the server's reason");
  // Names are checked by the server (examples/chat/names.rs): HTML or invisible
  // characters never make it into a name, and a taken one is refused.
  const ctxE = await run.newContext();
  const eve = await run.newPage(ctxE, "eve");
  await eve.goto(url + "/");
  out.name_refusals = {};
  for (const [what, name, status] of [
    ["html", "<b>eve</b>", 400],
    ["invisible", "al\u00ADice", 400],
    ["taken", "Alice", 409],
  ]) {
    const answer = await login(eve, name);
    assert(answer?.status === status && typeof answer.body?.error === "string", () => `POST /login ${JSON.stringify(name)} answered ${JSON.stringify(answer)}`);
    const expected = `Login failed: ${answer.body.error}`;
    await waitInPage(eve, `#error to say ${JSON.stringify(expected)}`, (text) => (document.querySelector("#error")?.textContent ?? "").trim() === text, expected, {
      describe: () => `#error ${JSON.stringify(document.querySelector("#error")?.textContent)}`,
    });
    assert(await eve.locator("#error").isVisible(), "#error holds the refusal but is not visible");
    assert(await eve.locator("#login-form").isVisible(), `the login form is gone after refusing ${JSON.stringify(name)}`);
    out.name_refusals[what] = expected;
  }
  const usersAfterEve = await onlineUsers(alice);
  assert(usersAfterEve.length === 2, () => `alice's online list after eve's refused logins: ${JSON.stringify(usersAfterEve)}`);
  await ctxE.close();

  run.step("names come from the server's presence, not from a client's meta");
  // A raw client signed in as "trudy" joins alice's room claiming to be "alice" in its
  // own meta: the online list shows "trudy" (stamped by the server from her token).
  const trudy = await alice.evaluate(async ({ room }) => {
    const resp = await fetch("/login", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name: "trudy" }),
    });
    const { token } = await resp.json();
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${location.host}/ws?token=${encodeURIComponent(token)}`, "wshub.v1");
    window.__trudy = ws;
    return new Promise((resolve, reject) => {
      ws.onmessage = (e) => {
        const m = JSON.parse(e.data);
        if (m.op === "welcome") ws.send(JSON.stringify({ op: "join", room, id: 1, meta: { name: "alice" } }));
        if (m.op === "reply" && m.id === 1) resolve(m);
      };
      ws.onerror = () => reject(new Error("trudy's socket failed"));
    });
  }, { room });
  assert(trudy.ok === true, () => `trudy's join: ${JSON.stringify(trudy)}`);
  const withTrudy = await waitForOnline(alice, ["alice", "bob", "trudy"]);
  assert(withTrudy.filter((u) => u.name === "alice").length === 1, () => `two "alice" entries: ${JSON.stringify(withTrudy)}`);
  out.server_stamped_names = withTrudy.map((u) => u.name).sort();
  await alice.evaluate(() => window.__trudy.close());
  await waitForOnline(alice, ["alice", "bob"]);

  run.step("a forged token is refused and the page says so");
  const ctxM = await run.newContext();
  const mallory = await run.newPage(ctxM, "mallory");
  let forged = null;
  await mallory.route(
    (u) => new URL(u).pathname.endsWith("/login"),
    async (route) => {
      if (route.request().method() !== "POST") return route.continue();
      const resp = await route.fetch();
      const body = await resp.json();
      forged = forge(body.token);
      log(`forging token: ${String(body.token).slice(0, 24)}… -> ${forged.slice(0, 24)}…`);
      await route.fulfill({ response: resp, json: { ...body, token: forged } });
    },
  );
  await mallory.goto(url + "/");
  await login(mallory, "mallory");
  await waitInPage(mallory, "an error in #error", () => (document.querySelector("#error")?.textContent ?? "").trim() !== "", null, {
    timeout: 10000,
    describe: () => `#error ${JSON.stringify(document.querySelector("#error")?.textContent)}, #status ${document.querySelector("#status")?.dataset.state}`,
  });
  assert(forged !== null, "the page never called POST /login");
  out.forged_error = await mallory.evaluate(() => document.querySelector("#error").textContent.trim());
  assert(await mallory.locator("#error").isVisible(), `#error holds ${JSON.stringify(out.forged_error)} but is not visible`);
  const mState = await mallory.evaluate(() => document.querySelector("#status")?.dataset.state);
  assert(mState !== "online", `the forged token's page is online`);
  out.forged_status = mState;
  const usersNow = await onlineUsers(alice);
  assert(!usersNow.some((u) => /mallory/.test(u.name)), () => `mallory is in alice's online list: ${JSON.stringify(usersNow)}`);
  await ctxM.close();

  run.step("a new room made with #new-room-input is shared");
  const roomName = "e2e-" + Math.random().toString(36).slice(2, 8);
  for (const p of [alice, bob]) {
    await p.locator("#new-room-input").fill(roomName);
    await p.locator("#new-room-button").click();
    await waitInPage(p, `room chat:${roomName} to become active`, (r) => document.querySelector(`#room-list .room.active`)?.dataset.room === r, `chat:${roomName}`, {
      describe: () => "#room-list holds " + document.querySelector("#room-list")?.innerHTML.slice(0, 600),
    });
  }
  await waitForOnline(alice, ["alice", "bob"]);
  await sendAndSee(alice, "in the new room", "alice", [alice, bob]);
  out.new_room = `chat:${roomName}`;

  run.step("the rooms-with-people panel (the rooms.list RPC) shows the new room and its 2 users");
  for (const p of [alice, bob]) {
    await waitInPage(p, `#busy-rooms to list chat:${roomName} with 2 users`, (r) => document.querySelector(`#busy-rooms .busy-room[data-room="${r}"]`)?.dataset.users === "2", `chat:${roomName}`, {
      describe: () => "#busy-rooms holds " + document.querySelector("#busy-rooms")?.innerHTML.slice(0, 600),
    });
  }
  out.busy_rooms = await alice.evaluate(() =>
    Array.from(document.querySelectorAll("#busy-rooms .busy-room")).map((li) => [li.dataset.room, Number(li.dataset.users)]),
  );

  run.step("bob leaves: alice is told and the online list shrinks");
  const bobLeftBefore = (await notices(alice)).filter((n) => n.includes("bob left")).length;
  await ctxB.close();
  await waitForNotice(alice, "bob left", { already: bobLeftBefore });
  await waitForOnline(alice, ["alice"]);

  return out;
});
