"""Stream endpoints (tcp v4/v6, unix, unix:@abstract, unix-seqpacket):
`sockit connect` and `sockit listen` against nc, socat, Python peers and
each other, with the half-close rules of docs/cli.md."""

import os
import socket

import pytest

from conftest import (WAIT, Server, converse, expect_recv, free_port_holder, poll_until,
                      recv_msg, recv_to_eof, sun, tcp_connect, unix_listening)

INET = [
    pytest.param(socket.AF_INET, "127.0.0.1", "127.0.0.1", id="v4"),
    pytest.param(socket.AF_INET6, "::1", "[::1]", id="v6"),
]


def start_listener(run, kind, sockdir, name, *opts):
    """Starts `sockit listen` on a fresh endpoint of `kind` and waits until it
    listens. Returns (process, endpoint to connect to)."""
    if kind in ("tcp4", "tcp6"):
        lit = "127.0.0.1" if kind == "tcp4" else "[::1]"
        p = run.sockit("listen", *opts, f"tcp://{lit}:0")
        return p, f"tcp://{lit}:{p.port()}"
    scheme, socktype = {
        "unix": ("unix:", socket.SOCK_STREAM),
        "abstract": ("unix:", socket.SOCK_STREAM),
        "seqpacket": ("unix-seqpacket:", socket.SOCK_SEQPACKET),
        "seqpacket-abstract": ("unix-seqpacket:", socket.SOCK_SEQPACKET),
    }[kind]
    addr = "@" + name(kind) if "abstract" in kind else os.path.join(sockdir, "s")
    p = run.sockit("listen", *opts, scheme + addr)
    unix_listening(addr, socktype)
    return p, scheme + addr


STREAM_KINDS = ["tcp4", "tcp6", "unix", "abstract", "seqpacket", "seqpacket-abstract"]


# ---- the listening line ------------------------------------------------------

@pytest.mark.parametrize("fam,host,lit", INET)
def test_listening_line_names_bound_port(run, fam, host, lit):
    p = run.sockit("listen", f"tcp://{lit}:0")
    ep = p.listening()
    port = p.port()
    assert ep == f"tcp://{lit}:{port}" and port != 0
    with tcp_connect(host, port) as c:
        c.sendall(b"x")
        p.out.expect(b"x")


def test_port_file(run, sockdir):
    pf = os.path.join(sockdir, "port")
    p = run.sockit("listen", "--port-file", pf, "tcp://127.0.0.1:0")
    port = p.port()
    poll_until(lambda: os.path.exists(pf) and open(pf).read().strip() != "",
               what="the port file")
    assert open(pf).read().strip() == str(port)
    with tcp_connect("127.0.0.1", port) as c:
        c.sendall(b"via port file\n")
        p.out.expect(b"via port file\n")


# ---- sockit connect against real listeners ------------------------------------

PEER_LISTENERS = {
    # id: (argv, readiness regex on the peer's stderr, sockit endpoint)
    "nc-tcp4": (["nc", "-lvN", "127.0.0.1", "0"], rb"Listening on \S+ (\d+)",
                "tcp://127.0.0.1:{port}"),
    "nc-tcp6": (["nc", "-lvN", "::1", "0"], rb"Listening on \S+ (\d+)", "tcp://[::1]:{port}"),
    "socat-tcp4": (["socat", "-d", "-d", "TCP4-LISTEN:0,bind=127.0.0.1", "-"],
                   rb"listening on AF=2 \S+:(\d+)", "tcp://127.0.0.1:{port}"),
    "socat-tcp6": (["socat", "-d", "-d", "TCP6-LISTEN:0,bind=[::1]", "-"],
                   rb"listening on AF=10 \S+:(\d+)", "tcp://[::1]:{port}"),
    "nc-unix": (["nc", "-lUvN", "{path}"], rb"Listening on", "unix:{path}"),
    "socat-unix": (["socat", "-d", "-d", "UNIX-LISTEN:{path}", "-"], rb"listening on",
                   "unix:{path}"),
    "socat-abstract": (["socat", "-d", "-d", "ABSTRACT-LISTEN:{name}", "-"], rb"listening on",
                       "unix:@{name}"),
    "socat-seqpacket": (["socat", "-d", "-d", "UNIX-LISTEN:{path},type=5", "-"],
                        rb"listening on", "unix-seqpacket:{path}"),
    "socat-seqpacket-abstract": (["socat", "-d", "-d", "ABSTRACT-LISTEN:{name},type=5", "-"],
                                 rb"listening on", "unix-seqpacket:@{name}"),
}


