"""`sockit listen`: --keep-open broadcast, --max-conns, --allow/--deny,
descriptor exhaustion, signals, Unix socket files, bind errors."""

import hashlib
import os
import re
import resource
import selectors
import signal
import socket
import threading
import time

import pytest

from conftest import (WAIT, children_of, closed_without_data_nowait, expect_closed,
                      expect_no_msg, expect_recv, poll_until, recv_msg, recv_to_eof,
                      tcp_connect, unix_connect, unix_listening, wait_signal_taken)


def lines(data):
    return sorted(data.splitlines(keepends=True))


# ---- --keep-open ---------------------------------------------------------------------

def test_keep_open_broadcast(run):
    sk = run.sockit("listen", "--keep-open", "tcp://127.0.0.1:0")
    port = sk.port()
    clients = [run.track(tcp_connect("127.0.0.1", port)) for _ in range(3)]
    hellos = [f"client {i}\n".encode() for i in range(3)]
    for c, h in zip(clients, hellos):
        c.sendall(h)
    assert lines(sk.out.read_exact(sum(map(len, hellos)))) == sorted(hellos)
    nc = run.spawn(["nc", "127.0.0.1", str(port)], name="nc")
    nc.write(b"client nc\n")
    sk.out.expect(b"client nc\n")

    sk.write(b"to everyone\n")
    for c in clients:
        expect_recv(c, b"to everyone\n")
    nc.out.expect(b"to everyone\n")

    clients[0].close()                         # one leaves; the rest go on
    sk.write(b"second\n")
    for c in clients[1:]:
        expect_recv(c, b"second\n")
    nc.out.expect(b"second\n")
    clients[1].sendall(b"still here\n")
    sk.out.expect(b"still here\n")

    sk.close_stdin()                           # every client's write half shut
    for c in clients[1:]:
        assert recv_to_eof(c) == b""
    clients[2].sendall(b"after eof\n")         # the other direction still works
    sk.out.expect(b"after eof\n")
    assert sk.alive(), "the listener must run until a signal"

    with tcp_connect("127.0.0.1", port) as late:   # and still accepts
        late.sendall(b"late\n")
        sk.out.expect(b"late\n")
    sk.signal(signal.SIGTERM)
    sk.expect_exit(0, timeout=2)


class SinkReader(threading.Thread):
    """Reads a socket to `size` bytes (or EOF, or WAIT seconds without a
    byte) in the background and keeps the count and sha256."""

    def __init__(self, sock, size):
        super().__init__(daemon=True)
        self.sock, self.size = sock, size
        self.count, self.digest, self.error = 0, None, None

    def run(self):
        h = hashlib.sha256()
        self.sock.settimeout(WAIT)
        try:
            while self.count < self.size:
                chunk = self.sock.recv(1 << 20)
                if not chunk:
                    break
                h.update(chunk)
                self.count += len(chunk)
        except OSError as e:
            self.error = e
        self.digest = h.hexdigest()

    def result(self):
        self.join(60)
        return self.count, self.digest, repr(self.error) if self.error else None


class StdinWriter(threading.Thread):
    def __init__(self, proc, data):
        super().__init__(daemon=True)
        self.proc, self.data = proc, data
        self.done = threading.Event()

    def run(self):
        try:
            self.proc.write(self.data, timeout=60)
            self.proc.close_stdin()
            self.done.set()
        except (AssertionError, OSError):
            pass                               # reported by the test's asserts


@pytest.mark.parametrize("fast_client", [False, True], ids=["one-client", "slow+fast"])
def test_keep_open_backpressure(run, fast_client):
    """A client that does not read holds up standard input (it is not read
    while a client's queue is full) instead of losing data or buffering
    without bound; once it reads, every client gets every byte, so stdin
    reading must resume when the queues drain."""
    size = 32 * 1024 * 1024
    data = os.urandom(size)
    want = (size, hashlib.sha256(data).hexdigest(), None)
    sk = run.sockit("listen", "--keep-open", "tcp://127.0.0.1:0")
    port = sk.port()
    slow = run.track(socket.socket())
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.settimeout(WAIT)
    slow.connect(("127.0.0.1", port))
    slow.sendall(b"slow\n")
    hellos = [b"slow\n"]
    if fast_client:
        fast = run.track(tcp_connect("127.0.0.1", port))
        fast.sendall(b"fast\n")
        hellos.append(b"fast\n")
    assert lines(sk.out.read_exact(5 * len(hellos))) == sorted(hellos)

    wr = StdinWriter(sk, data)
    wr.start()
    if fast_client:
        fast_rd = SinkReader(fast, size)
        fast_rd.start()
    assert not wr.done.wait(1.0), "32 MiB of stdin taken while a client reads nothing"
    slow_rd = SinkReader(slow, size)
    slow_rd.start()
    assert slow_rd.result() == want
    if fast_client:
        assert fast_rd.result() == want
    assert wr.done.wait(WAIT), "stdin was not read to the end"


