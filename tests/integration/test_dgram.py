"""Message endpoints (udp v4/v6, unix-dgram, unix-seqpacket): one line of
stdin is one datagram or packet (or one read with --chunk), what arrives is
printed unchanged, a datagram listener answers the most recent peer, and a
datagram connect ends --idle-timeout (default 1 s) after stdin ends."""

import os
import socket

import pytest

from conftest import (WAIT, Server, converse, expect_no_msg, recv_msg, recvfrom_msg, sun,
                      unix_connect, unix_listening)

INET = [
    pytest.param(socket.AF_INET, "127.0.0.1", "127.0.0.1", id="v4"),
    pytest.param(socket.AF_INET6, "::1", "[::1]", id="v6"),
]


def udp_sock(fam):
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.settimeout(WAIT)
    s.bind(("::1" if fam == socket.AF_INET6 else "127.0.0.1", 0))
    return s


def unix_dgram_sock(addr):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.settimeout(WAIT)
    s.bind(addr)
    return s


# ---- udp listen ------------------------------------------------------------------

@pytest.mark.parametrize("fam,host,lit", INET)
def test_udp_listen_answers_latest_peer(run, fam, host, lit):
    sk = run.sockit("listen", f"udp://{lit}:0")
    port = sk.port()
    assert sk.listening() == f"udp://{lit}:{port}"
    a, b = run.track(udp_sock(fam)), run.track(udp_sock(fam))

    a.sendto(b"from a\n", (host, port))
    sk.out.expect(b"from a\n")
    sk.write(b"to a\n")
    data, src = recvfrom_msg(a)
    assert (data, src[:2]) == (b"to a\n", (host, port))

    b.sendto(b"no newline", (host, port))          # printed unchanged
    sk.out.expect(b"no newline")
    sk.write(b"to b 1\nto b 2\n")                  # two lines: two datagrams
    assert recv_msg(b) == b"to b 1\n"
    assert recv_msg(b) == b"to b 2\n"
    expect_no_msg(a)

    a.sendto(b"a again\n", (host, port))
    sk.out.expect(b"a again\n")
    sk.write(b"back to a\n")
    assert recv_msg(a) == b"back to a\n"
    expect_no_msg(b)


def test_udp_large_datagram_unchanged(run):
    payload = os.urandom(60000)
    sk = run.sockit("listen", "udp://127.0.0.1:0")
    c = run.track(udp_sock(socket.AF_INET))
    c.sendto(payload, ("127.0.0.1", sk.port()))
    sk.out.expect(payload)


UDP_CLIENTS = {
    # nc -u without -v: with -v it sends probe datagrams ("X") of its own
    "nc-v4": ("127.0.0.1", ["nc", "-u", "127.0.0.1", "{port}"]),
    "nc-v6": ("[::1]", ["nc", "-u", "::1", "{port}"]),
    "socat-v4": ("127.0.0.1", ["socat", "-", "UDP4:127.0.0.1:{port}"]),
    "socat-v6": ("[::1]", ["socat", "-", "UDP6:[::1]:{port}"]),
}


@pytest.mark.parametrize("peer", list(UDP_CLIENTS))
def test_udp_listen_with_peer(run, peer):
    lit, argv = UDP_CLIENTS[peer]
    sk = run.sockit("listen", f"udp://{lit}:0")
    port = sk.port()
    cp = run.spawn([a.format(port=port) for a in argv], name=peer)
    converse(cp, sk, b"hello from " + peer.encode() + b"\n", b"hello from sockit\n")
    converse(cp, sk, b"second\n", b"second reply\n")


# ---- udp connect -------------------------------------------------------------------

@pytest.mark.parametrize("fam,host,lit", INET)
def test_udp_connect_line_per_datagram(run, fam, host, lit):
    def handler(sock):
        got = []
        for _ in range(3):
            data, peer = recvfrom_msg(sock)
            got.append(data)
        sock.sendto(b"R1", peer)
        sock.sendto(b"R2\n", peer)
        return got

    srv = Server(fam, socket.SOCK_DGRAM, handler)
    sk = run.sockit("connect", f"udp://{lit}:{srv.port}")
    sk.write(b"one\ntwo\nthree\n")
    sk.close_stdin()
    sk.expect_exit(0)                          # 1 s of quiet after stdin ended
    assert sk.out.read_to_eof() == b"R1R2\n"
    assert srv.join() == [b"one\n", b"two\n", b"three\n"]