@pytest.mark.parametrize("peer", list(PEER_LISTENERS))
def test_connect_to_peer_listener(run, sockdir, abstract_name, peer):
    argv, ready, ep = PEER_LISTENERS[peer]
    fill = dict(path=os.path.join(sockdir, "s"), name=abstract_name(peer))
    lp = run.spawn([a.format(**fill) for a in argv], name=peer)
    m = lp.err.wait_for(ready)
    if m.groups():
        fill["port"] = int(m.group(1))
    sk = run.sockit("connect", ep.format(**fill))
    converse(sk, lp, b"hello from sockit\n", b"hello from " + peer.encode() + b"\n")
    # End of sockit's stdin: it shuts down its write half, the peer reads EOF;
    # then the peer's stdin ends and it closes. Both finish cleanly.
    sk.close_stdin()
    lp.close_stdin()
    lp.expect_exit(0)
    sk.expect_exit(0)
    assert sk.out.read_to_eof() == b""
    assert lp.out.read_to_eof() == b""


# ---- real clients against sockit listen ----------------------------------------

PEER_CLIENTS = {
    # id: (listener kind, client argv)
    "nc-tcp4": ("tcp4", ["nc", "-N", "127.0.0.1", "{port}"]),
    "nc-tcp6": ("tcp6", ["nc", "-N", "::1", "{port}"]),
    "socat-tcp4": ("tcp4", ["socat", "-", "TCP4:127.0.0.1:{port}"]),
    "socat-tcp6": ("tcp6", ["socat", "-", "TCP6:[::1]:{port}"]),
    "nc-unix": ("unix", ["nc", "-UN", "{path}"]),
    "socat-unix": ("unix", ["socat", "-", "UNIX-CONNECT:{path}"]),
    "socat-abstract": ("abstract", ["socat", "-", "ABSTRACT-CONNECT:{name}"]),
    "socat-seqpacket": ("seqpacket", ["socat", "-", "UNIX-CONNECT:{path},type=5"]),
    "socat-seqpacket-abstract": ("seqpacket-abstract",
                                 ["socat", "-", "ABSTRACT-CONNECT:{name},type=5"]),
}


@pytest.mark.parametrize("peer", list(PEER_CLIENTS))
def test_peer_connects_to_listener(run, sockdir, abstract_name, peer):
    kind, argv = PEER_CLIENTS[peer]
    sk, ep = start_listener(run, kind, sockdir, abstract_name)
    fill = dict(port=ep.rsplit(":", 1)[-1], path=ep.split(":", 1)[1],
                name=ep.split("@", 1)[-1])
    cp = run.spawn([a.format(**fill) for a in argv], name=peer)
    converse(cp, sk, b"hello from " + peer.encode() + b"\n", b"hello from sockit\n")
    # sockit's stdin ends: it shuts down its write half and the client reads
    # EOF; then the client's stdin ends and it shuts down its own. Both
    # directions are done, both exit 0. (Which side may end the session
    # while its own stdin is still open is tested on its own below.)
    sk.close_stdin()
    cp.close_stdin()
    sk.expect_exit(0)
    cp.expect_exit(0)
    assert sk.out.read_to_eof() == b""
    assert cp.out.read_to_eof() == b""


