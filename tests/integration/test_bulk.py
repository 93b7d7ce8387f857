"""Bulk transfer: megabytes of random bytes through sockit, byte-identical
(sha256), in both directions, over TCP and Unix stream sockets, sockit to
sockit and sockit to socat."""

import hashlib
import os
import socket
import subprocess
import time

import pytest

from conftest import WAIT, Server, unix_listening

SIZE = 4 * 1024 * 1024
BULK_WAIT = max(WAIT, 20)     # sanitizer builds move megabytes slowly


@pytest.fixture
def payload(sockdir):
    """(path of a file of SIZE random bytes, its sha256)."""
    path = os.path.join(sockdir, "payload")
    data = os.urandom(SIZE)
    with open(path, "wb") as f:
        f.write(data)
    return path, hashlib.sha256(data).hexdigest()


def listener(run, kind, sockdir, stdin):
    if kind == "tcp":
        p = run.sockit("listen", "tcp://127.0.0.1:0", stdin=stdin)
        return p, f"tcp://127.0.0.1:{p.port()}"
    path = os.path.join(sockdir, "s")
    p = run.sockit("listen", f"unix:{path}", stdin=stdin)
    unix_listening(path)
    return p, f"unix:{path}"


def sha(data):
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("kind", ["tcp", "unix"])
def test_bulk_connect_to_listen(run, sockdir, payload, kind):
    path, digest = payload
    # The listener's stdin stays open (and empty) so that it does not
    # half-close first; the session ends when the connect side's EOF arrives.
    lp, ep = listener(run, kind, sockdir, stdin=subprocess.PIPE)
    with open(path, "rb") as f:
        cp = run.sockit("connect", ep, stdin=f)
    got = lp.out.read_exact(SIZE, timeout=BULK_WAIT)
    assert sha(got) == digest
    # Everything arrived; now the listener's stdin ends too (whether the
    # session already ended at the peer's EOF is not this test's question).
    lp.close_stdin()
    lp.expect_exit(0, timeout=BULK_WAIT)
    assert lp.out.read_to_eof() == b""
    cp.expect_exit(0, timeout=BULK_WAIT)
    assert cp.out.read_to_eof() == b""


@pytest.mark.parametrize("kind", ["tcp", "unix"])
def test_bulk_listen_to_connect(run, sockdir, payload, kind):
    path, digest = payload
    with open(path, "rb") as f:
        lp, ep = listener(run, kind, sockdir, stdin=f)
    cp = run.sockit("connect", ep)             # stdin open and empty
    got = cp.out.read_exact(SIZE, timeout=BULK_WAIT)
    assert sha(got) == digest
    cp.close_stdin()
    cp.expect_exit(0, timeout=BULK_WAIT)
    assert cp.out.read_to_eof() == b""
    lp.expect_exit(0, timeout=BULK_WAIT)


def test_bulk_to_socat(run, payload):
    """sockit connect -> socat listener writing what it reads to stdout."""
    path, digest = payload
    so = run.spawn(["socat", "-d", "-d", "-u", "TCP4-LISTEN:0,bind=127.0.0.1", "STDOUT"],
                   name="socat")
    port = int(so.err.wait_for(rb"listening on AF=2 \S+:(\d+)").group(1))
    with open(path, "rb") as f:
        cp = run.sockit("connect", f"tcp://127.0.0.1:{port}", stdin=f)
    so.expect_exit(0, timeout=BULK_WAIT)
    got = so.out.read_to_eof()
    assert (len(got), sha(got)) == (SIZE, digest)
    cp.expect_exit(0, timeout=BULK_WAIT)


def test_bulk_from_socat(run, payload):
    """socat client sends a file -> sockit listen -> stdout."""
    path, digest = payload
    lp = run.sockit("listen", "tcp://127.0.0.1:0")
    port = lp.port()
    so = run.spawn(["socat", "-u", f"OPEN:{path}", f"TCP4:127.0.0.1:{port}"], name="socat")
    got = lp.out.read_exact(SIZE, timeout=BULK_WAIT)
    assert sha(got) == digest
    lp.close_stdin()
    lp.expect_exit(0, timeout=BULK_WAIT)
    assert lp.out.read_to_eof() == b""
    so.expect_exit(0, timeout=BULK_WAIT)


BIG = 32 * 1024 * 1024


def drain(sock):
    """Reads to EOF: (byte count, sha256)."""
    h, n = hashlib.sha256(), 0
    sock.settimeout(WAIT)
    while True:
        chunk = sock.recv(1 << 20)
        if not chunk:
            return n, h.hexdigest()
        h.update(chunk)
        n += len(chunk)


@pytest.mark.parametrize("side", ["connect", "listen"])
def test_bulk_stalled_reader(run, sockdir, side):
    """The peer stalls (does not read for a while, small receive buffer),
    then reads: all 32 MiB arrive, so sockit resumes reading its stdin."""
    path = os.path.join(sockdir, "big")
    data = os.urandom(BIG)
    with open(path, "wb") as f:
        f.write(data)
    want = (BIG, hashlib.sha256(data).hexdigest())

    def stalled_then_drain(sock):
        time.sleep(0.5)          # the fault: a peer that does not read
        return drain(sock)

    if side == "connect":
        srv = Server(socket.AF_INET, socket.SOCK_STREAM, stalled_then_drain)
        with open(path, "rb") as f:
            sk = run.sockit("connect", f"tcp://127.0.0.1:{srv.port}", stdin=f)
        assert srv.join(BULK_WAIT) == want
    else:
        with open(path, "rb") as f:
            sk = run.sockit("listen", "tcp://127.0.0.1:0", stdin=f)
        c = socket.socket()
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        c.settimeout(WAIT)
        with c:
            c.connect(("127.0.0.1", sk.port()))
            assert stalled_then_drain(c) == want
    sk.expect_exit(0, timeout=BULK_WAIT)


def test_upload_to_half_closed_peer(run, payload):
    """The server shuts its write half at once and then reads: piped input
    that keeps flowing is still sent in full (docs/cli.md, peer closes first)."""
    path, digest = payload

    def half_closed_sink(conn):
        conn.shutdown(socket.SHUT_WR)
        return drain(conn)

    srv = Server(socket.AF_INET, socket.SOCK_STREAM, half_closed_sink)
    with open(path, "rb") as f:
        sk = run.sockit("connect", f"tcp://127.0.0.1:{srv.port}", stdin=f)
    assert srv.join(BULK_WAIT) == (SIZE, digest)
    sk.expect_exit(0, timeout=BULK_WAIT)
    assert sk.out.read_to_eof() == b""


@pytest.mark.parametrize("kind", ["tcp", "unix"])
def test_listen_to_file_with_no_input(run, sockdir, payload, kind):
    """`sockit listen > file` with no input, `sockit connect < file`: the
    listener's EOF comes first, and the whole upload still arrives."""
    path, digest = payload
    lp, ep = listener(run, kind, sockdir, stdin=subprocess.DEVNULL)
    with open(path, "rb") as f:
        cp = run.sockit("connect", ep, stdin=f)
    cp.expect_exit(0, timeout=BULK_WAIT)
    lp.expect_exit(0, timeout=BULK_WAIT)
    got = lp.out.read_to_eof()
    assert (len(got), sha(got)) == (SIZE, digest)
    assert cp.out.read_to_eof() == b""
