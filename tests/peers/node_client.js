#!/usr/bin/env node
// Interop peer: a Node `ws` client that checks an echo server.
//
// Usage: node node_client.js URL [--no-compression] [--seed N] [--timeout SECS]
//
// For text and binary messages of 0, 125, 126, 65535, 65536 and 1048576 bytes,
// each sent unfragmented and fragmented (3..7 frames via `ws.send(chunk,
// {fin: false})` ... `{fin: true}`), it sends the message to the echo server at
// URL and checks that the echo is byte-exact and of the same type.
//
// Payloads are random (seeded, the seed is printed): random bytes for binary,
// random valid UTF-8 for text with 1- to 4-byte characters, sized in BYTES
// exactly. Fragmented text is split at random byte offsets, at least one of
// them in the middle of a multi-byte character, so the receiver must validate
// UTF-8 across frame boundaries.
//
// Progress goes to stdout, one line per case. The LAST stdout line is always
// one JSON object, e.g.
//     {"ok": true, "cases": 24, "deflate": true, "close_code": 1000, ...}
// Exit code: 0 when every case passed and the server echoed close code 1000,
// 1 on the first failure (the JSON line then has "ok": false and "error").
//
// Compression: permessage-deflate is offered by default (`perMessageDeflate:
// true`); --no-compression offers no extension. "deflate" in the JSON is taken
// from `ws.extensions` after the handshake.
'use strict';

const path = require('path');

let WebSocket;
try {
  WebSocket = require('ws');
} catch (e) {
  console.log(JSON.stringify({
    ok: false,
    error: 'Node package `ws` is missing: run `npm ci --prefix tests/peers` ' +
      `(looked from ${path.join(__dirname, 'node_modules')}): ${e.message}`,
  }));
  process.exit(2);
}
const wsVersion = require('ws/package.json').version;

const SIZES = [0, 125, 126, 65535, 65536, 1048576];

// Characters by UTF-8 length, boundary code points included on purpose
// (U+007F/U+0080, U+07FF/U+0800, U+FFFF/U+10000, U+10FFFF, U+FFFD).
const CHARS_1 = [];
for (let c = 0x20; c < 0x7f; c++) CHARS_1.push(String.fromCodePoint(c));
CHARS_1.push('\u0000', '\t', '\n', '\u007f');
const CHARS_2 = ['\u0080', 'é', 'ß', 'ж', 'λ', 'ñ', '\u07ff'];
const CHARS_3 = ['\u0800', '€', '中', '文', 'ह', '\ufffd', '\uffff'];
const CHARS_4 = ['\u{10000}', '😀', '🦀', '𝄞', '\u{10ffff}'];

function log(line) {
  process.stdout.write(line + '\n');
}

// mulberry32: small seeded PRNG so a failing run can be replayed with --seed.
function makeRng(seed) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)), // inclusive
    choice: (arr) => arr[Math.floor(next() * arr.length)],
    bytes: (n) => {
      const buf = Buffer.allocUnsafe(n);
      for (let i = 0; i < n; i += 4) {
        const v = Math.floor(next() * 4294967296);
        for (let j = 0; j < 4 && i + j < n; j++) buf[i + j] = (v >>> (8 * j)) & 0xff;
      }
      return buf;
    },
  };
}

function randomText(rng, nbytes) {
  const out = [];
  let remaining = nbytes;
  const tables = [CHARS_1, CHARS_1, CHARS_2, CHARS_3, CHARS_4];
  while (remaining > 0) {
    let table = rng.choice(tables);
    let width = Buffer.byteLength(table[0], 'utf8');
    if (width > remaining) {
      table = CHARS_1;
      width = 1;
    }
    out.push(rng.choice(table));
    remaining -= width;
  }
  const data = Buffer.from(out.join(''), 'utf8');
  if (data.length !== nbytes) throw new Error(`text generator made ${data.length} bytes, wanted ${nbytes}`);
  return data;
}

function splitPoints(rng, payload, isText) {
  const nfrag = rng.int(3, 7);
  const size = payload.length;
  const cuts = [];
  for (let i = 0; i < nfrag - 1; i++) cuts.push(rng.int(0, size));
  if (isText && size > 0) {
    // Force one cut inside a multi-byte character (before a continuation byte).
    const start = rng.int(0, size - 1);
    for (let k = 0; k < size; k++) {
      const i = (start + k) % size;
      if ((payload[i] & 0xc0) === 0x80) {
        cuts[rng.int(0, cuts.length - 1)] = i;
        break;
      }
    }
  }
  return cuts.sort((x, y) => x - y);
}

function fragments(payload, cuts) {
  const bounds = [0, ...cuts, payload.length];
  const out = [];
  for (let i = 0; i + 1 < bounds.length; i++) out.push(payload.subarray(bounds[i], bounds[i + 1]));
  return out;
}

function describeMismatch(sent, got) {
  if (sent.length !== got.length) {
    return `length differs: sent ${sent.length} bytes, echo has ${got.length} bytes`;
  }
  for (let i = 0; i < sent.length; i++) {
    if (sent[i] !== got[i]) {
      return `first difference at byte ${i}: sent 0x${sent[i].toString(16)}, echo 0x${got[i].toString(16)}`;
    }
  }
  return 'no difference found';
}

