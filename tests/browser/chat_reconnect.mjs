// Browser test of the chat example: the page reconnects by itself after the server
// restarts, and chat works again without a reload.
//
//   node tests/browser/chat_reconnect.mjs http://127.0.0.1:PORT [--chromium PATH] [--screenshots DIR]
//
// Uses the control channel (see lib.mjs): `@@CONTROL stop` makes the Rust side stop
// the server (WebSockets closed, port released); `@@CONTROL start` starts it again on
// the same port with the same token key, `@@CONTROL start-new-key` with another key
// (as a new process would: the pages' tokens are refused and they must sign in again
// by themselves). Run by tests/browser_chat.rs.

import { control, log, runScript, waitForState, waitInPage } from "./lib.mjs";
import { activeRoom, assert, openAndLogin, sendAndSee, waitForOnline } from "./chat_page.mjs";

runScript("chat_reconnect", async (run, { url }) => {
  const out = { rounds: [] };

  run.step("alice and bob log in and chat");
  const { page: alice } = await openAndLogin(run, await run.newContext(), "alice", url, "alice");
  const { page: bob } = await openAndLogin(run, await run.newContext(), "bob", url, "bob");
  const room = await activeRoom(alice);
  await waitForOnline(alice, ["alice", "bob"]);
  await waitForOnline(bob, ["alice", "bob"]);
  await sendAndSee(alice, "before the restarts", "alice", [bob]);

  // A reload would lose this marker; counting navigations catches one too.
  const navigations = { alice: 0, bob: 0 };
  for (const [label, p] of [["alice", alice], ["bob", bob]]) {
    await p.evaluate(() => {
      window.__wshubNoReload = "still here";
    });
    p.on("framenavigated", (f) => {
      if (f === p.mainFrame()) navigations[label] += 1;
    });
  }

  for (const start of ["start", "start-new-key"]) {
    const round = { start };
    run.step(`[${start}] the server stops: the pages notice`);
    await control("stop");
    const stoppedAt = Date.now();
    for (const p of [alice, bob]) await waitForState(p, ["offline", "connecting"], 10000);
    round.offline_after_ms = Date.now() - stoppedAt;
    // Let the pages fail a reconnection attempt or two against the closed port.
    await alice.waitForTimeout(1000);
    for (const p of [alice, bob]) {
      const s = await p.evaluate(() => document.querySelector("#status").dataset.state);
      assert(s !== "online", "a page says online while the server is down");
    }

    run.step(`[${start}] the server is back on the same port: the pages reconnect`);
    await control(start);
    const startedAt = Date.now();
    for (const p of [alice, bob]) await waitForState(p, "online", 20000);
    round.reconnect_ms = Date.now() - startedAt;

    run.step(`[${start}] no reload, same room, online list back, chat works`);
    for (const [label, p] of [["alice", alice], ["bob", bob]]) {
      const marker = await p.evaluate(() => window.__wshubNoReload);
      assert(marker === "still here" && navigations[label] === 0, `${label}'s page was reloaded (marker ${marker}, ${navigations[label]} navigation(s))`);
      const r = await activeRoom(p);
      assert(r === room, `${label} is in ${r} after reconnecting, was in ${room}`);
      const loginShown = await p.locator("#login-form").isVisible();
      assert(!loginShown, `${label}'s page asks to log in again`);
    }
    await waitForOnline(alice, ["alice", "bob"]);
    await waitForOnline(bob, ["alice", "bob"]);
    await sendAndSee(alice, `alice after ${start}`, "alice", [alice, bob]);
    await sendAndSee(bob, `bob after ${start}`, "bob", [alice, bob], { via: "button" });
    for (const [label, p] of [["alice", alice], ["bob", bob]]) {
      await waitInPage(p, `${label}'s #error to be empty once reconnected`, () => (document.querySelector("#error")?.textContent ?? "").trim() === "", null, {
        timeout: 3000,
        describe: () => `#error is ${JSON.stringify(document.querySelector("#error")?.textContent)}`,
      });
    }
    log(`round ${start}: ${JSON.stringify(round)}`);
    out.rounds.push(round);
  }
  return out;
});
