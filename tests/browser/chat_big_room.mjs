// Browser test of the chat example in a big room (PROTOCOL.md section 6): the online
// panel shows the exact count ("5 online") and, for a page that joined the big room, the
// first page of members with a "Show more" button that pages through the rest.
//
//   node tests/browser/chat_big_room.mjs http://127.0.0.1:PORT [--chromium PATH] [--screenshots DIR]
//
// The server is started with rooms big above 2 users and pages of 2 users. Uses the
// control channel (see lib.mjs): `@@CONTROL crowd` makes the Rust side log in three
// more users (carol, dave, erin) and join them to the lobby over plain WebSockets.
// Run by tests/browser_chat_big_room.rs.

import { control, log, runScript, waitInPage } from "./lib.mjs";
import { assert, openAndLogin, waitForOnline } from "./chat_page.mjs";

/** Waits for the online panel's heading to read `text` (and its mode to be `big`). */
async function waitForCount(page, text, big) {
  await waitInPage(
    page,
    `#online-count to read ${JSON.stringify(text)} (big: ${big})`,
    ([text, big]) => {
      const h = document.querySelector("#online-count");
      return h && h.textContent.trim() === text && h.dataset.big === String(big);
    },
    [text, big],
    {
      describe: () => {
        const h = document.querySelector("#online-count");
        return `#online-count reads ${JSON.stringify(h && h.textContent)} (big: ${h && h.dataset.big})`;
      },
    },
  );
}

const shownUsers = (page) =>
  page.evaluate(() => [...document.querySelectorAll("#online .user")].map((u) => u.dataset.user).sort());

runScript("chat_big_room", async (run, { url }) => {
  const out = {};

  run.step("alice and bob: a small room, the whole list");
  const { page: alice } = await openAndLogin(run, await run.newContext(), "alice", url, "alice");
  const { page: bob } = await openAndLogin(run, await run.newContext(), "bob", url, "bob");
  await waitForOnline(alice, ["alice", "bob"]);
  await waitForCount(alice, "2 online", false);

  run.step("three more join: the room is big; alice sees the count");
  out.crowd = await control("crowd");
  await waitForCount(alice, "5 online", true);
  await waitForCount(bob, "5 online", true);
  out.alice_more_hidden = await alice.locator("#online-more").isHidden();

  run.step("frank joins the big room: the first page, then Show more until the end");
  const { page: frank } = await openAndLogin(run, await run.newContext(), "frank", url, "frank");
  await waitForCount(frank, "6 online", true);
  out.first_page = await shownUsers(frank);
  const more = frank.locator("#online-more");
  let clicks = 0;
  while (await more.isVisible()) {
    const before = (await shownUsers(frank)).length;
    await more.click();
    clicks += 1;
    assert(clicks <= 5, "Show more never ends");
    await waitInPage(
      frank,
      "the next page of members",
      ([before]) =>
        document.querySelectorAll("#online .user").length > before || document.querySelector("#online-more").hidden,
      [before],
    );
  }
  out.clicks = clicks;
  out.all_pages = await shownUsers(frank);
  log(`frank: first page ${JSON.stringify(out.first_page)}, ${clicks} clicks, then ${JSON.stringify(out.all_pages)}`);
  return out;
});
