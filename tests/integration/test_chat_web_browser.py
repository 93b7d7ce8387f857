"""The browser chat (`sockit chat serve ... --web ENDPOINT`) end to end, in a
real browser: Debian's chromium, driven by playwright-core from
tests/web/e2e_chat.mjs, with an nc client beside it.

The node script runs the browsers and says what else it needs, one JSON
line at a time on its stdout; this test does it and answers on its stdin:

  nc_connect {nick}    a new nc client, renamed to nick once greeted
  nc_send {line}       a line from nc
  nc_expect {pattern}  a line matching the regex reaches nc
  nc_absent {text}     text never reached nc (so far)
  server_stop          SIGTERM to the server (BYE, then it exits)
  server_start         the server again, on the same two ports

What the script checks: a hostile nick refused and shown as text, nick
taken, two pages and nc exchanging messages both ways, rooms (join by the
form and by the room list, unread badge, messages kept to their room),
private messages (member click prefills /msg), hostile text from nc shown
literally with no element made from it (live and in the history), the
keyboard alone (Enter, Up, Escape, Tab to a member with a visible focus
ring), a phone-sized page (drawers, box on screen, sends), the server
stopped (state "reconnecting in Ns", a typed line kept) and started again
on the same port (nicks and rooms back, messages flow), /quit (offline)
and Connect; no page error, dialog or CSP violation anywhere. A second,
shorter scenario has the server drop an idle page (--idle-timeout): it
comes back and the history replayed on its rejoins shows nothing twice.

Screenshots go to $SOCKIT_ARTIFACTS (else the build directory's
artifacts/), under chat_web_browser/.

Skipped only when the browser or the node packages are absent (make check
installs them: scripts/install-deps); with CI set, that is a failure."""

import json
import os
import re
import shutil
import subprocess
import time

import pytest

from conftest import REPO, WAIT

WEB_TESTS = os.path.join(REPO, "tests", "web")
SCRIPT = os.path.join(WEB_TESTS, "e2e_chat.mjs")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
NODE = shutil.which("node")
# Browser steps get more time than socket reads: a page loads, lays out and
# runs script; sanitizer builds of the server are slower too.
E2E_WAIT = max(10.0, 2 * WAIT)
TOTAL = 300  # one scenario, seconds (the main one takes about 15)


def _missing():
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return f"no chromium at {CHROMIUM} (Debian package chromium: scripts/install-deps)"
    if not NODE:
        return "no node (Debian packages nodejs, npm: scripts/install-deps)"
    for mod in ("playwright-core", "ws"):
        if not os.path.isfile(os.path.join(WEB_TESTS, "node_modules", mod, "package.json")):
            return f"no tests/web/node_modules/{mod} (npm ci in tests/web: scripts/install-deps)"
    return None


def require_browser():
    """Skips when chromium, node or the node packages are absent; in CI
    (CI set, where make check has installed them) fails instead, so that
    the browser test cannot quietly stop running."""
    why = _missing()
    if why and os.environ.get("CI"):
        pytest.fail(f"{why}; CI must run the browser test", pytrace=False)
    if why:
        pytest.skip(why)


def artifacts_dir():
    base = os.environ.get("SOCKIT_ARTIFACTS")
    if not base:
        base = os.path.join(os.environ.get("SOCKIT_BUILD", os.path.join(REPO, "build")), "artifacts")
    d = os.path.join(base, "chat_web_browser")
    os.makedirs(d, exist_ok=True)
    return d


class ChatServer:
    """`sockit chat serve` with a line endpoint and a web endpoint; restarted
    on the same ports."""

    def __init__(self, run, *args):
        self.run = run
        self.args = args
        self.proc = None
        self.port = 0
        self.web_port = 0
        self.starts = 0

    def start(self):
        self.starts += 1
        self.proc = self.run.sockit(
            "chat", "serve", f"tcp://127.0.0.1:{self.port}",
            "--web", f"tcp://127.0.0.1:{self.web_port}", *self.args,
            stdin=subprocess.DEVNULL, name=f"sockit chat serve #{self.starts}")
        port = self.proc.port()
        m = self.proc.err.wait_for(rb"^sockit: chat page: http://127\.0\.0\.1:(\d+)/$")
        web_port = int(m.group(1))
        if self.port:
            assert (port, web_port) == (self.port, self.web_port), \
                f"restarted on other ports: {port}, {web_port}"
        self.port, self.web_port = port, web_port

    def stop(self):
        """SIGTERM: BYE to everyone, the connections closed within the grace
        period (2 s), exit 0."""
        self.proc.signal(15)
        self.proc.expect_exit(0, timeout=WAIT + 2)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.web_port}/"


