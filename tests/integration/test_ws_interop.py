"""The chat's WebSocket with an independent client: the npm `ws` package
(tests/web/ws_interop.mjs, run by node), against the real
`sockit chat serve --web`, while a plain line client in the same room
checks that what the `ws` clients did reached the chat exactly.

Skipped only when node or tests/web/node_modules/ws is absent (scripts/
install-deps installs them with npm in tests/web)."""

import json
import os
import re
import shutil
import socket
import time

import pytest

from conftest import REPO, WAIT

WEB_TESTS = os.path.join(REPO, "tests", "web")
SCRIPT = os.path.join(WEB_TESTS, "ws_interop.mjs")

STEPS = ["open and HELLO", "nick", "messages both ways", "ping and pong", "10 KB message",
         "client close 1000", "quit: BYE then close 1000 from the server",
         "binary message closed with 1003", "foreign origin refused with 403",
         "own origin accepted"]


def need_node_ws():
    node = shutil.which("node")
    if not node:
        pytest.skip("node is not installed (scripts/install-deps)")
    if not os.path.isfile(os.path.join(WEB_TESTS, "node_modules", "ws", "package.json")):
        pytest.skip("tests/web/node_modules/ws is absent (scripts/install-deps runs npm there)")
    return node


def read_lines(sock, until, timeout):
    """Lines from sock until one equals `until`; fails on timeout or EOF."""
    deadline = time.monotonic() + timeout
    buf, lines = b"", []
    while True:
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            lines.append(line.decode())
            if lines[-1] == until:
                return lines
        left = deadline - time.monotonic()
        assert left > 0, f"no {until!r} within {timeout}s; got {lines[-8:]}"
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            chunk = None
        assert chunk, f"no {until!r} (EOF or timeout); got {lines[-8:]}"
        buf += chunk


def test_ws_package_talks_with_the_chat(run):
    node = need_node_ws()
    p = run.sockit("chat", "serve", "tcp://127.0.0.1:0", "--web", "tcp://127.0.0.1:0",
                   "--no-bot", "--flood-rate", "0", name="sockit chat")
    line_port = p.port()
    web_port = int(p.err.wait_for(rb"^sockit: chat page: http://127\.0\.0\.1:(\d+)/$").group(1))
    watcher = run.track(socket.create_connection(("127.0.0.1", line_port), timeout=WAIT))
    first = read_lines(watcher, "JOIN #lobby guest1", WAIT)
    assert re.match(r"HELLO 1 guest1 #lobby ", first[0]), first

    js = run.spawn([node, SCRIPT, f"ws://127.0.0.1:{web_port}/ws"], name="node ws_interop",
                   cwd=WEB_TESTS, env={**os.environ, "WS_WAIT_MS": str(int(WAIT * 1000))})
    rc = js.wait(timeout=WAIT * 6)
    out = js.out.read_to_eof().decode()
    result = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
    assert rc == 0 and result.get("ok"), \
        f"ws_interop.mjs exited {rc}: {result}; stderr: {js.err.text()[-1500:]}"
    assert result["steps"] == STEPS

    # What the line client saw, in the order the server made it. The `ws`
    # clients were guest2 (alice), guest3, then guest4 and guest5; the one
    # with a foreign Origin never became a user.
    big = [f"line {i} ".ljust(1000, chr(97 + i)) for i in range(10)]
    big.append("last line ".ljust(230, "z"))
    want = ["JOIN #lobby guest2", "JOIN #lobby guest3", "NICK #lobby guest2 alice",
            "MSG #lobby guest3 hello alice", "MSG #lobby alice hello über-b ✓"] + \
           [f"MSG #lobby alice {t}" for t in big] + \
           ["QUIT #lobby alice connection closed", "QUIT #lobby guest3 see you",
            "JOIN #lobby guest4", "QUIT #lobby guest4 binary messages are not part of the chat",
            "JOIN #lobby guest5", "QUIT #lobby guest5 connection closed"]
    assert read_lines(watcher, want[-1], WAIT) == want
    p.err.wait_for(rb"WebSocket closed with 1003: binary messages are not part of the chat$")
    p.err.wait_for(rb"WebSocket handshake refused \(403\): Origin not allowed$")
