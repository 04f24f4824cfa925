#!/usr/bin/env python3
"""Interop peer: a Python `websockets` client that checks an echo server.

Usage: py_client.py URL [--no-compression] [--seed N] [--timeout SECS]

For text and binary messages of 0, 125, 126, 65535, 65536 and 1048576 bytes,
each sent unfragmented and fragmented, it sends the message to the echo server
at URL and checks that the echo is byte-exact and of the same type.

Payloads are random (seeded, the seed is printed): random bytes for binary,
random valid UTF-8 for text with 1- to 4-byte characters, sized in BYTES
exactly. Fragmented text is split at random byte offsets, at least one of
them in the middle of a multi-byte character, so the receiver must validate
UTF-8 across frame boundaries. (websockets also ends every fragmented
message with an empty FIN continuation frame.)

Progress goes to stdout, one line per case. The LAST stdout line is always
one JSON object, e.g.
    {"ok": true, "cases": 24, "deflate": true, "close_code": 1000, ...}
Exit code: 0 when every case passed and the server echoed close code 1000,
1 on the first failure (the JSON line then has "ok": false and "error").

Compression: permessage-deflate is offered by default; --no-compression
offers no extension. "deflate" in the JSON tells whether the server's
handshake response accepted permessage-deflate.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys

try:
    import websockets
    from websockets.asyncio.client import connect
except ImportError:  # pragma: no cover - reported to the Rust harness
    print(
        json.dumps(
            {
                "ok": False,
                "error": "Python package `websockets` is missing: run "
                "`python3 -m pip install -r tests/peers/requirements.txt`",
            }
        ),
        flush=True,
    )
    sys.exit(2)

SIZES = [0, 125, 126, 65535, 65536, 1048576]
MAX_SIZE = 64 * 1024 * 1024

# Characters by UTF-8 length, boundary code points included on purpose
# (U+007F/U+0080, U+07FF/U+0800, U+FFFF/U+10000, U+10FFFF, U+FFFD).
CHARS_1 = [chr(c) for c in range(0x20, 0x7F)] + ["\x00", "\t", "\n", "\x7f"]
CHARS_2 = ["\u0080", "é", "ß", "ж", "λ", "ñ", "\u07ff"]
CHARS_3 = ["\u0800", "€", "中", "文", "ह", "\ufffd", "\uffff"]
CHARS_4 = ["\U00010000", "😀", "🦀", "𝄞", "\U0010ffff"]


def log(line: str) -> None:
    print(line, flush=True)


def random_text(rng: random.Random, nbytes: int) -> bytes:
    """Random valid UTF-8 of exactly `nbytes` bytes, with multi-byte chars."""
    out: list[str] = []
    remaining = nbytes
    tables = (CHARS_1, CHARS_1, CHARS_2, CHARS_3, CHARS_4)
    while remaining > 0:
        table = rng.choice(tables)
        width = len(table[0].encode("utf-8"))
        if width > remaining:
            table, width = CHARS_1, 1
        out.append(rng.choice(table))
        remaining -= width
    data = "".join(out).encode("utf-8")
    assert len(data) == nbytes
    return data


def split_points(rng: random.Random, payload: bytes, is_text: bool) -> list[int]:
    """Sorted cut offsets for 3..7 fragments (empty fragments allowed)."""
    nfrag = rng.randint(3, 7)
    size = len(payload)
    cuts = sorted(rng.randint(0, size) for _ in range(nfrag - 1))
    if is_text and size > 0:
        # Force one cut inside a multi-byte character (before a continuation
        # byte), so UTF-8 validation must work across frames.
        start = rng.randrange(size)
        for i in list(range(start, size)) + list(range(0, start)):
            if payload[i] & 0xC0 == 0x80:
                cuts[rng.randrange(len(cuts))] = i
                cuts.sort()
                break
    return cuts


def fragments(payload: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0] + cuts + [len(payload)]
    return [payload[a:b] for a, b in zip(bounds, bounds[1:])]


def describe_mismatch(sent: bytes, got: bytes) -> str:
    if len(sent) != len(got):
        return f"length differs: sent {len(sent)} bytes, echo has {len(got)} bytes"
    for i, (a, b) in enumerate(zip(sent, got)):
        if a != b:
            return f"first difference at byte {i}: sent 0x{a:02x}, echo 0x{b:02x}"
    return "no difference found"  # pragma: no cover


class CaseFailed(Exception):
    pass


async def run(args: argparse.Namespace, result: dict) -> None:
    rng = random.Random(args.seed)
    compression = None if args.no_compression else "deflate"
    async with connect(
        args.url,
        compression=compression,
        max_size=MAX_SIZE,
        proxy=None,
        open_timeout=args.timeout,
        close_timeout=args.timeout,
    ) as ws:
        ext = ws.response.headers.get("Sec-WebSocket-Extensions")
        result["extensions"] = ext
        result["deflate"] = ext is not None and "permessage-deflate" in ext.lower()
        log(f"connected to {args.url}; Sec-WebSocket-Extensions: {ext!r}")

        for size in SIZES:
            for kind in ("text", "binary"):
                for fragmented in (False, True):
                    is_text = kind == "text"
                    payload = random_text(rng, size) if is_text else rng.randbytes(size)
                    name = f"{kind} {size} bytes " + ("fragmented" if fragmented else "unfragmented")
                    result["case"] = name
                    if fragmented:
                        frags = fragments(payload, split_points(rng, payload, is_text))
                        # bytes fragments + text=True: cuts may fall inside a character
                        await ws.send(frags, text=is_text)
                        detail = f"{len(frags)} fragments {[len(f) for f in frags]}"
                    else:
                        await ws.send(payload, text=is_text)
                        detail = "1 frame"
                    try:
                        echo = await asyncio.wait_for(ws.recv(), args.timeout)
                    except asyncio.TimeoutError:
                        raise CaseFailed(f"{name}: no echo within {args.timeout} s") from None
                    if is_text:
                        if not isinstance(echo, str):
                            raise CaseFailed(f"{name}: sent a text message, echo is binary")
                        got = echo.encode("utf-8")
                    else:
                        if not isinstance(echo, bytes):
                            raise CaseFailed(f"{name}: sent a binary message, echo is text")
                        got = echo
                    if got != payload:
                        raise CaseFailed(f"{name}: echo differs: {describe_mismatch(payload, got)}")
                    result["cases"] += 1
                    log(f"ok   {name} ({detail})")
        result.pop("case", None)

        await ws.close(1000, "done")
        result["close_code"] = ws.close_code
        result["close_reason"] = ws.close_reason
        log(f"closed: sent 1000, server answered {ws.close_code} {ws.close_reason!r}")
        if ws.close_code != 1000:
            raise CaseFailed(
                f"closing handshake: sent close code 1000, server answered {ws.close_code} "
                "(expected it to echo 1000; 1005 = no code, 1006 = no close frame)"
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="ws:// URL of an echo server")
    parser.add_argument("--no-compression", action="store_true", help="do not offer permessage-deflate")
    parser.add_argument("--seed", type=int, default=None, help="payload seed (default: random)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per step (default 30)")
    args = parser.parse_args()
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(2**32)

    result: dict = {
        "ok": False,
        "peer": f"python-websockets {websockets.__version__}",
        "cases": 0,
        "deflate": None,
        "offered_deflate": not args.no_compression,
        "seed": args.seed,
        "close_code": None,
    }
    log(f"peer {result['peer']}, seed {args.seed}")
    try:
        asyncio.run(run(args, result))
        result["ok"] = True
    except CaseFailed as exc:
        result["error"] = str(exc)
    except Exception as exc:  # connection refused, handshake or protocol error, ...
        where = f" during case {result['case']!r}" if "case" in result else ""
        result["error"] = f"{type(exc).__name__}{where}: {exc}"
    if not result["ok"]:
        print(f"FAIL: {result['error']}", file=sys.stderr, flush=True)
    print(json.dumps(result), flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
