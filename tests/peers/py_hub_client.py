#!/usr/bin/env python3
"""Interop peer: a `wshub.v1` client written with Python `websockets`.

Usage: py_hub_client.py URL ROOM TEXT [--expect-user USER]... [--timeout SECS]

Connects to the hub at URL offering the subprotocol `wshub.v1` (and
permessage-deflate, websockets' default), then checks, in order:

1. the server selected `wshub.v1`, and the first message is a `welcome` with a
   string `user` and a string `conn_id`;
2. a frame that is not JSON gets a bare `bad_request` error and the connection
   stays open;
3. `join` ROOM (with meta {"client": "python"}) replies ok with a presence
   snapshot that lists this connection with its meta;
4. `publish` {"text": TEXT} to ROOM: the publisher receives its own `message`
   (from = its user) and an ok reply whose `delivered` counts it;
5. `presence` ROOM replies ok and lists this user and every --expect-user;
6. a `publish` of data that does not fit the room's type gets `invalid_data`;
7. it closes with 1000.

Messages that are not the one awaited (presence diffs, other members'
messages) are collected and reported, not treated as errors.

The LAST stdout line is always one JSON object, e.g.
    {"ok": true, "user": "guest-...", "conn_id": "3", "delivered": 2, ...}
Exit code 0 when every check passed, 1 otherwise ("ok": false, "error").
"""

from __future__ import annotations

import argparse
import asyncio
import json
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


class CheckFailed(Exception):
    pass


def log(line: str) -> None:
    print(line, flush=True)


def check(cond: bool, what: str) -> None:
    if not cond:
        raise CheckFailed(what)


class HubClient:
    def __init__(self, ws, timeout: float, result: dict) -> None:
        self.ws = ws
        self.timeout = timeout
        self.result = result
        self.next_id = 1

    async def recv(self) -> dict:
        try:
            raw = await asyncio.wait_for(self.ws.recv(), self.timeout)
        except asyncio.TimeoutError:
            raise CheckFailed(f"no message within {self.timeout} s") from None
        check(isinstance(raw, str), f"server sent a binary frame: {raw!r}")
        msg = json.loads(raw)
        check(isinstance(msg, dict) and isinstance(msg.get("op"), str), f"not an op: {raw}")
        log(f"<- {raw}")
        return msg

    async def send(self, msg: dict) -> None:
        raw = json.dumps(msg)
        log(f"-> {raw}")
        await self.ws.send(raw)

    async def request(self, msg: dict) -> tuple[dict, list[dict]]:
        """Sends `msg` with a fresh id; returns its reply and what came before."""
        rid = self.next_id
        self.next_id += 1
        await self.send({**msg, "id": rid})
        before = []
        while True:
            m = await self.recv()
            if m["op"] == "reply" and m.get("id") == rid:
                check(isinstance(m.get("ok"), bool), f"reply without a boolean ok: {m}")
                if m["ok"]:
                    check(isinstance(m.get("data"), dict), f"ok reply without data: {m}")
                else:
                    err = m.get("error")
                    check(
                        isinstance(err, dict)
                        and isinstance(err.get("code"), str)
                        and isinstance(err.get("message"), str),
                        f"failed reply without error.code/message: {m}",
                    )
                return m, before
            before.append(m)
            self.result["others"].append(m)


