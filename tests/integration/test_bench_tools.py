"""The benchmark load generators, run once on tiny inputs so they cannot rot.

Each generator runs against the ceiling echo server (bench/echo_ceiling),
the seed-style Python server, or a small server written here, with tiny
counts; the test asserts the exact counts in its JSON line and 0 errors.
Servers that misbehave on purpose check the other half of the contract:
a wrong answer is counted as an error (exit 1), never as a fast answer.

Binaries: $SOCKIT_BUILD/bench/{loadgen,echo_ceiling}; SOCKIT_BUILD
defaults to the build/ directory of this work tree. No timing is asserted:
timings belong in `make bench`.
"""

import base64
import hashlib
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from conftest import Proc

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BUILD = os.environ.get("SOCKIT_BUILD", os.path.join(REPO, "build"))
LOADGEN = os.path.join(BUILD, "bench", "loadgen")
SOCKIT = os.path.join(BUILD, "sockit")
ECHO_CEILING = os.path.join(BUILD, "bench", "echo_ceiling")
SEED_SERVER = os.path.join(REPO, "bench", "seed_threading_server.py")

# Longest any one generator run may take (sanitizer builds are slow).
RUN_LIMIT = 30.0


@pytest.fixture(scope="module", autouse=True)
def bench_binaries():
    for path in (LOADGEN, ECHO_CEILING):
        assert os.access(path, os.X_OK), f"{path} is not built (cmake --build {BUILD})"


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------

def loadgen(*args, stdin=None, limit=RUN_LIMIT):
    """Runs loadgen to completion; returns (exit code, JSON result, stderr)."""
    out = subprocess.run([LOADGEN, *map(str, args), "--timeout", str(limit - 5)],
                         input=stdin, capture_output=True, timeout=limit)
    lines = [l for l in out.stdout.decode().splitlines() if l.startswith("{")]
    assert lines, f"loadgen {args[0]} printed no JSON; stderr: {out.stderr.decode()!r}"
    return out.returncode, json.loads(lines[-1]), out.stderr.decode()


def read_port(proc, limit=10.0):
    """The port a server prints as its first stdout line, within limit."""
    ready = select.select([proc.stdout], [], [], limit)[0]
    assert ready, "server printed no port in time"
    line = proc.stdout.readline()
    assert line.strip().isdigit(), f"expected a port, got {line!r}"
    return int(line)


class Spawned:
    """A server process that prints its port first; killed at the end."""

    def __init__(self, argv):
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.port = read_port(self.proc)

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()
        err = self.proc.stderr.read().decode()
        self.proc.stderr.close()
        return err


@pytest.fixture
def echo_ceiling():
    server = Spawned([ECHO_CEILING, "--listen", "127.0.0.1:0", "--lifetime", "120"])
    yield server
    err = server.close()
    assert server.proc.returncode == 0, f"echo_ceiling exited {server.proc.returncode}: {err}"
    assert "Sanitizer" not in err and "runtime error" not in err, err


class ThreadServer:
    """A tiny threaded TCP server on 127.0.0.1:0 for these tests: handler(conn,
    index) runs in its own thread per client; index counts accepts from 0."""

    def __init__(self, handler):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.handler = handler
        self.conns = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        index = 0
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn, index), daemon=True).start()
            index += 1

    def _serve(self, conn, index):
        try:
            self.handler(self, conn, index)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self):
        self.sock.close()
        with self.lock:
            for c in self.conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


@pytest.fixture
def servers():
    made = []
    yield lambda handler: made.append(ThreadServer(handler)) or made[-1]
    for s in made:
        s.close()


def corrupting_echo(server, conn, index):
    """Echoes, but flips one bit of the 200th byte of each connection."""
    seen = 0
    while True:
        data = bytearray(conn.recv(4096))
        if not data:
            return
        if seen <= 199 < seen + len(data):
            data[199 - seen] ^= 0x01
        seen += len(data)
        conn.sendall(data)


# ---- a line-broadcast (chat) server, honest or faulty ----------------------

def fanout_seq(line):
    """The sequence number of a numbered FANOUT line, or None."""
    parts = line.split(b" ")
    if len(parts) >= 4 and parts[0].endswith(b"FANOUT") and parts[2].isdigit():
        return int(parts[2])
    return None


