// Browser test of the chat example as a cluster: three chat nodes on one Redis behind
// nginx (deploy/nginx.conf, round-robin, no stickiness). Two users (two browser
// contexts) whose WebSockets land on different nodes see each other in the online list
// and exchange messages.
//
//   node tests/browser/chat_cluster.mjs http://127.0.0.1:PORT [--chromium PATH] [--screenshots DIR]
//
// Control commands (answered by tests/browser_chat_cluster.rs):
//   `where`: "ok apart A B" when alice's and bob's connections are each on one node and
//   those differ (A and B: the nodes' indexes), "ok together" or "ok moving" otherwise.

import { control, log, runScript, waitForState, waitInPage } from "./lib.mjs";
import { assert, login, openAndLogin, sendAndSee, waitForOnline } from "./chat_page.mjs";

runScript("chat_cluster", async (run, { url }) => {
  const out = {};

  run.step("alice and bob log in through nginx");
  const ctxA = await run.newContext();
  const ctxB = await run.newContext();
  const { page: alice } = await openAndLogin(run, ctxA, "alice", url, "alice");
  let { page: bob } = await openAndLogin(run, ctxB, "bob", url, "bob");

  run.step("their connections are on different nodes");
  // Round-robin spreads requests, not users: if both sockets landed on one node, bob
  // reloads the page (a new socket, on the next node in turn).
  let where = "";
  for (let attempt = 0; attempt < 8; attempt++) {
    await waitForState(alice, "online");
    await waitForState(bob, "online");
    where = await control("where");
    if (where.startsWith("ok apart")) break;
    log(`attempt ${attempt}: ${where}; bob reloads`);
    out.reloads = (out.reloads ?? 0) + 1;
    await bob.reload();
    await waitInPage(
      bob,
      "bob's page to go online or show the login form",
      () => document.querySelector("#status")?.dataset.state === "online" || (document.querySelector("#name-input")?.offsetParent ?? null) !== null,
      null,
    );
    const online = (await bob.evaluate(() => document.querySelector("#status")?.dataset.state)) === "online";
    if (!online) await login(bob, "bob");
  }
  assert(where.startsWith("ok apart"), `alice and bob never on different nodes: ${where}`);
  out.where = where.replace(/^ok /, "");

  run.step("each sees both in the online list");
  await waitForOnline(alice, ["alice", "bob"]);
  await waitForOnline(bob, ["alice", "bob"]);

  run.step("messages both ways, across nodes");
  await sendAndSee(alice, "hello from alice's node", "alice", [alice, bob]);
  await sendAndSee(bob, "and from bob's", "bob", [alice, bob]);
  // Both sockets stayed where they were.
  const still = await control("where");
  assert(still === where, `the connections moved: ${where} -> ${still}`);

  out.ok = true;
  return out;
});