def test_udp_connect_chunk(run):
    """--chunk: each read of stdin is one datagram, newlines and all."""
    sock = run.track(udp_sock(socket.AF_INET))
    sk = run.sockit("connect", "--chunk", f"udp://127.0.0.1:{sock.getsockname()[1]}")
    sk.write(b"a\nb\n")
    data, peer = recvfrom_msg(sock)
    assert data == b"a\nb\n"
    sk.write(b"no newline")                    # written after the first was read
    assert recv_msg(sock) == b"no newline"
    sock.sendto(b"reply", peer)
    sk.out.expect(b"reply")
    sk.close_stdin()
    sk.expect_exit(0)


def test_udp_connect_to_nc(run):
    nc = run.spawn(["nc", "-luv", "127.0.0.1", "0"], name="nc -lu")
    port = int(nc.err.wait_for(rb"Bound on \S+ (\d+)").group(1))
    sk = run.sockit("connect", f"udp://127.0.0.1:{port}")
    converse(sk, nc, b"hello from sockit\n", b"hello from nc\n")
    sk.close_stdin()
    sk.expect_exit(0)
    assert sk.out.read_to_eof() == b""


@pytest.mark.parametrize("fam,host,lit", INET)
def test_udp_sockit_to_sockit(run, fam, host, lit):
    lp = run.sockit("listen", f"udp://{lit}:0")
    cp = run.sockit("connect", f"udp://{lit}:{lp.port()}")
    converse(cp, lp, b"ping\n", b"pong\n")
    converse(cp, lp, b"ping 2\n", b"pong 2\n")
    cp.close_stdin()
    cp.expect_exit(0)


def test_udp_connect_idle_timeout_after_stdin_ends(run):
    """No reply at all: exit 0 once --idle-timeout passes after stdin ends."""
    srv = Server(socket.AF_INET, socket.SOCK_DGRAM, lambda s: recv_msg(s))
    sk = run.sockit("connect", "--idle-timeout", "0.3", f"udp://127.0.0.1:{srv.port}")
    sk.write(b"anyone?\n")
    sk.close_stdin()
    sk.expect_exit(0)
    assert srv.join() == b"anyone?\n"


def test_udp_connect_idle_timeout_stdin_open(run):
    """stdin open but silent and no datagrams: --idle-timeout ends it, exit 1."""
    sock = run.track(udp_sock(socket.AF_INET))
    sk = run.sockit("connect", "--idle-timeout", "0.3", f"udp://127.0.0.1:{sock.getsockname()[1]}")
    sk.expect_exit(1)


# ---- unix-dgram ----------------------------------------------------------------------

@pytest.mark.parametrize("where", ["path", "abstract"])
def test_unix_dgram_listen_answers_latest_peer(run, sockdir, abstract_name, where):
    addr = os.path.join(sockdir, "s") if where == "path" else "@" + abstract_name("l")
    sk = run.sockit("listen", f"unix-dgram:{addr}")
    unix_listening(addr, socket.SOCK_DGRAM)
    a = run.track(unix_dgram_sock(os.path.join(sockdir, "a")))
    b = run.track(unix_dgram_sock(sun("@" + abstract_name("b"))))

    a.sendto(b"from a\n", sun(addr))
    sk.out.expect(b"from a\n")
    sk.write(b"to a\n")
    assert recv_msg(a) == b"to a\n"

    b.sendto(b"from b\n", sun(addr))
    sk.out.expect(b"from b\n")
    sk.write(b"to b\nand more\n")
    assert recv_msg(b) == b"to b\n"
    assert recv_msg(b) == b"and more\n"
    expect_no_msg(a)


def test_unix_dgram_listen_with_socat(run, sockdir):
    path = os.path.join(sockdir, "s")
    sk = run.sockit("listen", f"unix-dgram:{path}")
    unix_listening(path, socket.SOCK_DGRAM)
    so = run.spawn(["socat", "-", f"UNIX-SENDTO:{path},bind={os.path.join(sockdir, 'c')}"],
                   name="socat unix-sendto")
    converse(so, sk, b"hello from socat\n", b"hello from sockit\n")


