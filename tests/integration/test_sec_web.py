"""DNS rebinding against the chat's web side from a peer that is not on
loopback (issue 19, finding 7), and the Host header's syntax.

A page of evil.example whose name the attacker re-points at the chat
server's address sends Origin and Host of evil.example, which agree. The
server used to refuse that only on loopback connections; from any other
peer it answered 101 and the page got the chat. Now Origin == Host counts
only when Host is an address of the listener the connection arrived on
(with its port), a loopback name on a loopback listener, or a name given
with --web-origin; a Host that is not uri-host [":" port] gets 400.

The server runs in a network namespace of its own (unshare -n; a veth pair
with 10.200.0.1/24 on one end and 10.200.0.2/24 on the other, both in that
namespace, and fd00:200::1 on its lo, where no carrier or duplicate address
detection can delay it): the test's sockets are made inside it by a
thread that enters it (setns), connect from 10.200.0.2 and never leave it.
Needs root (CAP_SYS_ADMIN for the namespace). A listener on a unix socket
(reached through a local proxy) counts as loopback: localhost passes, a
rebound name does not."""

import ctypes
import os
import re
import shutil
import socket
import threading
import time

import pytest

from conftest import SANITIZER_MARKS, WAIT
from test_ws_rfc6455 import handshake_request, new_key

NETNS_SETUP = (
    "ip link add v0 type veth peer name v1 && "
    "ip addr add 10.200.0.1/24 dev v0 && ip addr add 10.200.0.2/24 dev v1 && "
    "ip -6 addr add fd00:200::1/128 dev lo && "
    "ip link set lo up && ip link set v0 up && ip link set v1 up && "
    'exec "$0" "$@"')
SERVER = "10.200.0.1"
SERVER6 = "fd00:200::1"
PEER = "10.200.0.2"
CLONE_NEWNET = 0x40000000
REBIND_LOG = (rb"WebSocket handshake refused \(403\): Host is not an address of this listener "
              rb"\(DNS rebinding\?\); allow it with --web-origin$")

_libc = ctypes.CDLL(None, use_errno=True)


class NsChat:
    """`sockit chat serve` with web listeners on 10.200.0.1, [fd00:200::1]
    and 0.0.0.0 (port 0 each) inside a namespace of its own."""

    def __init__(self, run, sockit_bin):
        self.p = run.spawn(["unshare", "-n", "sh", "-c", NETNS_SETUP, sockit_bin, "chat", "serve",
                            "tcp://127.0.0.1:0", "--web", f"tcp://{SERVER}:0",
                            "--web", f"tcp://[{SERVER6}]:0", "--web", "tcp://0.0.0.0:0",
                            "--web-origin", "chat.example", "--no-bot"],
                           name="sockit chat serve (netns)")
        self.port = self._page(re.escape(SERVER.encode()))
        self.port6 = self._page(re.escape(f"[{SERVER6}]".encode()))
        self.port_any = self._page(rb"0\.0\.0\.0")

    def _page(self, host):
        m = self.p.err.wait_for(rb"^sockit: chat page: http://" + host + rb":(\d+)/$")
        return int(m.group(1))

    def make_socket(self, family=socket.AF_INET, src=PEER):
        """A TCP socket made inside the server's namespace and bound to src:
        a thread enters the namespace and makes it (the socket stays in the
        namespace it was made in; the test's own threads stay where they
        are)."""
        box = {}

        def enter():
            try:
                fd = os.open(f"/proc/{self.p.pid}/ns/net", os.O_RDONLY)
                try:
                    if _libc.setns(fd, CLONE_NEWNET) != 0:
                        raise OSError(ctypes.get_errno(), "setns")
                finally:
                    os.close(fd)
                s = socket.socket(family, socket.SOCK_STREAM)
                s.bind((src, 0))
                box["s"] = s
            except BaseException as e:  # handed to the test's thread
                box["e"] = e

        t = threading.Thread(target=enter)
        t.start()
        t.join(WAIT)
        if "e" in box:
            raise box["e"]
        return box["s"]

    def ask(self, request, port, dst=SERVER, family=socket.AF_INET, src=PEER):
        """Sends request from src to dst:port; returns (status line, the
        body or, after 101, the first WebSocket message)."""
        s = self.make_socket(family, src)
        try:
            s.settimeout(WAIT)
            s.connect((dst, port))
            s.sendall(request)
            data = b""
            deadline = time.monotonic() + WAIT
            while b"\r\n\r\n" not in data:
                assert time.monotonic() < deadline, f"no answer head: {data!r}"
                chunk = s.recv(4096)
                assert chunk, f"closed before the head ended: {data!r}"
                data += chunk
            head, rest = data.split(b"\r\n\r\n", 1)
            status = head.split(b"\r\n")[0].decode()
            if " 101 " in status:
                need = 2
            else:
                m = re.search(rb"\r\ncontent-length: (\d+)", head, re.I)
                need = int(m.group(1))
            while len(rest) < need or (" 101 " in status and len(rest) < 2 + (rest[1] & 0x7F)):
                assert time.monotonic() < deadline, f"{status}: short body {rest!r}"
                chunk = s.recv(4096)
                assert chunk, f"{status}: closed in the body: {rest!r}"
                rest += chunk
            if " 101 " in status:  # one unmasked text frame of under 126 bytes
                assert rest[0] == 0x81 and rest[1] < 126, rest
                return status, rest[2:2 + rest[1]]
            return status, rest[:need]
        finally:
            s.close()