def test_keep_open_dual_stack(run):
    """tcp://:0 listens on IPv6 and IPv4 at once."""
    sk = run.sockit("listen", "--keep-open", "tcp://:0")
    port = sk.port()
    with tcp_connect("127.0.0.1", port) as c4, tcp_connect("::1", port) as c6:
        c4.sendall(b"v4\n")
        sk.out.expect(b"v4\n")
        c6.sendall(b"v6\n")
        sk.out.expect(b"v6\n")
        sk.write(b"both\n")
        expect_recv(c4, b"both\n")
        expect_recv(c6, b"both\n")


def test_keep_open_unix(run, sockdir):
    path = os.path.join(sockdir, "s")
    sk = run.sockit("listen", "-k", f"unix:{path}")
    unix_listening(path)
    with unix_connect(path) as a, unix_connect(path) as b:
        a.sendall(b"a\n")
        sk.out.expect(b"a\n")
        b.sendall(b"b\n")
        sk.out.expect(b"b\n")
        sk.write(b"all\n")
        expect_recv(a, b"all\n")
        expect_recv(b, b"all\n")


def test_max_conns(run):
    sk = run.sockit("listen", "--keep-open", "--max-conns", "2", "tcp://127.0.0.1:0")
    port = sk.port()
    c1 = run.track(tcp_connect("127.0.0.1", port))
    c2 = run.track(tcp_connect("127.0.0.1", port))
    c1.sendall(b"c1\n")
    c2.sendall(b"c2\n")
    assert lines(sk.out.read_exact(6)) == [b"c1\n", b"c2\n"]

    c3 = run.track(tcp_connect("127.0.0.1", port))   # waits in the backlog
    c3.sendall(b"c3\n")
    sk.out.expect_quiet()
    sk.write(b"for two\n")
    expect_recv(c1, b"for two\n")
    expect_recv(c2, b"for two\n")
    expect_no_msg(c3)

    c1.close()                                       # a place frees up
    sk.out.expect(b"c3\n")
    sk.write(b"for three\n")
    expect_recv(c2, b"for three\n")
    expect_recv(c3, b"for three\n")                  # not "for two" first


def test_default_mode_serves_one_connection(run):
    """Without --keep-open: one connection, then no more listening."""
    sk = run.sockit("listen", "tcp://127.0.0.1:0")
    port = sk.port()
    with tcp_connect("127.0.0.1", port) as a:
        a.sendall(b"first\n")
        sk.out.expect(b"first\n")
        with pytest.raises(ConnectionRefusedError):
            tcp_connect("127.0.0.1", port).close()
        sk.write(b"only you\n")
        expect_recv(a, b"only you\n")


# ---- --allow / --deny --------------------------------------------------------------------

@pytest.mark.parametrize("rules,denied,allowed", [
    (["--allow", "127.0.0.2/32"], "127.0.0.1", "127.0.0.2"),
    (["--deny", "127.0.0.1/32"], "127.0.0.1", "127.0.0.2"),
    (["--allow", "127.0.0.0/8", "--deny", "127.0.0.1"], "127.0.0.1", "127.0.0.2"),
    (["--allow", "10.0.0.0/8", "--allow", "127.0.0.2"], "127.0.0.1", "127.0.0.2"),
], ids=["allow", "deny", "allow+deny", "allow-repeated"])
def test_allow_deny_tcp(run, rules, denied, allowed):
    # Listen on 127.0.0.3 so that "127.0.0.1" in the -v log can only name
    # the refused peer.
    sk = run.sockit("listen", "--keep-open", "-v", *rules, "tcp://127.0.0.3:0")
    port = sk.port()
    d = run.track(tcp_connect("127.0.0.3", port, source=denied))
    d.sendall(b"denied\n")
    expect_closed(d)
    a = run.track(tcp_connect("127.0.0.3", port, source=allowed))
    a.sendall(b"allowed\n")
    sk.out.expect(b"allowed\n")                # and nothing from the denied one
    sk.write(b"hi\n")
    expect_recv(a, b"hi\n")
    # -v logs the refusal (a line of its own, not the listening line)
    sk.err.wait_for(rb"^sockit: (?!listening on).*" + re.escape(denied.encode()))