class NcClient:
    """An nc line client of the chat."""

    def __init__(self, run, port, nick):
        self.p = run.spawn(["nc", "127.0.0.1", str(port)], name=f"nc {nick}")
        m = self.p.out.wait_for(rb"^HELLO 1 (\S+) ")
        guest = m.group(1).decode()
        self.send(f"/nick {nick}")
        self.p.out.wait_for(rb"^NICK #lobby " + re.escape(guest).encode() + rb" "
                            + re.escape(nick).encode() + rb"$")

    def send(self, line):
        self.p.write(line.encode() + b"\r\n")

    def expect(self, pattern, timeout):
        self.p.out.wait_for(pattern.encode(), timeout)

    def absent(self, text):
        got = self.p.out.value()
        assert text.encode() not in got, f"nc got {text!r}: {got[-500:]!r}"


def drive(run, srv, scenario):
    """Runs e2e_chat.mjs SCENARIO against srv and does what it asks; returns
    the artifacts directory."""
    out_dir = artifacts_dir()
    env = dict(os.environ, E2E_WAIT_MS=str(int(E2E_WAIT * 1000)), CHROMIUM=CHROMIUM,
               E2E_TOTAL_MS=str((TOTAL - 10) * 1000))
    node = run.spawn([NODE, SCRIPT, srv.url, out_dir, scenario], env=env, cwd=WEB_TESTS,
                     name=f"e2e_chat.mjs {scenario}")
    nc = None
    deadline = time.monotonic() + TOTAL
    while True:
        left = deadline - time.monotonic()
        assert left > 0, "the browser scenario did not finish in time"
        try:
            raw = node.out.read_until(b"\n", timeout=left)
        except AssertionError:
            raise AssertionError(f"e2e_chat.mjs ended without a result; its stderr:\n"
                                 f"{node.err.text()[-4000:]}")
        msg = json.loads(raw)
        if "done" in msg:
            break
        reply = {"id": msg["id"], "ok": True}
        try:
            what = msg["do"]
            if what == "nc_connect":
                if nc:
                    nc.p.stop()
                nc = NcClient(run, srv.port, msg["nick"])
            elif what == "nc_send":
                nc.send(msg["line"])
            elif what == "nc_expect":
                nc.expect(msg["pattern"], E2E_WAIT)
            elif what == "nc_absent":
                nc.absent(msg["text"])
            elif what == "server_stop":
                srv.stop()
            elif what == "server_start":
                srv.start()
            else:
                raise AssertionError(f"unknown request {what!r}")
        except AssertionError as e:
            reply = {"id": msg["id"], "ok": False, "error": str(e)}
        node.write(json.dumps(reply).encode() + b"\n")

    assert msg["done"], (f"browser scenario failed: {msg.get('error')}\n"
                         f"{node.err.text()[-4000:]}")
    node.expect_exit(0)
    for step in msg["steps"]:
        print(f"{step['ms']:6d} ms  {step['name']}")
    return out_dir


def test_chat_in_the_browser(run):
    require_browser()
    srv = ChatServer(run)
    srv.start()
    out_dir = drive(run, srv, "main")
    for shot in ("chat-desktop.png", "chat-phone.png", "chat-phone-rooms.png",
                 "chat-desktop-reconnecting.png"):
        path = os.path.join(out_dir, shot)
        assert os.path.getsize(path) > 5000, f"screenshot {path} missing or empty"


def test_history_is_not_repeated_after_a_reconnect(run):
    """The server drops the idle page (--idle-timeout 2); it comes back, and
    the history replayed on its rejoins shows nothing twice."""
    require_browser()
    srv = ChatServer(run, "--idle-timeout", "2")
    srv.start()
    drive(run, srv, "history")
