// Shared harness for the browser tests (tests/browser/*.mjs).
//
// Each script is run by a Rust test (tests/browser_chat.rs, tests/browser_news.rs)
// that starts the example server in-process and spawns:
//
//     node tests/browser/SCRIPT.mjs URL [--chromium PATH] [--screenshots DIR]
//
// The script drives headless Chromium with playwright-core (installed in
// tests/peers/node_modules by `npm ci --prefix tests/peers`; never downloads a
// browser) and prints, as its LAST stdout line, one JSON object:
//
//     {"ok": true, ...details}                       exit code 0
//     {"ok": false, "error": "...", "step": "...",   exit code 1
//      "screenshots": ["/abs/path.png", ...]}
//
// Control channel: a script that needs the Rust side to act (stop or start the
// server) prints `@@CONTROL <command>` on stdout and waits for ONE line on stdin,
// the answer (`ok ...` or `error ...`). Everything else (progress, browser console)
// goes to stderr, which the Rust side shows when the test fails.

import fs from "node:fs";
import path from "node:path";
import readline from "node:readline";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(here, "..", "..");
export const PEERS = path.join(REPO, "tests", "peers");

const INSTALL =
  "install the browser test dependencies, from the repository root: " +
  "`apt-get install chromium chromium-driver` (Debian) and `npm ci --prefix tests/peers` " +
  "(`bash .ci/run` does both)";

export const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--disable-dev-shm-usage",
];

/** `node SCRIPT URL [--chromium PATH] [--screenshots DIR] [--timeout SECONDS]` */
export function parseArgs(argv = process.argv.slice(2)) {
  const opts = {
    url: null,
    chromium: process.env.WSHUB_CHROMIUM || "/usr/bin/chromium",
    screenshots: path.join(REPO, "target", "browser-screenshots"),
    timeout: 50,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--chromium") opts.chromium = argv[++i];
    else if (a === "--screenshots") opts.screenshots = argv[++i];
    else if (a === "--timeout") opts.timeout = Number(argv[++i]);
    else if (!a.startsWith("--") && opts.url === null) opts.url = a;
    else throw new Error(`unknown argument ${a}`);
  }
  if (!opts.url) throw new Error("usage: node SCRIPT.mjs URL [--chromium PATH] [--screenshots DIR]");
  opts.url = opts.url.replace(/\/+$/, "");
  return opts;
}

const t0 = Date.now();
export function log(...args) {
  const t = ((Date.now() - t0) / 1000).toFixed(2).padStart(6);
  process.stderr.write(`[${t}s] ${args.join(" ")}\n`);
}

function loadPlaywright() {
  const require = createRequire(path.join(PEERS, "package.json"));
  try {
    return require("playwright-core");
  } catch (e) {
    throw new Error(`playwright-core is not installed in ${PEERS}/node_modules (${e.message}); ${INSTALL}`);
  }
}

// ---------------------------------------------------------------------------
// stdin control channel
// ---------------------------------------------------------------------------
let stdinLines = null;
const waiting = [];
const buffered = [];
function stdinReader() {
  if (stdinLines) return;
  stdinLines = readline.createInterface({ input: process.stdin });
  stdinLines.on("line", (line) => {
    const w = waiting.shift();
    if (w) w(line);
    else buffered.push(line);
  });
  stdinLines.on("close", () => {
    while (waiting.length) waiting.shift()(null);
  });
}

/** Asks the Rust side to do `command`; resolves with its answer line (`ok ...`). */
export async function control(command, timeoutMs = 20000) {
  stdinReader();
  log(`control: ${command}`);
  process.stdout.write(`@@CONTROL ${command}\n`);
  const answer = await new Promise((resolve, reject) => {
    if (buffered.length) return resolve(buffered.shift());
    const timer = setTimeout(() => reject(new Error(`no answer to control command \`${command}\` within ${timeoutMs} ms`)), timeoutMs);
    waiting.push((line) => {
      clearTimeout(timer);
      resolve(line);
    });
  });
  if (answer === null) throw new Error(`stdin closed while waiting for an answer to \`${command}\``);
  log(`control: ${command} -> ${answer}`);
  if (!answer.startsWith("ok")) throw new Error(`control command \`${command}\` failed: ${answer}`);
  return answer;
}

// ---------------------------------------------------------------------------
// The test run: browser, tracked pages, steps, screenshots, final JSON line.
// ---------------------------------------------------------------------------
export class Run {
  constructor(name, opts) {
    this.name = name;
    this.opts = opts;
    this.browser = null;
    this.pages = []; // {label, page}
    this.dialogs = []; // {label, type, message}
    this.pageErrors = []; // {label, message}
    this.currentStep = "start";
    this.steps = [];
    this.stepStart = Date.now();
  }

  step(name) {
    this.steps.push({ step: this.currentStep, ms: Date.now() - this.stepStart });
    this.currentStep = name;
    this.stepStart = Date.now();
    log(`--- ${name}`);
  }

  async launch() {
    if (!fs.existsSync(this.opts.chromium)) {
      throw new Error(`Chromium not found at ${this.opts.chromium} (set WSHUB_CHROMIUM to another path); ${INSTALL}`);
    }
    const { chromium } = loadPlaywright();
    this.browser = await chromium.launch({
      executablePath: this.opts.chromium,
      args: CHROMIUM_ARGS,
      timeout: 20000,
    });
    log(`chromium ${this.browser.version()}`);
    return this.browser;
  }

  /** A fresh browser context (one user: its own cookies and storage). */
  async newContext() {
    const ctx = await this.browser.newContext({ viewport: { width: 1000, height: 800 } });
    ctx.setDefaultTimeout(10000);
    return ctx;
  }