@pytest.mark.parametrize("rule,served", [("--allow", True), ("--deny", False)])
def test_allow_deny_v6(run, rule, served):
    sk = run.sockit("listen", "--keep-open", rule, "::1/128", "tcp://[::1]:0")
    c = run.track(tcp_connect("::1", sk.port()))
    if served:
        c.sendall(b"v6\n")
        sk.out.expect(b"v6\n")
    else:
        expect_closed(c)


def test_allow_deny_udp(run):
    sk = run.sockit("listen", "--deny", "127.0.0.1/32", "udp://127.0.0.3:0")
    port = sk.port()
    d = run.track(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    d.bind(("127.0.0.1", 0))
    a = run.track(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    a.bind(("127.0.0.2", 0))
    d.sendto(b"denied\n", ("127.0.0.3", port))
    a.sendto(b"allowed\n", ("127.0.0.3", port))
    sk.out.expect(b"allowed\n")                # the denied datagram is not printed
    d.sendto(b"denied again\n", ("127.0.0.3", port))   # nor does it become the peer
    a.sendto(b"allowed again\n", ("127.0.0.3", port))
    sk.out.expect(b"allowed again\n")
    d.sendto(b"denied last\n", ("127.0.0.3", port))
    sk.out.expect_quiet()
    sk.write(b"reply\n")
    assert recv_msg(a) == b"reply\n"
    expect_no_msg(d)


# ---- descriptor exhaustion --------------------------------------------------------------

def test_emfile_burst(run):
    """Under RLIMIT_NOFILE 24, a burst of 60 held-open connects: the listener
    serves those it can, closes the rest at once (no hang), survives, and
    serves new clients when descriptors are free again."""
    def small_fd_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (24, 24))

    sk = run.sockit("listen", "--keep-open", "tcp://127.0.0.1:0", preexec_fn=small_fd_limit)
    port = sk.port()
    clients = {}
    for i in range(60):
        c = run.track(tcp_connect("127.0.0.1", port))
        tag = b"c%02d\n" % i
        c.sendall(tag)
        clients[tag] = c

    # Each client is either served (its tag reaches stdout) or closed.
    closed = set()
    deadline = time.monotonic() + WAIT
    with selectors.DefaultSelector() as sel:
        for tag, c in clients.items():
            sel.register(c, selectors.EVENT_READ, tag)
        while True:
            served = set(sk.out.value().splitlines(keepends=True))
            if len(served) + len(closed) >= len(clients):
                break
            left = deadline - time.monotonic()
            assert left > 0, (f"after {WAIT}s: {len(served)} served, {len(closed)} closed, "
                              f"{len(clients) - len(served) - len(closed)} left hanging")
            for key, _ in sel.select(min(left, 0.05)):
                if closed_without_data_nowait(key.fileobj):
                    closed.add(key.data)
                    sel.unregister(key.fileobj)
    assert served.isdisjoint(closed), served & closed
    assert served | closed == set(clients)
    assert closed, "60 connections under a limit of 24 descriptors: some must be refused"
    assert served, "nobody was served"
    assert sk.alive(), f"listener died: {sk.err.text()[-500:]}"
    print(f"burst of {len(clients)}: {len(served)} served, {len(closed)} closed at once")
    sk.err.wait_for(rb"^sockit: .*Too many open files")   # it is logged
    sk.out.read_exact(sum(len(t) for t in served))

    sk.write(b"ping\n")                        # the served ones really are served
    for tag in sorted(served):
        expect_recv(clients[tag], b"ping\n")

    for c in clients.values():
        c.close()

    # Descriptors come back as sockit reads the closes; until then a new
    # client may itself be refused, so retry (bounded) until one is served.
    deadline = time.monotonic() + WAIT
    attempt = 0
    while True:
        assert time.monotonic() < deadline, "no client served after the burst ended"
        attempt += 1
        c = run.track(tcp_connect("127.0.0.1", port))
        tag = b"after %d\n" % attempt
        c.sendall(tag)
        while time.monotonic() < deadline:
            if sk.out.wait_contains(tag, 0.05):
                break
            if closed_without_data_nowait(c):
                c = None
                break
        if c is not None:
            break
    sk.out.read_until(tag)
    sk.write(b"back\n")
    expect_recv(c, b"back\n")
    assert sk.alive()


# ---- signals ---------------------------------------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
@pytest.mark.parametrize("state", ["waiting", "session", "keep-open"])
def test_signal_ends_listener(run, sig, state):
    opts = ["--keep-open"] if state == "keep-open" else []
    sk = run.sockit("listen", *opts, "tcp://127.0.0.1:0")
    port = sk.port()
    if state != "waiting":
        c = run.track(tcp_connect("127.0.0.1", port))
        c.sendall(b"hi\n")
        sk.out.expect(b"hi\n")
    wait_signal_taken(sk.pid, sig)     # see test_signal_right_after_listening_line
    sk.signal(sig)
    sk.expect_exit(0, timeout=2)
    if state != "waiting":
        assert recv_to_eof(c, timeout=2) == b""


def test_signal_right_after_listening_line(run, sockdir):
    """A supervisor may signal a listener as soon as it says "listening on"
    (or writes --port-file). That signal must end it cleanly too. strace
    holds sockit for 300 ms right after its first write (that line), so the
    signal lands deterministically in the moment after the announcement."""
    path = os.path.join(sockdir, "s")
    env = dict(os.environ)      # LeakSanitizer cannot run under ptrace
    env["ASAN_OPTIONS"] = ":".join(filter(None, [env.get("ASAN_OPTIONS"), "detect_leaks=0"]))
    st = run.spawn(["strace", "-f", "-qq", "-o", "/dev/null", "-e", "trace=write",
                    "-e", "inject=write:delay_exit=300000:when=1",
                    run.bin, "listen", f"unix:{path}"], name="strace sockit listen", env=env)
    assert st.listening() == f"unix:{path}"
    poll_until(lambda: children_of(st.pid), what="sockit under strace")
    os.kill(children_of(st.pid)[0], signal.SIGTERM)
    rc = st.wait(timeout=2)        # strace exits as its tracee did
    assert rc == 0, f"sockit ended by the signal itself (exit {rc}), not cleanly"
    assert not os.path.exists(path), "socket file left behind"


# ---- unix socket files -------------------------------------------------------------------

UNIX_KINDS = [("unix", socket.SOCK_STREAM), ("unix-seqpacket", socket.SOCK_SEQPACKET),
              ("unix-dgram", socket.SOCK_DGRAM)]
UNIX_IDS = [k for k, _ in UNIX_KINDS]


def talk_to_unix_listener(sk, path, stype):
    c = socket.socket(socket.AF_UNIX, stype)
    c.settimeout(WAIT)
    if stype == socket.SOCK_DGRAM:
        c.bind(path + ".client")
        c.sendto(b"hello\n", path)
    else:
        c.connect(path)
        c.send(b"hello\n")
    sk.out.expect(b"hello\n")
    sk.write(b"back\n")
    assert recv_msg(c) == b"back\n"
    return c


@pytest.mark.parametrize("scheme,stype", UNIX_KINDS, ids=UNIX_IDS)
def test_unix_stale_socket_replaced(run, sockdir, scheme, stype):
    path = os.path.join(sockdir, "s")
    stale = socket.socket(socket.AF_UNIX, stype)
    stale.bind(path)
    stale.close()                              # the file stays behind
    assert os.path.exists(path)
    sk = run.sockit("listen", f"{scheme}:{path}")
    unix_listening(path, stype)
    run.track(talk_to_unix_listener(sk, path, stype))


@pytest.mark.parametrize("scheme,stype", UNIX_KINDS, ids=UNIX_IDS)
def test_unix_live_socket_in_use(run, sockdir, scheme, stype):
    path = os.path.join(sockdir, "s")
    live = run.track(socket.socket(socket.AF_UNIX, stype))
    live.bind(path)
    if stype != socket.SOCK_DGRAM:
        live.listen(4)
    rc, out, err = run.run("listen", f"{scheme}:{path}")
    assert rc == 1, err
    assert err.startswith("sockit:") and path in err and "Address already in use" in err, err
    assert err.count("\n") == 1, err
    # The live socket's file was left alone: it is still reachable.
    c = run.track(socket.socket(socket.AF_UNIX, stype))
    c.settimeout(WAIT)
    if stype == socket.SOCK_DGRAM:
        c.sendto(b"still mine", path)
        live.settimeout(WAIT)
        assert live.recv(100) == b"still mine"
    else:
        c.connect(path)


def test_unix_regular_file_not_removed(run, sockdir):
    path = os.path.join(sockdir, "s")
    with open(path, "w") as f:
        f.write("precious\n")
    rc, out, err = run.run("listen", f"unix:{path}")
    assert rc == 1, err
    assert err.startswith("sockit:") and "Address already in use" in err, err
    with open(path) as f:
        assert f.read() == "precious\n"


@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT", "session-end"])
@pytest.mark.parametrize("scheme,stype", UNIX_KINDS[:2], ids=UNIX_IDS[:2])
def test_unix_socket_file_removed_on_exit(run, sockdir, scheme, stype, how):
    path = os.path.join(sockdir, "s")
    sk = run.sockit("listen", f"{scheme}:{path}")
    unix_listening(path, stype)
    if how == "session-end":
        c = talk_to_unix_listener(sk, path, stype)
        sk.close_stdin()                       # both directions end
        assert recv_msg(c) == b""
        c.close()
    else:
        wait_signal_taken(sk.pid, getattr(signal, how))
        sk.signal(getattr(signal, how))
    sk.expect_exit(0, timeout=2)
    assert not os.path.exists(path), "socket file left behind"


def test_unix_dgram_socket_file_removed_on_sigterm(run, sockdir):
    path = os.path.join(sockdir, "s")
    sk = run.sockit("listen", f"unix-dgram:{path}")
    unix_listening(path, socket.SOCK_DGRAM)
    wait_signal_taken(sk.pid, signal.SIGTERM)
    sk.signal(signal.SIGTERM)
    sk.expect_exit(0, timeout=2)
    assert not os.path.exists(path), "socket file left behind"


def test_unix_socket_file_of_another_not_removed(run, sockdir):
    """The file is removed only if it is still the one sockit created."""
    path = os.path.join(sockdir, "s")
    sk = run.sockit("listen", "--keep-open", f"unix:{path}")
    unix_listening(path)
    os.unlink(path)
    other = run.track(socket.socket(socket.AF_UNIX))
    other.bind(path)
    other.listen(1)
    wait_signal_taken(sk.pid, signal.SIGTERM)
    sk.signal(signal.SIGTERM)
    sk.expect_exit(0, timeout=2)
    assert os.path.exists(path), "sockit removed a socket file it did not create"
    with unix_connect(path):
        pass


# ---- bind errors, --reuseport, --idle-timeout -----------------------------------------------

def test_tcp_port_in_use(run):
    taken = run.track(socket.socket())
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    rc, out, err = run.run("listen", f"tcp://127.0.0.1:{port}")
    assert rc == 1
    assert err.startswith("sockit:") and f"127.0.0.1:{port}" in err, err
    assert "Address already in use" in err and err.count("\n") == 1, err


def test_reuseport(run):
    a = run.sockit("listen", "--keep-open", "--reuseport", "tcp://127.0.0.1:0")
    port = a.port()
    b = run.sockit("listen", "--keep-open", "--reuseport", f"tcp://127.0.0.1:{port}")
    assert b.listening() == f"tcp://127.0.0.1:{port}"
    assert a.alive() and b.alive()


def test_listen_idle_timeout(run):
    sk = run.sockit("listen", "--idle-timeout", "0.5", "tcp://127.0.0.1:0")
    with tcp_connect("127.0.0.1", sk.port()) as c:
        c.sendall(b"then silence\n")
        sk.out.expect(b"then silence\n")
        sk.expect_exit(1)
        assert recv_to_eof(c) == b""


def test_seqpacket_keep_open_partial_line_does_not_spin(run, sockdir):
    """A packet client is sent whole lines only: with half a line on stdin
    the listener waits (no busy loop), and the line goes out once whole."""
    path = os.path.join(sockdir, "sp")
    sk = run.sockit("listen", "-k", f"unix-seqpacket:{path}")
    sk.listening()
    c = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    c.settimeout(5)
    c.connect(path)
    sk.write(b"abc")
    time.sleep(0.2)
    with open(f"/proc/{sk.pid}/stat") as f:
        before = sum(int(x) for x in f.read().rsplit(")", 1)[1].split()[11:13])
    time.sleep(1.0)
    with open(f"/proc/{sk.pid}/stat") as f:
        after = sum(int(x) for x in f.read().rsplit(")", 1)[1].split()[11:13])
    assert (after - before) / os.sysconf("SC_CLK_TCK") < 0.2, "busy loop on a partial line"
    sk.write(b"def\n")
    assert c.recv(100) == b"abcdef\n"
    c.close()