# ---- sockit to sockit ------------------------------------------------------------

@pytest.mark.parametrize("kind", STREAM_KINDS)
def test_sockit_to_sockit(run, sockdir, abstract_name, kind):
    lp, ep = start_listener(run, kind, sockdir, abstract_name)
    cp = run.sockit("connect", ep)
    converse(cp, lp, b"from connect\n", b"from listen\n")
    cp.close_stdin()
    lp.close_stdin()
    lp.expect_exit(0)
    cp.expect_exit(0)
    assert lp.out.read_to_eof() == b""
    assert cp.out.read_to_eof() == b""


# ---- half-close and who ends the session --------------------------------------------

def server_for(kind, handler, sockdir, abstract_name):
    """A one-connection Python server and the sockit endpoint for it."""
    if kind == "tcp4":
        s = Server(socket.AF_INET, socket.SOCK_STREAM, handler)
        return s, f"tcp://127.0.0.1:{s.port}"
    if kind == "tcp6":
        s = Server(socket.AF_INET6, socket.SOCK_STREAM, handler)
        return s, f"tcp://[::1]:{s.port}"
    if kind == "unix":
        path = os.path.join(sockdir, "srv")
        return Server(socket.AF_UNIX, socket.SOCK_STREAM, handler, path), f"unix:{path}"
    if kind == "abstract":
        name = "@" + abstract_name("srv")
        return Server(socket.AF_UNIX, socket.SOCK_STREAM, handler, sun(name)), f"unix:{name}"
    if kind == "seqpacket":
        path = os.path.join(sockdir, "srv")
        return (Server(socket.AF_UNIX, socket.SOCK_SEQPACKET, handler, path),
                f"unix-seqpacket:{path}")
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["tcp4", "tcp6", "unix", "abstract"])
def test_half_close_reply_after_eof(run, sockdir, abstract_name, kind):
    """The server answers only after it reads EOF: sockit must shut down its
    write half at end of stdin and still print the whole reply."""
    payload = os.urandom(300_000)

    def reverse(conn):
        data = recv_to_eof(conn)
        conn.sendall(data[::-1])
        return data

    srv, ep = server_for(kind, reverse, sockdir, abstract_name)
    sk = run.sockit("connect", ep)
    sk.write(payload)
    sk.close_stdin()
    sk.expect_exit(0)
    assert sk.out.read_to_eof() == payload[::-1]
    assert srv.join() == payload


def test_half_close_seqpacket(run, sockdir, abstract_name):
    """unix-seqpacket: one packet per line, then EOF, then the reply."""
    def handler(conn):
        got = [recv_msg(conn), recv_msg(conn)]
        assert recv_msg(conn) == b"", "no EOF after stdin ended"
        conn.send(b"r1\n")
        conn.send(b"r2\n")
        return got

    srv, ep = server_for("seqpacket", handler, sockdir, abstract_name)
    sk = run.sockit("connect", ep)
    sk.write(b"one\ntwo\n")
    sk.close_stdin()
    sk.expect_exit(0)
    assert sk.out.read_to_eof() == b"r1\nr2\n"
    assert srv.join() == [b"one\n", b"two\n"]


def test_no_shutdown_keeps_write_half_open(run):
    """--no-shutdown: the server never reads EOF; --idle-timeout ends the
    session with exit 1."""
    seen = {}

    def handler(conn):
        expect_recv(conn, b"ping\n")
        conn.sendall(b"pong\n")
        conn.settimeout(1.0)
        try:
            seen["early"] = conn.recv(100)   # b"" here would be a shutdown
        except socket.timeout:
            seen["early"] = None
        seen["late"] = recv_to_eof(conn)     # sockit closes at its idle timeout

    srv = Server(socket.AF_INET, socket.SOCK_STREAM, handler)
    sk = run.sockit("connect", "--no-shutdown", "--idle-timeout", "2",
                    f"tcp://127.0.0.1:{srv.port}")
    sk.write(b"ping\n")
    sk.close_stdin()
    sk.out.expect(b"pong\n")
    sk.expect_exit(1, timeout=WAIT + 2)
    srv.join()
    assert seen["early"] is None, f"server read {seen['early']!r} although --no-shutdown"
    assert seen["late"] == b""
    assert sk.err.text().startswith("sockit:"), sk.err.text()