def make_broadcast(faults=None):
    """A handler broadcasting each line a client sends to every other
    client, prefixed "[client N] " the way chat servers add a nick; every
    client gets "welcome" when it connects. faults(index, line) may return
    the list of lines client `index` gets instead of [line]."""
    state = {"clients": {}, "lock": threading.Lock()}

    def handler(server, conn, index):
        conn.sendall(b"welcome\n")
        with state["lock"]:
            state["clients"][index] = conn
        buf = b""
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    out = b"[client %d] " % index + line + b"\n"
                    with state["lock"]:
                        for i, c in state["clients"].items():
                            if i == index:
                                continue
                            lines = faults(i, out) if faults else [out]
                            for l in lines:
                                c.sendall(l)
        finally:
            with state["lock"]:
                state["clients"].pop(index, None)

    return handler


def receiver0_faults():
    """For client 0 only: drop line 5, deliver line 7 twice, swap 10 and
    11, corrupt the padding of 15 (so 15 is corrupt and also lost)."""
    held = []

    def faults(index, line):
        seq = fanout_seq(line.split(b"] ", 1)[1]) if b"] " in line else None
        if index != 0 or seq is None:
            return [line]
        if seq == 5:
            return []
        if seq == 7:
            return [line, line]
        if seq == 10:
            held.append(line)
            return []
        if seq == 11:
            return [line] + [held.pop()]
        if seq == 15:
            return [line[:-3] + (b"A" if line[-3:-2] != b"A" else b"B") + line[-2:]]
        return [line]

    return faults


# ---------------------------------------------------------------------------
# pingpong
# ---------------------------------------------------------------------------

def test_pingpong_counts_round_trips(echo_ceiling):
    rc, res, _ = loadgen("pingpong", "--connect", f"127.0.0.1:{echo_ceiling.port}",
                         "--conns", 3, "--size", 100, "--count", 300)
    assert (rc, res["errors"], res["round_trips"], res["conns"]) == (0, 0, 300, 3)
    assert 0 < res["p50_us"] <= res["p99_us"] <= res["max_us"]


def test_pingpong_large_messages_split_across_reads(echo_ceiling):
    rc, res, _ = loadgen("pingpong", "--connect", f"127.0.0.1:{echo_ceiling.port}",
                         "--conns", 2, "--size", 300000, "--count", 6)
    assert (rc, res["errors"], res["round_trips"]) == (0, 0, 6)


def test_pingpong_duration_bounds_the_run(echo_ceiling):
    rc, res, _ = loadgen("pingpong", "--connect", f"127.0.0.1:{echo_ceiling.port}",
                         "--conns", 2, "--duration", 0.2)
    assert (rc, res["errors"]) == (0, 0)
    assert res["round_trips"] > 0


def test_pingpong_over_ipv6(echo_ceiling):
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        server = Spawned([ECHO_CEILING, "--listen", "[::1]:0", "--lifetime", "60"])
    except AssertionError:
        pytest.skip("cannot listen on ::1 here")
    try:
        rc, res, _ = loadgen("pingpong", "--connect", f"[::1]:{server.port}", "--count", 20)
        assert (rc, res["errors"], res["round_trips"]) == (0, 0, 20)
    finally:
        server.close()


def test_pingpong_against_seed_threading_server():
    server = Spawned([sys.executable, SEED_SERVER, "0"])
    try:
        rc, res, _ = loadgen("pingpong", "--connect", f"127.0.0.1:{server.port}",
                             "--conns", 2, "--size", 3000, "--count", 40)
        assert (rc, res["errors"], res["round_trips"]) == (0, 0, 40)
    finally:
        server.close()


def test_pingpong_counts_a_wrong_echo_as_error(servers):
    srv = servers(corrupting_echo)
    rc, res, _ = loadgen("pingpong", "--connect", f"127.0.0.1:{srv.port}",
                         "--size", 64, "--count", 10)
    # Byte 199 is in round trip 3 (bytes 192..255): rounds 0-2 succeed.
    assert rc == 1
    assert res["round_trips"] == 3
    assert res["errors"] == 1
    assert "round trip 3 differs at byte 7" in res["error"]


def test_pingpong_refused_is_an_error():
    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rc, res, _ = loadgen("pingpong", "--connect", f"127.0.0.1:{port}", "--count", 5)
    assert rc == 1 and res["round_trips"] == 0
    assert "Connection refused" in res["error"]