@pytest.fixture
def ns_chat(run, sockit_bin):
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        pytest.skip("needs root, unshare and ip for a private network namespace")
    chat = NsChat(run, sockit_bin)
    yield chat
    chat.p.stop()
    err = chat.p.err.value()
    assert not any(m in err for m in SANITIZER_MARKS), err[-3000:]


def wait_count(stream, pattern, n):
    """Waits (bounded) until the regex pattern (bytes, per line) has matched
    n times in the stream, and fails unless it is exactly n: a log line
    follows the answer it is about, so it may come a moment after it."""
    stream._wait(lambda: len(re.findall(pattern, stream.value(), re.M)) >= n, WAIT)
    got = len(re.findall(pattern, stream.value(), re.M))
    assert got == n, f"{pattern!r}: {got} lines, expected {n}"


def upgrade(host, origin="same", extra=()):
    """A WebSocket handshake with Host host and Origin http://host (or
    origin; None: no Origin)."""
    origin = f"http://{host}" if origin == "same" else origin
    headers = [("Host", host)] + ([("Origin", origin)] if origin else []) + list(extra)
    return handshake_request(0, new_key(), headers=headers)


def test_rebinding_from_a_namespace_peer_is_403(ns_chat):
    port = ns_chat.port
    for host in (f"evil.example:{port}", "evil.example", f"localhost:{port}",
                 f"{SERVER}:{port + 1 if port < 65535 else port - 1}",  # another port
                 f"{PEER}:{port}", SERVER):  # another address of ours; no port (not on 80)
        status, body = ns_chat.ask(upgrade(host), port)
        assert (status, body) == ("HTTP/1.1 403 Forbidden", b"403 Forbidden\n"), host
    wait_count(ns_chat.p.err, rb"^sockit: chat: web 10\.200\.0\.2:\d+: " + REBIND_LOG, 6)
    # the same on the IPv6 listener, and on the wildcard one
    status, _ = ns_chat.ask(upgrade(f"evil.example:{ns_chat.port6}"), ns_chat.port6, dst=SERVER6,
                            family=socket.AF_INET6, src=SERVER6)
    assert status == "HTTP/1.1 403 Forbidden"
    status, _ = ns_chat.ask(upgrade(f"evil.example:{ns_chat.port_any}"), ns_chat.port_any)
    assert status == "HTTP/1.1 403 Forbidden"
    # through loopback to the wildcard listener: only loopback names
    status, _ = ns_chat.ask(upgrade(f"evil.example:{ns_chat.port_any}"), ns_chat.port_any,
                            dst="127.0.0.1", src="127.0.0.1")
    assert status == "HTTP/1.1 403 Forbidden"
    wait_count(ns_chat.p.err, REBIND_LOG, 8)
    wait_count(ns_chat.p.err, rb"^sockit: chat: web 127\.0\.0\.1:\d+: WebSocket handshake refused "
               rb"\(403\): Host is not a loopback name on a loopback connection", 1)