@pytest.mark.parametrize("kind", ["tcp4", "unix"])
def test_connect_peer_closes_first(run, sockdir, abstract_name, kind):
    """The peer sends and closes while sockit's stdin is still open (a pipe
    with no data): sockit prints what it sent and, once input has paused
    (0.5 s), exits 0."""
    srv, ep = server_for(kind, lambda conn: conn.sendall(b"bye\n"), sockdir, abstract_name)
    sk = run.sockit("connect", ep)        # stdin left open
    sk.expect_exit(0)
    assert sk.out.read_to_eof() == b"bye\n"
    srv.join()


def test_connect_peer_closes_first_terminal_stdin(run):
    """The same with stdin a terminal: the session ends at once, exit 0."""
    master, slave = os.openpty()
    try:
        srv = Server(socket.AF_INET, socket.SOCK_STREAM, lambda conn: conn.sendall(b"bye\n"))
        sk = run.sockit("connect", f"tcp://127.0.0.1:{srv.port}", stdin=slave)
        sk.expect_exit(0)
        assert sk.out.read_to_eof() == b"bye\n"
        srv.join()
    finally:
        os.close(slave)
        os.close(master)


def test_listen_peer_closes_first(run):
    sk = run.sockit("listen", "tcp://127.0.0.1:0")   # stdin left open
    with tcp_connect("127.0.0.1", sk.port()) as c:
        c.sendall(b"bye\n")
    sk.expect_exit(0)
    assert sk.out.read_to_eof() == b"bye\n"


def test_idle_timeout_stream(run):
    """No data either way for --idle-timeout: exit 1."""
    srv = Server(socket.AF_INET, socket.SOCK_STREAM, lambda conn: recv_to_eof(conn))
    sk = run.sockit("connect", "--idle-timeout", "0.5", f"tcp://127.0.0.1:{srv.port}")
    sk.expect_exit(1)
    srv.join()


# ---- errors ---------------------------------------------------------------------

@pytest.mark.parametrize("fam,host,lit", INET)
def test_connect_refused(run, fam, host, lit):
    with free_port_holder(fam) as holder:      # bound, not listening: refused
        port = holder.getsockname()[1]
        rc, out, err = run.run("connect", f"tcp://{lit}:{port}")
    assert rc == 1
    assert out == b""
    assert err == f"sockit: connect tcp://{lit}:{port}: Connection refused\n"


def test_connect_refused_with_connect_timeout(run):
    with free_port_holder() as holder:
        port = holder.getsockname()[1]
        rc, out, err = run.run("connect", "--connect-timeout", "2.5", f"tcp://127.0.0.1:{port}")
    assert rc == 1
    assert err == f"sockit: connect tcp://127.0.0.1:{port}: Connection refused\n"


def test_connect_unix_missing_file(run, sockdir):
    path = os.path.join(sockdir, "nothing")
    rc, out, err = run.run("connect", f"unix:{path}")
    assert rc == 1
    assert err == f"sockit: connect unix:{path}: No such file or directory\n"


def test_connect_unix_stale_file_refused(run, sockdir):
    path = os.path.join(sockdir, "stale")
    s = socket.socket(socket.AF_UNIX)
    s.bind(path)
    s.close()                                     # file stays, nobody listens
    rc, out, err = run.run("connect", f"unix:{path}")
    assert rc == 1
    assert err == f"sockit: connect unix:{path}: Connection refused\n"