def test_loadgen_usage_errors():
    out = subprocess.run([LOADGEN, "pingpong", "--conns", "x"], capture_output=True, timeout=10)
    assert out.returncode == 2 and b"bad value 'x'" in out.stderr
    out = subprocess.run([LOADGEN, "nosuchmode"], capture_output=True, timeout=10)
    assert out.returncode == 2 and b"unknown mode" in out.stderr


# ---------------------------------------------------------------------------
# connrate
# ---------------------------------------------------------------------------

def test_connrate_counts_connections(echo_ceiling):
    rc, res, _ = loadgen("connrate", "--connect", f"127.0.0.1:{echo_ceiling.port}",
                         "--conns", 4, "--count", 100)
    assert (rc, res["errors"], res["connections"], res["attempts"]) == (0, 0, 100, 100)


def test_connrate_counts_a_wrong_echo_as_error(servers):
    srv = servers(corrupting_echo)
    # 300-byte exchanges: byte 199 of every connection is flipped.
    rc, res, _ = loadgen("connrate", "--connect", f"127.0.0.1:{srv.port}",
                         "--size", 300, "--count", 5)
    assert (rc, res["connections"], res["errors"]) == (1, 0, 5)


# ---------------------------------------------------------------------------
# bulk
# ---------------------------------------------------------------------------

def test_bulk_send_verifies_echo(echo_ceiling):
    rc, res, _ = loadgen("bulk-send", "--connect", f"127.0.0.1:{echo_ceiling.port}",
                         "--bytes", 3 * 1024 * 1024 + 7, "--conns", 2, "--echo")
    assert (rc, res["errors"]) == (0, 0)
    assert res["bytes"] == res["bytes_back"] == 3 * 1024 * 1024 + 7


def test_bulk_send_counts_a_wrong_echo_as_error(servers):
    srv = servers(corrupting_echo)
    rc, res, _ = loadgen("bulk-send", "--connect", f"127.0.0.1:{srv.port}",
                         "--bytes", 100000, "--echo")
    assert (rc, res["errors"]) == (1, 1)
    assert res["error"] == "conn 0: echoed bytes differ from the pattern at offset 199"