  /** A new tracked page in `ctx`: console, page errors and dialogs are recorded. */
  async newPage(ctx, label) {
    const page = await ctx.newPage();
    this.pages.push({ label, page });
    page.on("console", (m) => log(`[${label} console.${m.type()}] ${m.text()}`));
    page.on("pageerror", (e) => {
      log(`[${label} pageerror] ${e.message}`);
      this.pageErrors.push({ label, message: e.message });
    });
    page.on("dialog", async (d) => {
      log(`[${label} DIALOG ${d.type()}] ${d.message()}`);
      this.dialogs.push({ label, type: d.type(), message: d.message() });
      await d.dismiss().catch(() => {});
    });
    page.on("websocket", (ws) => {
      log(`[${label} websocket] open ${ws.url().replace(/token=[^&]*/, "token=…")}`);
      ws.on("close", () => log(`[${label} websocket] closed`));
    });
    return page;
  }

  async screenshots() {
    const files = [];
    try {
      fs.mkdirSync(this.opts.screenshots, { recursive: true });
    } catch (e) {
      log(`cannot create ${this.opts.screenshots}: ${e.message}`);
      return files;
    }
    const stamp = new Date().toISOString().replace(/[:.]/g, "-");
    for (const { label, page } of this.pages) {
      if (page.isClosed()) continue;
      const file = path.join(this.opts.screenshots, `${this.name}-${stamp}-${label}.png`);
      try {
        await page.screenshot({ path: file, fullPage: true, timeout: 5000 });
        files.push(file);
        // The DOM too: often more useful than the picture.
        const html = await page.content();
        fs.writeFileSync(file.replace(/\.png$/, ".html"), html);
      } catch (e) {
        log(`screenshot of ${label} failed: ${e.message}`);
      }
    }
    return files;
  }

  /** Runs `body(run)`; prints the final JSON line and exits. */
  async main(body) {
    let result;
    let failed = null;
    const timeoutMs = this.opts.timeout * 1000;
    let timer;
    try {
      await this.launch();
      result = await Promise.race([
        body(this),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`script timed out after ${this.opts.timeout} s`)), timeoutMs);
        }),
      ]);
      if (this.dialogs.length) {
        throw new Error(`unexpected dialog(s): ${JSON.stringify(this.dialogs)}`);
      }
    } catch (e) {
      failed = e;
    }
    clearTimeout(timer);
    const failedStep = this.currentStep;
    this.step("end");
    let out;
    if (failed) {
      log(`FAILED in step "${failedStep}": ${failed.stack || failed}`);
      const shots = this.browser ? await this.screenshots() : [];
      out = {
        ok: false,
        error: String(failed.message || failed)
          .replace(/\u001b\[[0-9;]*m/g, "")
          .split("\n")
          .slice(0, 12)
          .join("\n"),
        step: failedStep,
        screenshots: shots,
        screenshot_dir: this.opts.screenshots,
        dialogs: this.dialogs,
        page_errors: this.pageErrors,
      };
    } else {
      out = { ok: true, ...result, dialogs: this.dialogs, page_errors: this.pageErrors, steps: this.steps };
    }
    if (this.browser) {
      await Promise.race([this.browser.close().catch(() => {}), new Promise((r) => setTimeout(r, 5000))]);
    }
    if (stdinLines) stdinLines.close();
    // Exit once the line is out (stdout may be a pipe).
    process.stdout.write(JSON.stringify(out) + "\n", () => process.exit(failed ? 1 : 0));
  }
}

/** Runs a script: parses the arguments and calls `body(run, opts)`. */
export function runScript(name, body) {
  let opts;
  try {
    opts = parseArgs();
  } catch (e) {
    process.stdout.write(JSON.stringify({ ok: false, error: e.message, step: "arguments" }) + "\n");
    process.exit(2);
  }
  const run = new Run(name, opts);
  run.main((r) => body(r, opts));
}

// ---------------------------------------------------------------------------
// Small DOM helpers shared by the scripts.
// ---------------------------------------------------------------------------

/** Asserts `cond`, with `msg` (a string or a function returning one). */
export function assert(cond, msg) {
  if (!cond) throw new Error(typeof msg === "function" ? msg() : msg);
}

/** Waits until `#status` has `data-state` equal to `state` (or one of `state`). */
export async function waitForState(page, state, timeout = 10000) {
  const states = Array.isArray(state) ? state : [state];
  try {
    await page.waitForFunction(
      (states) => states.includes(document.querySelector("#status")?.dataset.state),
      states,
      { timeout },
    );
  } catch (e) {
    const now = await page.evaluate(() => {
      const s = document.querySelector("#status");
      return s ? `data-state=${JSON.stringify(s.dataset.state)} text=${JSON.stringify(s.textContent.trim())}` : "no #status element";
    }).catch(() => "?");
    const err = await page.evaluate(() => document.querySelector("#error")?.textContent.trim()).catch(() => "");
    throw new Error(`#status never reached data-state ${states.join("|")} within ${timeout} ms (now ${now}; #error: ${JSON.stringify(err)})`);
  }
}

/** Waits until `fn(arg)` (evaluated in the page) is truthy; on timeout, throws `what`
 * with `describe()` (evaluated in the page) appended. */
export async function waitInPage(page, what, fn, arg, { timeout = 10000, describe = null } = {}) {
  try {
    await page.waitForFunction(fn, arg, { timeout, polling: 50 });
  } catch (e) {
    let detail = "";
    if (describe) detail = await page.evaluate(describe, arg).catch((e2) => `(cannot describe: ${e2.message})`);
    throw new Error(`${what}: not within ${timeout} ms${detail ? `; ${typeof detail === "string" ? detail : JSON.stringify(detail)}` : ""}`);
  }
}