def test_connect_abstract_refused(run, abstract_name):
    name = abstract_name("none")
    rc, out, err = run.run("connect", f"unix:@{name}")
    assert rc == 1
    assert err == f"sockit: connect unix:@{name}: Connection refused\n"


# ---- options ------------------------------------------------------------------------

def echo_once(conn):
    data = recv_to_eof(conn)
    conn.sendall(data)
    return data


def test_connect_timeout_decimal_connects(run):
    srv = Server(socket.AF_INET, socket.SOCK_STREAM, echo_once)
    rc, out, err = run.run("connect", "--connect-timeout", "0.5",
                           f"tcp://127.0.0.1:{srv.port}", input=b"hi\n")
    assert (rc, out) == (0, b"hi\n"), err
    assert srv.join() == b"hi\n"


def test_connect_localhost(run):
    srv = Server(socket.AF_INET, socket.SOCK_STREAM, echo_once)
    rc, out, err = run.run("connect", f"tcp://localhost:{srv.port}", input=b"by name\n")
    assert (rc, out) == (0, b"by name\n"), err


def test_connect_crlf(run):
    srv = Server(socket.AF_INET, socket.SOCK_STREAM, echo_once)
    rc, out, err = run.run("connect", "--crlf", f"tcp://127.0.0.1:{srv.port}",
                           input=b"GET / HTTP/1.0\n\n")
    assert rc == 0, err
    assert srv.join() == b"GET / HTTP/1.0\r\n\r\n"
    assert out == b"GET / HTTP/1.0\r\n\r\n"     # what comes back is not altered


def test_listen_crlf(run):
    sk = run.sockit("listen", "--crlf", "tcp://127.0.0.1:0")
    with tcp_connect("127.0.0.1", sk.port()) as c:
        c.sendall(b"in\n")
        sk.out.expect(b"in\n")
        sk.write(b"a\nb\n")
        sk.close_stdin()
        assert recv_to_eof(c) == b"a\r\nb\r\n"


@pytest.mark.parametrize("source,fam,expect_host", [
    ("127.0.0.2", socket.AF_INET, "127.0.0.2"),
    ("127.0.0.2:{port}", socket.AF_INET, "127.0.0.2"),
    ("[::1]:{port}", socket.AF_INET6, "::1"),
])
def test_source_address(run, source, fam, expect_host):
    srv = Server(fam, socket.SOCK_STREAM, echo_once)
    with free_port_holder(fam) as h:
        port = h.getsockname()[1]
    src = source.format(port=port)
    lit = "[::1]" if fam == socket.AF_INET6 else "127.0.0.1"
    rc, out, err = run.run("connect", "--source", src, f"tcp://{lit}:{srv.port}",
                           input=b"from source\n")
    assert (rc, out) == (0, b"from source\n"), err
    srv.join()
    assert srv.peer[0] == expect_host
    if "{port}" in source:
        assert srv.peer[1] == port


def test_verbose_names_peer(run):
    srv = Server(socket.AF_INET, socket.SOCK_STREAM, echo_once)
    rc, out, err = run.run("connect", "-v", f"tcp://127.0.0.1:{srv.port}", input=b"x")
    assert (rc, out) == (0, b"x"), err
    assert f"127.0.0.1:{srv.port}" in err
    assert all(line.startswith("sockit:") for line in err.splitlines()), err


def test_tls_to_a_plain_server_fails_the_handshake(run):
    """tls:// to a server that never speaks TLS: exit 1, a one-line error
    naming the endpoint and the TLS failure (see test_tls.py for TLS)."""
    srv = Server(socket.AF_INET, socket.SOCK_STREAM, lambda conn: conn.recv(1))
    rc, out, err = run.run("connect", "--insecure", f"tls://127.0.0.1:{srv.port}")
    assert rc == 1, err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"sockit: tls tls://127.0.0.1:{srv.port}: "), err
    srv.close()