def test_bulk_send_to_bulk_recv():
    size = 5_000_001
    recv = subprocess.Popen([LOADGEN, "bulk-recv", "--listen", "127.0.0.1:0",
                             "--bytes", str(size), "--timeout", "20"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        port = read_port(recv)
        rc, sent, _ = loadgen("bulk-send", "--connect", f"127.0.0.1:{port}", "--bytes", size)
        out, err = recv.communicate(timeout=RUN_LIMIT)
    finally:
        if recv.poll() is None:
            recv.kill()
            recv.communicate()
    got = json.loads(out.decode().splitlines()[-1])
    assert (rc, sent["errors"], sent["bytes"], sent["bytes_back"]) == (0, 0, size, 0)
    assert (recv.returncode, got["errors"], got["bytes"], got["conns"]) == (0, 0, size, 1)


def pattern_bytes(tmp_path, size):
    """size bytes of the loadgen pattern, made by `loadgen genfile`."""
    path = tmp_path / "pattern.dat"
    rc, res, _ = loadgen("genfile", "--bytes", size, "--out", path)
    assert (rc, res["bytes"]) == (0, size)
    return path.read_bytes()


@pytest.mark.parametrize("damage", ["none", "flip", "short"])
def test_bulk_recv_checks_every_byte(tmp_path, damage):
    size = 1_000_000
    data = bytearray(pattern_bytes(tmp_path, size))
    if damage == "flip":
        data[654321] ^= 0x40
    elif damage == "short":
        data = data[:-1]
    recv = subprocess.Popen([LOADGEN, "bulk-recv", "--listen", "127.0.0.1:0",
                             "--bytes", str(size), "--timeout", "20"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        port = read_port(recv)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            try:
                s.sendall(data)
                s.shutdown(socket.SHUT_WR)
                assert s.recv(1) == b""  # the receiver closes after EOF
            except OSError:
                # On wrong bytes it stops reading and closes at once, so
                # this side may see a reset (ECONNRESET, EPIPE, ENOTCONN).
                assert damage == "flip"
        out, _ = recv.communicate(timeout=RUN_LIMIT)
    finally:
        if recv.poll() is None:
            recv.kill()
            recv.communicate()
    res = json.loads(out.decode().splitlines()[-1])
    if damage == "none":
        assert (recv.returncode, res["errors"], res["bytes"]) == (0, 0, size)
    elif damage == "flip":
        assert recv.returncode == 1 and res["errors"] == 1
        assert res["error"] == "conn 0: bytes differ from the pattern at offset 654321"
    else:
        assert recv.returncode == 1 and res["bytes"] == size - 1
        assert f"received {size - 1} bytes, expected {size}" in res["error"]


def test_bulk_sink_counts_and_verifies_stdin(tmp_path):
    size = 2_000_000
    data = pattern_bytes(tmp_path, size)
    rc, res, _ = loadgen("bulk-sink", "--bytes", size, "--drain", 0.05, stdin=data)
    assert (rc, res["errors"], res["bytes"]) == (0, 0, size)
    assert res["reached_ns"] >= res["first_ns"] > 0
    rc, res, _ = loadgen("bulk-sink", "--bytes", size, "--drain", 0.05, stdin=data + b"x")
    assert rc == 1 and res["bytes"] == size + 1 and "wrong count" in res["error"]
    bad = bytearray(data)
    bad[12345] ^= 1
    rc, res, _ = loadgen("bulk-sink", "--bytes", size, "--drain", 0.05, stdin=bytes(bad))
    assert rc == 1 and res["error"] == "bytes differ from the pattern at offset 12345"


# ---------------------------------------------------------------------------
# fanout
# ---------------------------------------------------------------------------

def test_fanout_every_receiver_gets_every_line(servers):
    srv = servers(make_broadcast())
    rc, res, _ = loadgen("fanout", "--connect", f"127.0.0.1:{srv.port}",
                         "--receivers", 3, "--count", 200, "--window", 16)
    assert rc == 0, res["error"]
    assert (res["errors"], res["sent"], res["expected"], res["deliveries"]) == (0, 200, 600, 600)
    assert (res["lost"], res["duplicated"], res["reordered"], res["corrupt"]) == (0, 0, 0, 0)
    assert res["other_lines"] == 3  # each receiver's "welcome"


def test_fanout_counts_lost_duplicated_reordered_corrupt(servers):
    srv = servers(make_broadcast(receiver0_faults()))
    rc, res, _ = loadgen("fanout", "--connect", f"127.0.0.1:{srv.port}",
                         "--receivers", 2, "--count", 20, "--window", 0, "--drain", 0.3)
    assert rc == 1
    assert (res["sent"], res["expected"]) == (20, 40)
    assert (res["lost"], res["duplicated"], res["reordered"], res["corrupt"]) == (2, 1, 1, 1)
    assert res["deliveries"] == 38
    assert res["errors"] == 5
    assert res["error"] == "receiver 0: 2 lost, 1 duplicated, 1 reordered, 1 corrupt"


def test_fanout_stalled_server_ends_the_run(servers):
    # A server that takes the lines and never broadcasts them.
    def black_hole(server, conn, index):
        while conn.recv(65536):
            pass

    srv = servers(black_hole)
    rc, res, _ = loadgen("fanout", "--connect", f"127.0.0.1:{srv.port}", "--receivers", 2,
                         "--count", 10, limit=8)
    assert rc == 1 and res["deliveries"] == 0
    assert "timed out before every receiver saw a SYNC line" in res["error"]


# ---------------------------------------------------------------------------
# fanout --ws: the same checks over WebSocket
# ---------------------------------------------------------------------------

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
WS_PING = b"still there?"


def ws_accept(key):
    """Sec-WebSocket-Accept for a key (RFC 6455 section 4.2.2), computed here
    with hashlib rather than with the codec loadgen uses."""
    return base64.b64encode(hashlib.sha1(key + WS_GUID).digest())


def ws_frame(opcode, payload, fin=True):
    """An unmasked server frame."""
    n = len(payload)
    size = bytes([n]) if n < 126 else bytes([126]) + n.to_bytes(2, "big")
    return bytes([(0x80 if fin else 0) | opcode]) + size + payload


def ws_read_frame(rf):
    """One client frame from the buffered reader rf: (opcode, fin, masked,
    payload unmasked), or None at EOF."""
    head = rf.read(2)
    if len(head) < 2:
        return None
    n = head[1] & 0x7F
    if n == 126:
        n = int.from_bytes(rf.read(2), "big")
    elif n == 127:
        n = int.from_bytes(rf.read(8), "big")
    masked = bool(head[1] & 0x80)
    mask = rf.read(4) if masked else b"\0\0\0\0"
    data = rf.read(n)
    return head[0] & 0x0F, bool(head[0] & 0x80), masked, \
        bytes(b ^ mask[i % 4] for i, b in enumerate(data))


def make_ws_broadcast(accept=ws_accept):
    """A handler speaking WebSocket the way the chat's /ws does: answers
    the upgrade (its Sec-WebSocket-Accept made by accept(key)), greets with
    a "welcome" text frame and a ping, then broadcasts each text message to
    every other client, prefixed "[client N] ". Client 0 gets every
    broadcast split in two fragments (text + continuation). What the
    clients did wrong is listed in state["problems"]; pongs are counted."""
    state = {"clients": {}, "lock": threading.Lock(), "problems": [], "pongs": 0}

    def problem(text):
        with state["lock"]:
            state["problems"].append(text)

    def handler(server, conn, index):
        rf = conn.makefile("rb")
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            line = rf.readline(4096)
            if not line:
                return
            head += line
        lines = head.decode("latin-1").split("\r\n")
        fields = dict((k.strip().lower(), v.strip()) for k, v in
                      (l.split(":", 1) for l in lines[1:] if ":" in l))
        key = fields.get("sec-websocket-key", "").encode()
        if (not lines[0].startswith("GET /ws HTTP/1.1") or
                fields.get("upgrade", "").lower() != "websocket" or
                "upgrade" not in fields.get("connection", "").lower() or
                fields.get("sec-websocket-version") != "13" or
                len(base64.b64decode(key)) != 16):
            problem(f"client {index}: bad upgrade {head!r}")
            return
        with state["lock"]:
            if key in state.setdefault("keys", set()):
                state["problems"].append(f"client {index}: key {key!r} used twice")
            state["keys"].add(key)
        conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept(key) +
                     b"\r\n\r\n" + ws_frame(0x1, b"welcome") + ws_frame(0x9, WS_PING))
        with state["lock"]:
            state["clients"][index] = conn
        try:
            while True:
                frame = ws_read_frame(rf)
                if frame is None:
                    return
                op, fin, masked, data = frame
                if not masked:
                    problem(f"client {index}: unmasked frame")
                if op == 0xA:
                    with state["lock"]:
                        state["pongs"] += data == WS_PING
                    continue
                if op != 0x1 or not fin:
                    problem(f"client {index}: frame opcode {op}, fin {fin}")
                    continue
                out = b"[client %d] " % index + data
                with state["lock"]:
                    for i, c in state["clients"].items():
                        if i == 0:
                            c.sendall(ws_frame(0x1, out[:10], fin=False) + ws_frame(0x0, out[10:]))
                        elif i != index:
                            c.sendall(ws_frame(0x1, out))
        finally:
            with state["lock"]:
                state["clients"].pop(index, None)

    return handler, state


def test_fanout_ws_every_receiver_gets_every_line(servers):
    handler, state = make_ws_broadcast()
    srv = servers(handler)
    rc, res, _ = loadgen("fanout", "--connect", f"127.0.0.1:{srv.port}", "--ws", "/ws",
                         "--receivers", 5, "--count", 200, "--window", 16)
    assert rc == 0, res["error"]
    assert res["transport"] == "websocket"
    assert (res["errors"], res["sent"], res["expected"], res["deliveries"]) == (0, 200, 1000, 1000)
    assert (res["lost"], res["duplicated"], res["reordered"], res["corrupt"]) == (0, 0, 0, 0)
    assert res["other_lines"] == 5  # each receiver's "welcome"
    # Every client (5 receivers, 1 sender) answered the ping with its payload.
    deadline = time.monotonic() + 10
    while state["pongs"] < 6 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert state["pongs"] == 6
    assert state["problems"] == []
    assert len(state["keys"]) == 6


def test_fanout_ws_checks_the_accept_key(servers):
    handler, state = make_ws_broadcast(accept=lambda key: ws_accept(key[::-1]))
    srv = servers(handler)
    rc, res, _ = loadgen("fanout", "--connect", f"127.0.0.1:{srv.port}", "--ws", "/ws",
                         "--receivers", 2, "--count", 10)
    assert rc == 1 and res["deliveries"] == 0
    assert re.match(r'client 0: WebSocket upgrade of /ws on 127\.0\.0\.1:\d+: '
                    r'Sec-WebSocket-Accept is "[^"]{28}", expected "[^"]{28}"$', res["error"]), \
        res["error"]


def test_fanout_ws_through_sockit_chat():
    """The real thing, small: 5 WebSocket receivers on `sockit chat serve
    --web`, every delivery verified; the server must then stop cleanly."""
    if not os.access(SOCKIT, os.X_OK):
        pytest.skip(f"{SOCKIT} is not built")
    p = Proc([SOCKIT, "chat", "serve", "tcp://127.0.0.1:0", "--web", "tcp://127.0.0.1:0",
              "--quiet", "--no-bot", "--flood-rate", "0"], name="chat serve")
    try:
        port = int(p.err.wait_for(rb"chat page: http://127\.0\.0\.1:(\d+)/", 10).group(1))
        rc, res, _ = loadgen("fanout", "--connect", f"127.0.0.1:{port}", "--ws", "/ws",
                             "--receivers", 5, "--count", 200, "--window", 16)
        assert rc == 0, res["error"]
        assert (res["deliveries"], res["lost"], res["corrupt"]) == (1000, 0, 0)
        p.signal(signal.SIGTERM)
        p.expect_exit(0, RUN_LIMIT)
        err = p.err.text()
        assert "Sanitizer" not in err and "runtime error" not in err, err[-2000:]
    finally:
        p.stop()


# ---------------------------------------------------------------------------
# hold
# ---------------------------------------------------------------------------

def greeter(server, conn, index):
    """Greets, then records what the client says until it closes."""
    conn.sendall(b"welcome\n")
    got = b""
    while True:
        data = conn.recv(4096)
        if not data:
            break
        got += data
    with server.lock:
        server.heard = getattr(server, "heard", []) + [got]


def test_hold_keeps_clients_until_stdin_ends(servers):
    srv = servers(greeter)
    p = subprocess.Popen([LOADGEN, "hold", "--connect", f"127.0.0.1:{srv.port}", "--conns", "5",
                          "--hello", "hi %d", "--timeout", "20"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert select.select([p.stdout], [], [], 15)[0], "no JSON line in time"
        res = json.loads(p.stdout.readline())
        assert (res["conns"], res["held"], res["errors"]) == (5, 5, 0), res
        assert p.poll() is None  # still holding
        p.stdin.close()
        assert p.wait(timeout=10) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    deadline = time.monotonic() + 10
    while len(getattr(srv, "heard", [])) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(srv.heard) == [b"hi %d\n" % i for i in range(5)]


def test_hold_reports_a_client_the_server_drops(servers):
    def drop_one(server, conn, index):
        conn.sendall(b"welcome\n")
        if index == 1:
            time.sleep(0.2)
            return  # closed by the server while held
        while conn.recv(4096):
            pass

    srv = servers(drop_one)
    # stdin stays open: the hold ends with --duration
    p = subprocess.Popen([LOADGEN, "hold", "--connect", f"127.0.0.1:{srv.port}", "--conns", "3",
                          "--duration", "1", "--timeout", "20"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        p.wait(timeout=15)
        out, err = p.stdout.read(), p.stderr.read()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        for f in (p.stdin, p.stdout, p.stderr):
            f.close()
    res = json.loads(out.decode().splitlines()[0])
    assert (res["held"], res["errors"]) == (3, 0)  # all were in when it printed
    assert p.returncode == 1 and b"the server closed the connection" in err


def test_hold_without_a_greeting_times_out(servers):
    def mute(server, conn, index):
        while conn.recv(4096):
            pass

    srv = servers(mute)
    rc, res, _ = loadgen("hold", "--connect", f"127.0.0.1:{srv.port}", "--conns", 3, limit=6)
    assert rc == 1 and res["held"] == 0
    assert res["error"] == "timed out with 0 of 3 clients in"


# ---------------------------------------------------------------------------
# the driver
# ---------------------------------------------------------------------------

def test_driver_lists_workloads():
    out = subprocess.run([sys.executable, os.path.join(REPO, "bench", "run.py"), "--list"],
                         capture_output=True, timeout=30, text=True)
    assert out.returncode == 0, out.stderr
    names = [l.split()[0] for l in out.stdout.splitlines()]
    assert {"bulk-listen", "bulk-keepopen", "bulk-connect"} <= set(names)