def test_own_address_allowed_names_and_non_browsers_get_the_chat(ns_chat):
    port, port6, port_any = ns_chat.port, ns_chat.port6, ns_chat.port_any
    cases = [
        (upgrade(f"{SERVER}:{port}"), port, SERVER, socket.AF_INET, PEER),
        (upgrade(f"[{SERVER6}]:{port6}"), port6, SERVER6, socket.AF_INET6, SERVER6),
        (upgrade(f"{SERVER}:{port_any}"), port_any, SERVER, socket.AF_INET, PEER),
        (upgrade(f"localhost:{port_any}"), port_any, "127.0.0.1", socket.AF_INET, "127.0.0.1"),
        # a forward (ssh -L 8080:...) to the loopback side keeps its port
        (upgrade("127.0.0.1:8080"), port_any, "127.0.0.1", socket.AF_INET, "127.0.0.1"),
        (upgrade("chat.example"), port, SERVER, socket.AF_INET, PEER),  # --web-origin
        (upgrade("evil.example", origin=None), port, SERVER, socket.AF_INET, PEER),  # no browser
    ]
    for request, p, dst, family, src in cases:
        status, first = ns_chat.ask(request, p, dst=dst, family=family, src=src)
        assert status == "HTTP/1.1 101 Switching Protocols", request
        assert re.match(rb"HELLO 1 guest\d+ #lobby ", first), first


def test_malformed_or_repeated_host_is_400(ns_chat):
    port = ns_chat.port
    page = "GET / HTTP/1.1\r\nHost: {}\r\n\r\n"
    status, body = ns_chat.ask(page.format(f"{SERVER}:{port}").encode(), port)
    assert status == "HTTP/1.1 200 OK" and b"<html" in body.lower()
    for host in ("a b", f"a b:{port}", f"evil.example:{port}x", f"user@{SERVER}:{port}",
                 f"{SERVER}:{port}/x", "[10.200.0.1]", f"{SERVER}:99999", "[fe80::1%25v0]"):
        status, body = ns_chat.ask(page.format(host).encode(), port)
        assert (status, body) == ("HTTP/1.1 400 Bad Request", b"400 Bad Request\n"), host
        status, body = ns_chat.ask(upgrade(host), port)
        assert (status, body) == ("HTTP/1.1 400 Bad Request", b"400 Bad Request\n"), host
    log = rb"^sockit: chat: web 10\.200\.0\.2:\d+: refused a request: 400 Bad Request: malformed Host$"
    wait_count(ns_chat.p.err, log, 16)
    two = f"GET / HTTP/1.1\r\nHost: {SERVER}:{port}\r\nHost: {SERVER}:{port}\r\n\r\n"
    status, body = ns_chat.ask(two.encode(), port)
    assert (status, body) == ("HTTP/1.1 400 Bad Request", b"400 Bad Request\n")
    ns_chat.p.err.wait_for(rb"refused a request: 400 Bad Request: more than one Host$")


def test_unix_socket_listener_takes_loopback_names_only(run, sockdir):
    """A page on a unix socket is reached through a local proxy: it counts
    as loopback, so localhost passes and a rebound name does not."""
    path = os.path.join(sockdir, "web.sock")
    p = run.sockit("chat", "serve", "tcp://127.0.0.1:0", "--web", f"unix:{path}", "--no-bot",
                   name="sockit chat serve")
    p.err.wait_for(rb"^sockit: listening on unix:" + re.escape(path.encode()) + rb"$")

    def ask(host):
        s = run.track(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
        s.settimeout(WAIT)
        s.connect(path)
        s.sendall(upgrade(host))
        data = b""
        while b"\r\n" not in data:
            chunk = s.recv(4096)
            assert chunk, data
            data += chunk
        return data.split(b"\r\n")[0]

    assert ask("localhost:8080") == b"HTTP/1.1 101 Switching Protocols"
    assert ask("evil.example:8080") == b"HTTP/1.1 403 Forbidden"
    p.err.wait_for(rb"WebSocket handshake refused \(403\): Host is not a loopback name on a "
                   rb"loopback connection \(DNS rebinding\?\); allow it with --web-origin$")