async def run(args: argparse.Namespace, result: dict) -> None:
    async with connect(
        args.url,
        subprotocols=["wshub.v1"],
        proxy=None,
        open_timeout=args.timeout,
        close_timeout=args.timeout,
    ) as ws:
        result["subprotocol"] = ws.subprotocol
        ext = ws.response.headers.get("Sec-WebSocket-Extensions")
        result["deflate"] = ext is not None and "permessage-deflate" in ext.lower()
        check(ws.subprotocol == "wshub.v1", f"server selected subprotocol {ws.subprotocol!r}")
        c = HubClient(ws, args.timeout, result)

        # 1. welcome
        welcome = await c.recv()
        check(welcome["op"] == "welcome", f"first message is not a welcome: {welcome}")
        user, conn_id = welcome.get("user"), welcome.get("conn_id")
        check(isinstance(user, str) and user, f"welcome.user: {welcome}")
        check(isinstance(conn_id, str) and conn_id, f"welcome.conn_id must be a string: {welcome}")
        result["user"], result["conn_id"] = user, conn_id
        result["step"] = "welcome ok"

        # 2. garbage is a bare bad_request; the connection stays open
        log("-> hello")
        await ws.send("hello")
        err = await c.recv()
        check(
            err["op"] == "error" and err.get("error", {}).get("code") == "bad_request",
            f"expected a bare bad_request error: {err}",
        )
        result["step"] = "bad_request ok"

        # 3. join
        meta = {"client": "python"}
        reply, _ = await c.request({"op": "join", "room": args.room, "meta": meta})
        check(reply["ok"], f"join failed: {reply}")
        presence = reply["data"].get("presence")
        check(isinstance(presence, dict), f"join reply without presence: {reply}")
        mine = presence.get(user, {}).get("metas", [])
        check(
            any(m.get("conn_id") == conn_id and m.get("meta") == meta for m in mine),
            f"own connection missing from the join snapshot: {presence}",
        )
        result["step"] = "join ok"

        # 4. publish, and receive our own message
        reply, before = await c.request(
            {"op": "publish", "room": args.room, "data": {"text": args.text}}
        )
        check(reply["ok"], f"publish failed: {reply}")
        own = {"op": "message", "room": args.room, "from": user, "data": {"text": args.text}}
        # A stored message carries its stream position (PROTOCOL.md section 9), and
        # the publish reply says the same one.
        mine = [m for m in before if m.get("op") == "message" and m.get("from") == user]
        check(len(mine) == 1, f"own message not received before the reply: {before}")
        position = {k: mine[0].pop(k, None) for k in ("seq", "epoch")}
        check(mine[0] == own, f"own message not as published: {mine[0]}")
        check(
            isinstance(position["seq"], int) and isinstance(position["epoch"], str),
            f"own message without a stream position: {position}",
        )
        check(
            reply["data"].get("seq") == position["seq"]
            and reply["data"].get("epoch") == position["epoch"],
            f"publish reply and message disagree on the position: {reply} {position}",
        )
        delivered = reply["data"].get("delivered")
        check(isinstance(delivered, int) and delivered >= 1, f"delivered: {reply}")
        result["delivered"] = delivered
        result["step"] = "publish ok"

        # 5. presence
        reply, _ = await c.request({"op": "presence", "room": args.room})
        check(reply["ok"], f"presence failed: {reply}")
        presence = reply["data"].get("presence")
        check(isinstance(presence, dict), f"presence reply without presence: {reply}")
        result["presence_users"] = sorted(presence)
        for u in [user, *args.expect_user]:
            check(u in presence, f"{u!r} missing from presence {sorted(presence)}")
        result["step"] = "presence ok"

        # 6. data that does not fit the room's type
        reply, _ = await c.request({"op": "publish", "room": args.room, "data": {"text": 5}})
        check(
            not reply["ok"] and reply["error"]["code"] == "invalid_data",
            f"expected invalid_data: {reply}",
        )
        result["step"] = "invalid_data ok"

        # 7. close
        await ws.close(1000, "done")
        result["close_code"] = ws.close_code
        check(ws.close_code == 1000, f"server answered the close with {ws.close_code}")
        result["step"] = "closed"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="ws:// URL of a wshub server")
    parser.add_argument("room", help="room to join, e.g. chat:lobby")
    parser.add_argument("text", help="text to publish")
    parser.add_argument(
        "--expect-user", action="append", default=[], help="a user that must be in the room's presence"
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per step (default 10)")
    args = parser.parse_args()

    result: dict = {
        "ok": False,
        "peer": f"python-websockets {websockets.__version__}",
        "step": "connect",
        "others": [],
    }
    try:
        asyncio.run(run(args, result))
        result["ok"] = True
    except CheckFailed as exc:
        result["error"] = f"after step {result['step']!r}: {exc}"
    except Exception as exc:  # connection refused, handshake or protocol error, ...
        result["error"] = f"after step {result['step']!r}: {type(exc).__name__}: {exc}"
    if not result["ok"]:
        print(f"FAIL: {result['error']}", file=sys.stderr, flush=True)
    print(json.dumps(result), flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
