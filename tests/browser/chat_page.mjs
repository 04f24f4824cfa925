// Driving the chat example's page (examples/chat/) through its DOM contract:
//
//   #login-form (#name-input, #login-button), #error,
//   #status[data-state = connecting | online | offline],
//   #room-list .room[data-room="chat:NAME"] (.active = current), #new-room-input, #new-room-button,
//   #messages: .message (.author, .time, .text) and .notice ("alice joined" / "alice left";
//     .notice.gap "...some messages may be missing..." first after a failed recovery),
//   #online .user[data-user=USER_ID] (text = display name),
//   #typing ("alice is typing..." or empty), #message-input, #send-button (Enter sends).

import { assert, log, waitForState, waitInPage } from "./lib.mjs";

/** Opens the chat page and logs in as `name`; resolves with the /login JSON answer
 * (or null when the page logged in without asking, e.g. from stored credentials). */
export async function openAndLogin(run, ctx, label, url, name, { expectOnline = true } = {}) {
  const page = await run.newPage(ctx, label);
  await page.goto(url + "/");
  const login = await login_(page, name);
  if (expectOnline) await waitForState(page, "online");
  return { page, login };
}

async function login_(page, name) {
  await page.locator("#name-input").waitFor({ state: "visible" });
  await page.locator("#name-input").fill(name);
  const answer = page
    .waitForResponse((r) => r.request().method() === "POST" && new URL(r.url()).pathname.endsWith("/login"), {
      timeout: 10000,
    })
    .then(async (r) => ({ status: r.status(), body: await r.json().catch(() => null) }))
    .catch(() => null);
  await page.locator("#login-button").click();
  return await answer;
}
export { login_ as login };

/** Sends `text` with the message input, by Enter (default) or the send button. */
export async function send(page, text, { via = "enter" } = {}) {
  const input = page.locator("#message-input");
  await input.fill(text);
  if (via === "enter") await input.press("Enter");
  else await page.locator("#send-button").click();
  // The input is cleared once the message is sent.
  await waitInPage(page, "the message input to be cleared after sending", () => document.querySelector("#message-input").value === "", null, { timeout: 5000 });
}

const describeMessages = () =>
  "#messages holds " +
  JSON.stringify(
    [...document.querySelectorAll("#messages > *")].slice(-12).map((e) => `${e.className}: ${e.textContent.trim().slice(0, 80)}`),
  );

/** Waits for a `.message` whose `.text` is exactly `text` (and `.author` is `author`);
 * returns its parts. */
export async function waitForMessage(page, text, author, timeout = 10000) {
  await waitInPage(
    page,
    `message ${JSON.stringify(text)} from ${author}`,
    ([text, author]) =>
      [...document.querySelectorAll("#messages .message")].some(
        (m) => m.querySelector(".text")?.textContent === text && (author === null || m.querySelector(".author")?.textContent.trim() === author),
      ),
    [text, author],
    { timeout, describe: describeMessages },
  );
  return await page.evaluate(([text]) => {
    const m = [...document.querySelectorAll("#messages .message")].reverse().find((m) => m.querySelector(".text")?.textContent === text);
    return {
      author: m.querySelector(".author")?.textContent.trim(),
      time: m.querySelector(".time")?.textContent.trim(),
      text: m.querySelector(".text")?.textContent,
      html: m.querySelector(".text")?.innerHTML,
    };
  }, [text]);
}

/** The `.message` texts in #messages, in order. */
export async function messageTexts(page) {
  return page.evaluate(() => [...document.querySelectorAll("#messages .message .text")].map((t) => t.textContent));
}

/** The `.notice` texts in #messages. */
export async function notices(page) {
  return page.evaluate(() => [...document.querySelectorAll("#messages .notice")].map((n) => n.textContent.trim()));
}

/** Waits for more than `already` `.notice`s containing `text`. */
export async function waitForNotice(page, text, { already = 0, timeout = 10000 } = {}) {
  await waitInPage(
    page,
    `notice ${JSON.stringify(text)}${already ? ` (after the ${already} already there)` : ""}`,
    ([text, already]) => [...document.querySelectorAll("#messages .notice")].filter((n) => n.textContent.includes(text)).length > already,
    [text, already],
    { timeout, describe: describeMessages },
  );
}

/** `#online .user` entries: `[{id, name}]`. */
export async function onlineUsers(page) {
  return page.evaluate(() => [...document.querySelectorAll("#online .user")].map((u) => ({ id: u.dataset.user, name: u.textContent.trim() })));
}

/** Waits until the online list shows exactly `names` (any order, no duplicates). */
export async function waitForOnline(page, names, timeout = 10000) {
  const want = [...names].sort();
  await waitInPage(
    page,
    `online list ${JSON.stringify(want)}`,
    (want) => {
      const got = [...document.querySelectorAll("#online .user")].map((u) => u.textContent.trim()).sort();
      return JSON.stringify(got) === JSON.stringify(want);
    },
    want,
    {
      timeout,
      describe: () =>
        "#online holds " + JSON.stringify([...document.querySelectorAll("#online .user")].map((u) => ({ id: u.dataset.user, name: u.textContent.trim() }))),
    },
  );
  return onlineUsers(page);
}

/** `#typing` text, trimmed. */
export async function typingText(page) {
  return page.evaluate(() => document.querySelector("#typing")?.textContent.trim() ?? null);
}

/** The active room's `data-room`. */
export async function activeRoom(page) {
  await waitInPage(page, "an active room in #room-list", () => document.querySelector("#room-list .room.active") !== null, null, {
    describe: () => "#room-list holds " + document.querySelector("#room-list")?.innerHTML.slice(0, 400),
  });
  return page.evaluate(() => document.querySelector("#room-list .room.active").dataset.room);
}

/** Sends a message and waits until every page in `readers` shows it. */
export async function sendAndSee(page, text, author, readers, opts = {}) {
  await send(page, text, opts);
  for (const r of readers) await waitForMessage(r, text, author);
  log(`"${text}" from ${author} seen by ${readers.length} page(s)`);
}

export { assert };