function parseArgs(argv) {
  const args = { url: null, noCompression: false, seed: null, timeout: 30 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--no-compression') args.noCompression = true;
    else if (a === '--seed') args.seed = Number(argv[++i]);
    else if (a === '--timeout') args.timeout = Number(argv[++i]);
    else if (a === '-h' || a === '--help') {
      log('usage: node_client.js URL [--no-compression] [--seed N] [--timeout SECS]');
      process.exit(0);
    } else if (a.startsWith('-') || args.url !== null) {
      console.error(`node_client.js: unexpected argument ${JSON.stringify(a)}`);
      process.exit(2);
    } else args.url = a;
  }
  if (args.url === null) {
    console.error('usage: node_client.js URL [--no-compression] [--seed N] [--timeout SECS]');
    process.exit(2);
  }
  if (args.seed === null) args.seed = Math.floor(Math.random() * 4294967296);
  return args;
}

class CaseFailed extends Error {}

// Turns the 'message'/'close'/'error' events into an awaitable queue.
function eventQueue(ws) {
  const items = [];
  const waiters = [];
  const push = (item) => {
    if (waiters.length) waiters.shift()(item);
    else items.push(item);
  };
  ws.on('message', (data, isBinary) => push({ type: 'message', data, isBinary }));
  ws.on('close', (code, reason) => push({ type: 'close', code, reason: reason.toString() }));
  ws.on('error', (err) => push({ type: 'error', err }));
  return (timeoutSecs, what) => {
    if (items.length) return Promise.resolve(items.shift());
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const idx = waiters.indexOf(waiter);
        if (idx >= 0) waiters.splice(idx, 1);
        reject(new CaseFailed(`${what}: nothing within ${timeoutSecs} s`));
      }, timeoutSecs * 1000);
      const waiter = (item) => {
        clearTimeout(timer);
        resolve(item);
      };
      waiters.push(waiter);
    });
  };
}

function sendAsync(ws, data, opts) {
  return new Promise((resolve, reject) => ws.send(data, opts, (err) => (err ? reject(err) : resolve())));
}

async function run(args, result) {
  const rng = makeRng(args.seed);
  const ws = new WebSocket(args.url, {
    perMessageDeflate: !args.noCompression,
    maxPayload: 64 * 1024 * 1024,
    handshakeTimeout: args.timeout * 1000,
  });
  const next = eventQueue(ws);
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) =>
      reject(new Error(`handshake refused: HTTP ${res.statusCode} ${res.statusMessage}`)));
  });
  result.extensions = ws.extensions;
  result.deflate = ws.extensions.split(',').map((s) => s.trim()).includes('permessage-deflate');
  log(`connected to ${args.url}; negotiated extensions: ${JSON.stringify(ws.extensions)}`);

  for (const size of SIZES) {
    for (const kind of ['text', 'binary']) {
      for (const fragmented of [false, true]) {
        const isText = kind === 'text';
        const payload = isText ? randomText(rng, size) : rng.bytes(size);
        const name = `${kind} ${size} bytes ${fragmented ? 'fragmented' : 'unfragmented'}`;
        result.case = name;
        let detail;
        if (fragmented) {
          const frags = fragments(payload, splitPoints(rng, payload, isText));
          for (let i = 0; i < frags.length; i++) {
            // A Buffer with binary: false goes out as text; cuts may fall inside a character.
            await sendAsync(ws, frags[i], { binary: !isText, fin: i === frags.length - 1 });
          }
          detail = `${frags.length} fragments [${frags.map((f) => f.length).join(', ')}]`;
        } else {
          await sendAsync(ws, payload, { binary: !isText });
          detail = '1 frame';
        }
        const ev = await next(args.timeout, `${name}: waiting for the echo`);
        if (ev.type === 'close') {
          throw new CaseFailed(`${name}: server closed the connection (code ${ev.code} ${JSON.stringify(ev.reason)}) instead of echoing`);
        }
        if (ev.type === 'error') throw new CaseFailed(`${name}: ${ev.err.message}`);
        if (ev.isBinary === isText) {
          throw new CaseFailed(`${name}: sent a ${kind} message, echo is ${ev.isBinary ? 'binary' : 'text'}`);
        }
        const got = Buffer.isBuffer(ev.data) ? ev.data : Buffer.concat(ev.data);
        if (!got.equals(payload)) throw new CaseFailed(`${name}: echo differs: ${describeMismatch(payload, got)}`);
        result.cases += 1;
        log(`ok   ${name} (${detail})`);
      }
    }
  }
  delete result.case;

  ws.close(1000, 'done');
  let ev;
  do {
    ev = await next(args.timeout, 'closing handshake');
  } while (ev.type === 'message');
  if (ev.type === 'error') {
    // ws emits 'close' after 'error'; take the code from it.
    const after = await next(args.timeout, 'closing handshake');
    ev = after.type === 'close' ? after : { code: null, reason: '' };
  }
  result.close_code = ev.code;
  result.close_reason = ev.reason;
  log(`closed: sent 1000, server answered ${ev.code} ${JSON.stringify(ev.reason)}`);
  if (ev.code !== 1000) {
    throw new CaseFailed(`closing handshake: sent close code 1000, server answered ${ev.code} ` +
      '(expected it to echo 1000; 1005 = no code, 1006 = no close frame)');
  }
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const result = {
    ok: false,
    peer: `node-ws ${wsVersion}`,
    cases: 0,
    deflate: null,
    offered_deflate: !args.noCompression,
    seed: args.seed,
    close_code: null,
  };
  log(`peer ${result.peer} (node ${process.version}), seed ${args.seed}`);
  try {
    await run(args, result);
    result.ok = true;
  } catch (e) {
    const where = !(e instanceof CaseFailed) && result.case ? ` during case ${JSON.stringify(result.case)}` : '';
    result.error = `${e instanceof CaseFailed ? '' : (e.name || 'Error') + where + ': '}${e.message}`;
    console.error(`FAIL: ${result.error}`);
  }
  process.stdout.write(JSON.stringify(result) + '\n', () => process.exit(result.ok ? 0 : 1));
}

main();
