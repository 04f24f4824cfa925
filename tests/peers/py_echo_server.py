#!/usr/bin/env python3
"""Interop peer: a Python `websockets` echo server.

Usage: py_echo_server.py [--no-compression] [--timeout SECS]

Binds 127.0.0.1 on a free port and prints `PORT <n>` as its first stdout line
(nothing else goes to stdout; logs go to stderr). Every message received is
sent back unchanged (text as text, binary as binary; a fragmented message is
echoed whole, as one frame). Any path is accepted. Accepts messages up to
64 MiB.

permessage-deflate is accepted when the client offers it, unless
--no-compression is given.

It exits at once (open connections are dropped, not closed cleanly) when its
standard input reaches EOF (so the test that spawned it with
a piped stdin stops it by dropping the pipe, or by dying), or after --timeout
seconds (default 120) whatever happens. Run by hand, end it with Ctrl-D.
Do not start it with stdin at /dev/null: it would exit at once.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import threading

try:
    from websockets.asyncio.server import serve
    from websockets.exceptions import ConnectionClosed
except ImportError:  # pragma: no cover - reported to the Rust harness
    print(
        "Python package `websockets` is missing: run "
        "`python3 -m pip install -r tests/peers/requirements.txt`",
        file=sys.stderr,
        flush=True,
    )
    sys.exit(2)

MAX_SIZE = 64 * 1024 * 1024


def log(line: str) -> None:
    print(f"py_echo_server: {line}", file=sys.stderr, flush=True)


async def echo(ws) -> None:
    try:
        async for message in ws:
            await ws.send(message)
    except ConnectionClosed as exc:
        # A client that ends without a clean close handshake: worth a line.
        if exc.rcvd is None or exc.rcvd.code not in (1000, 1001):
            log(f"connection ended: {exc}")


def watch_stdin(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """Runs in a daemon thread: blocks until stdin hits EOF, then stops the server."""
    try:
        while sys.stdin.buffer.read(65536):
            pass
    except (OSError, ValueError):
        pass
    loop.call_soon_threadsafe(stop.set)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-compression", action="store_true", help="refuse permessage-deflate")
    parser.add_argument("--timeout", type=float, default=120.0, help="hard exit after SECS (default 120)")
    args = parser.parse_args()

    stop = asyncio.Event()
    threading.Thread(target=watch_stdin, args=(asyncio.get_running_loop(), stop), daemon=True).start()

    server = await serve(
        echo,
        "127.0.0.1",
        0,
        compression=None if args.no_compression else "deflate",
        max_size=MAX_SIZE,
    )
    port = server.sockets[0].getsockname()[1]
    print(f"PORT {port}", flush=True)
    try:
        await asyncio.wait_for(stop.wait(), args.timeout)
    except asyncio.TimeoutError:
        log(f"hard timeout of {args.timeout} s reached, exiting")
    # Exit at once: no closing handshakes with clients that may never answer.
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    asyncio.run(main())