@pytest.mark.parametrize("where", ["path", "abstract"])
def test_unix_dgram_connect(run, sockdir, abstract_name, where):
    addr = os.path.join(sockdir, "srv") if where == "path" else "@" + abstract_name("srv")

    def handler(sock):
        d1, peer = recvfrom_msg(sock)
        d2, _ = recvfrom_msg(sock)
        sock.sendto(b"reply\n", peer)
        return d1, d2, peer

    srv = Server(socket.AF_UNIX, socket.SOCK_DGRAM, handler, sun(addr))
    sk = run.sockit("connect", f"unix-dgram:{addr}")
    sk.write(b"first\nsecond\n")
    sk.close_stdin()
    sk.expect_exit(0)
    assert sk.out.read_to_eof() == b"reply\n"
    d1, d2, peer = srv.join()
    assert (d1, d2) == (b"first\n", b"second\n")
    assert peer, "sockit's unix-dgram client is not bound: replies cannot reach it"


def test_unix_dgram_connect_to_socat(run, sockdir):
    path = os.path.join(sockdir, "srv")
    so = run.spawn(["socat", "-d", "-d", f"UNIX-RECVFROM:{path}", "-"], name="socat recvfrom")
    so.err.wait_for(rb"receiving on")
    sk = run.sockit("connect", f"unix-dgram:{path}")
    converse(sk, so, b"hello from sockit\n", b"hello from socat\n")
    sk.close_stdin()
    sk.expect_exit(0)


@pytest.mark.parametrize("where", ["path", "abstract"])
def test_unix_dgram_sockit_to_sockit(run, sockdir, abstract_name, where):
    addr = os.path.join(sockdir, "s") if where == "path" else "@" + abstract_name("s")
    lp = run.sockit("listen", f"unix-dgram:{addr}")
    unix_listening(addr, socket.SOCK_DGRAM)
    cp = run.sockit("connect", f"unix-dgram:{addr}")
    converse(cp, lp, b"ping\n", b"pong\n")
    cp.close_stdin()
    cp.expect_exit(0)


# ---- unix-seqpacket keeps packet boundaries -----------------------------------------

@pytest.mark.parametrize("where", ["path", "abstract"])
def test_seqpacket_listen_packets(run, sockdir, abstract_name, where):
    addr = os.path.join(sockdir, "s") if where == "path" else "@" + abstract_name("sp")
    sk = run.sockit("listen", f"unix-seqpacket:{addr}")
    unix_listening(addr, socket.SOCK_SEQPACKET)
    with unix_connect(sun(addr), socket.SOCK_SEQPACKET) as c:
        c.send(b"m1\n")
        c.send(b"m2")
        sk.out.expect(b"m1\nm2")
        sk.write(b"a\nb\n")
        assert recv_msg(c) == b"a\n"
        assert recv_msg(c) == b"b\n"
        sk.close_stdin()
        assert recv_msg(c) == b"", "no EOF after sockit's stdin ended"
    sk.expect_exit(0)


def test_seqpacket_listen_chunk(run, sockdir):
    path = os.path.join(sockdir, "s")
    sk = run.sockit("listen", "--chunk", f"unix-seqpacket:{path}")
    unix_listening(path, socket.SOCK_SEQPACKET)
    with unix_connect(path, socket.SOCK_SEQPACKET) as c:
        c.send(b"hi\n")
        sk.out.expect(b"hi\n")       # the session is up: stdin is read from now on
        sk.write(b"a\nb\n")
        assert recv_msg(c) == b"a\nb\n"


def test_seqpacket_connect_packets(run, sockdir):
    path = os.path.join(sockdir, "srv")

    def handler(conn):
        got = [recv_msg(conn), recv_msg(conn)]
        conn.send(b"x")
        conn.send(b"y\n")
        got.append(recv_msg(conn))            # b"" once sockit's stdin ends
        return got

    srv = Server(socket.AF_UNIX, socket.SOCK_SEQPACKET, handler, path)
    sk = run.sockit("connect", f"unix-seqpacket:{path}")
    sk.write(b"p1\np2\n")
    sk.out.expect(b"xy\n")
    sk.close_stdin()
    sk.expect_exit(0)
    assert srv.join() == [b"p1\n", b"p2\n", b""]


def test_udp_chunk_larger_than_a_datagram_is_split(run):
    """--chunk input longer than the largest UDP payload (65507 bytes over
    IPv4) goes out as full datagrams, not as an error."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind(("127.0.0.1", 0))
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    srv.settimeout(5)
    data = os.urandom(70000)
    code, out, err = run.run("connect", "--chunk", "--idle-timeout", "0.3",
                             f"udp://127.0.0.1:{srv.getsockname()[1]}", input=data)
    assert code == 0, err
    got = b""
    sizes = []
    while len(got) < len(data):
        d = srv.recv(70000)
        sizes.append(len(d))
        got += d
    assert got == data and max(sizes) <= 65507, sizes
    srv.close()
