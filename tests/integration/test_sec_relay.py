"""Security review (issue 19) findings 8, 9 and 10 in the relay: its own
descriptor shortage is not the target's fault, the UDP session table cannot
be filled by one flood, and a reset on one side reaches the other as a
reset, after the bytes that came before it."""

import errno
import fcntl
import os
import re
import resource
import selectors
import signal
import socket
import ssl
import struct
import subprocess
import termios
import threading
import time

import pytest

import test_relay
from conftest import WAIT, tcp_connect


def relay(run, *args, **kw):
    p = run.sockit("relay", *args, name="sockit relay", **kw)
    return p, p.port()


def outq(sock):
    """Bytes sock has sent that its peer has not acknowledged yet."""
    return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]


def wait_acked(sock):
    deadline = time.monotonic() + WAIT
    while outq(sock) and time.monotonic() < deadline:
        time.sleep(0.005)
    assert outq(sock) == 0, "the relay did not take what was sent"


def reset_close(sock):
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def read_exact(sock, n):
    got = bytearray()
    while len(got) < n:
        chunk = sock.recv(min(65536, n - len(got)))
        if not chunk:
            break
        got += chunk
    return bytes(got)


def read_end(sock):
    """How the stream ends after what was read: 'eof' or 'reset'."""
    try:
        rest = sock.recv(65536)
    except ConnectionResetError:
        return "reset"
    return "eof" if rest == b"" else f"more data: {rest[:50]!r}"


class Target(test_relay.Target):
    """test_relay's TCP target, with an optional wrapper (TLS) put around
    each connection before the handler gets it."""

    def __init__(self, handler, wrap=None):
        super().__init__((lambda c: handler(wrap(c))) if wrap else handler)

    def wait_conns(self, n):
        deadline = time.monotonic() + WAIT
        while self.conns < n and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.conns >= n, self.conns


def echo(c):
    while True:
        data = c.recv(65536)
        if not data:
            return
        c.sendall(data)


# ---- finding 8: the relay's own descriptor shortage ---------------------------------------

CLIENTS = 80


def exchange(socks, payloads, timeout):
    """Sends payloads[i] on socks[i] and reads the echo of each, all at once.
    Returns per socket: 'ok', 'eof', 'reset' or 'waiting' (nothing yet)."""
    sel = selectors.DefaultSelector()
    want = {}
    for i, s in enumerate(socks):
        try:
            s.sendall(payloads[i])
        except OSError:
            pass
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, i)
        want[i] = bytearray()
    result = ["waiting"] * len(socks)
    deadline = time.monotonic() + timeout
    while sel.get_map() and time.monotonic() < deadline:
        for key, _ in sel.select(max(0.0, deadline - time.monotonic())):
            i = key.data
            try:
                data = key.fileobj.recv(65536)
            except BlockingIOError:
                continue
            except ConnectionResetError:
                data, result[i] = None, "reset"
            if data == b"":
                result[i] = "eof"
            if data:
                want[i] += data
                if len(want[i]) < len(payloads[i]):
                    continue
                result[i] = "ok" if bytes(want[i]) == payloads[i] else "wrong bytes"
            sel.unregister(key.fileobj)
    sel.close()
    for s in socks:
        s.setblocking(True)
        s.settimeout(WAIT)
    return result


def answered_in_turn(waiting):
    """Reads the echo of what each (sock, sent) pair sent, closing each sock
    once its echo is complete. Returns how many were answered in full."""
    sel = selectors.DefaultSelector()
    got = {}
    for c, sent in waiting:
        c.setblocking(False)
        sel.register(c, selectors.EVENT_READ, sent)
        got[c] = b""
    ok = 0
    deadline = time.monotonic() + WAIT
    while sel.get_map() and time.monotonic() < deadline:
        for key, _ in sel.select(max(0.0, deadline - time.monotonic())):
            try:
                data = key.fileobj.recv(65536)
            except BlockingIOError:
                continue
            except ConnectionResetError:
                data = b""
            got[key.fileobj] += data
            if data and got[key.fileobj] != key.data:
                continue
            ok += got[key.fileobj] == key.data
            sel.unregister(key.fileobj)
            key.fileobj.close()
    sel.close()
    return ok


# Two limits, so that either accept() or the socket() for the target is the
# call that meets the limit first.
@pytest.mark.parametrize("nofile", [64, 65])
def test_descriptor_shortage_is_not_the_targets_fault(run, nofile):
    def low_nofile():
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    t = Target(echo)
    p, port = relay(run, "tcp://127.0.0.1:0", f"tcp://127.0.0.1:{t.port}", preexec_fn=low_nofile)
    clients = [socket.create_connection(("127.0.0.1", port), timeout=WAIT)
               for _ in range(CLIENTS)]
    first = exchange(clients, [b"hello %d\n" % i for i in range(CLIENTS)], timeout=2)
    served = [c for c, r in zip(clients, first) if r == "ok"]
    assert served, first
    assert not [r for r in first if r not in ("ok", "waiting", "eof", "reset")], first
    # Established sessions keep echoing byte for byte, several rounds each.
    for _ in range(3):
        blobs = [os.urandom(20000) for _ in served]
        assert exchange(served, blobs, timeout=WAIT) == ["ok"] * len(served)
    # Clients that waited (in the backlog, or accepted and waiting for a
    # descriptor) are served in turn as the others leave: each one closed
    # once answered makes room for the next.
    waiting = [(c, b"hello %d\n" % i) for i, (c, r) in enumerate(zip(clients, first))
               if r == "waiting"]
    for c in served:
        c.close()
    assert answered_in_turn(waiting) == len(waiting)
    for c in clients:
        c.close()
    # Once those sessions are over, descriptors are free again: the next
    # client is served on its first try (no window in which the target
    # counts as down).
    deadline = time.monotonic() + WAIT
    while active_sessions(p)[0] and time.monotonic() < deadline:
        time.sleep(0.05)
    with tcp_connect("127.0.0.1", port) as s:
        s.sendall(b"after\n")
        assert read_exact(s, 6) == b"after\n"
    p.signal(signal.SIGUSR1)
    stats = p.err.wait_for(rb"connect failures (\d+); clients with no target (\d+)[^\n]*\n"
                           rb"target (\S+): (\w+)")
    err = p.err.text()
    assert stats.group(1, 2, 4) == (b"0", b"0", b"up"), err[-3000:]
    # The limit was met (by accept, or by the socket for a target) ...
    assert re.search(r"(accept|connect): Too many open files", err), err[-3000:]
    # ... yet no session ended for want of a descriptor, no target was blamed.
    assert not re.search(r"\((read|write) (client|target): Too many open files\)", err), err[-3000:]
    assert "trying it again" not in err and "no target available" not in err, err[-3000:]
    print(f"first round: {first.count('ok')} served, {len(waiting)} waiting (then served in "
          f"turn), {first.count('eof') + first.count('reset')} closed")
    t.close()


def test_pipe_shortage_falls_back_to_copying(run):
    """pipe2 for splice fails (the sockets took the last descriptors): each
    session copies through its buffers instead of ending."""
    t = Target(echo)
    p, port = relay(run, "tcp://127.0.0.1:0", f"tcp://127.0.0.1:{t.port}")
    clients = [tcp_connect("127.0.0.1", port) for _ in range(5)]
    t.wait_conns(5)
    # Room for what is open now and one descriptor more: no pipe pair fits.
    base = len(os.listdir(f"/proc/{p.pid}/fd"))
    resource.prlimit(p.pid, resource.RLIMIT_NOFILE, (base + 1, base + 1))
    blobs = [os.urandom(300000) for _ in clients]
    assert exchange(clients, blobs, timeout=WAIT) == ["ok"] * len(clients)
    assert len(os.listdir(f"/proc/{p.pid}/fd")) == base   # no pipe was made
    for c in clients:
        c.close()
    err = p.err.wait_for(rb"(?:#\d+ [^\n]*\n[^#]*){5}").group(0).decode()
    assert "Too many open files" not in err, err
    t.close()


# ---- finding 9: the UDP session table -----------------------------------------------------

class UdpTarget:
    """Counts datagrams; answers those starting with b'real' (and b'ask')."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.count = 0
        self.sources = {}
        self.cond = threading.Condition()
        self.stop = False
        self.t = threading.Thread(target=self._serve, daemon=True)
        self.t.start()

    def _serve(self):
        self.sock.settimeout(0.1)
        while not self.stop:
            try:
                data, src = self.sock.recvfrom(2048)
            except OSError:
                continue
            with self.cond:
                self.count += 1
                self.sources[data] = src
                self.cond.notify_all()
            if data.startswith((b"real", b"ask")):
                self.sock.sendto(b"answer " + data, src)

    def wait_count(self, n):
        with self.cond:
            self.cond.wait_for(lambda: self.count >= n, WAIT)
            return self.count

    def close(self):
        self.stop = True
        self.t.join(2)
        self.sock.close()


def flood(target, port, addresses, per_address):
    """One datagram from each of per_address fresh source ports on each
    address, in batches the relay can take without loss."""
    base = target.count
    sent = 0
    for addr in addresses:
        ports = set()
        while len(ports) < per_address:
            batch = []
            for _ in range(min(64, per_address - len(ports))):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.bind((addr, 0))
                if s.getsockname()[1] in ports:
                    s.close()
                    continue
                ports.add(s.getsockname()[1])
                s.sendto(b"flood", ("127.0.0.1", port))
                batch.append(s)
            sent += len(batch)
            got = target.wait_count(base + sent)
            for s in batch:
                s.close()
            if got < base + sent:
                return got - base
    return sent


def udp_client(addr):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, 0))
    s.settimeout(WAIT)
    return s


def active_sessions(p):
    """(sessions active, udp sessions evicted) from SIGUSR1's statistics."""
    mark = len(p.err.value())
    p.signal(signal.SIGUSR1)
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        m = re.search(rb"sessions (\d+) active.*\n", p.err.value()[mark:])
        if m:
            ev = re.search(rb"udp sessions evicted (\d+)", m.group(0))
            return int(m.group(1)), int(ev.group(1)) if ev else None
        time.sleep(0.01)
    raise AssertionError(f"no statistics after SIGUSR1: {p.err.value()[mark:]!r}")


def test_udp_flood_does_not_lock_out_a_real_client(run):
    target = UdpTarget()
    p, port = relay(run, "-q", "udp://127.0.0.1:0", f"udp://127.0.0.1:{target.port}")
    # An answered client before the flood.
    old = udp_client("127.0.0.1")
    old.sendto(b"ask 1", ("127.0.0.1", port))
    assert old.recv(100) == b"answer ask 1"
    old_source = target.sources[b"ask 1"]
    # 16 addresses x 256 source ports: 4,096 sessions, the default table.
    addresses = [f"127.0.0.{i}" for i in range(2, 18)]
    assert flood(target, port, addresses, 256) == 4096
    assert active_sessions(p) == (4096, 1)     # the 4,096th flood port evicted one
    # A real client from yet another address still gets its answer ...
    real = udp_client("127.0.0.100")
    real.sendto(b"real query", ("127.0.0.1", port))
    assert real.recv(100) == b"answer real query"
    assert active_sessions(p) == (4096, 2)
    # ... and a flood session that never got a reply made room, not the
    # answered client's (the least recently used of all).
    old.sendto(b"ask 2", ("127.0.0.1", port))
    assert old.recv(100) == b"answer ask 2"
    assert target.sources[b"ask 2"] == old_source
    old.close()
    real.close()
    target.close()


@pytest.mark.parametrize("args,cap", [([], 256), (["--max-per-source", "10"], 10)])
def test_udp_sessions_per_source_address_are_capped(run, args, cap):
    target = UdpTarget()
    p, port = relay(run, "-q", *args, "udp://127.0.0.1:0", f"udp://127.0.0.1:{target.port}")
    assert flood(target, port, ["127.0.0.2"], 600) == 600
    assert active_sessions(p) == (cap, 600 - cap)
    # Another address is not held back by that one.
    real = udp_client("127.0.0.3")
    real.sendto(b"real one", ("127.0.0.1", port))
    assert real.recv(100) == b"answer real one"
    assert active_sessions(p) == (cap + 1, 600 - cap)
    real.close()
    target.close()


def test_bad_max_per_source(run):
    code, _, err = run.run("relay", "--max-per-source", "0", "udp://127.0.0.1:0",
                           "udp://127.0.0.1:1")
    assert code == 2 and "bad --max-per-source" in err, err


# ---- finding 10: a reset reaches the other side as a reset --------------------------------

PAYLOAD = os.urandom(1 << 20)


def small_rcvbuf_client(port):
    """A client that cannot take the whole payload at once: what the relay
    holds for it must wait for it to read, and must not be lost."""
    c = socket.socket()
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    c.settimeout(WAIT)
    c.connect(("127.0.0.1", port))
    return c


@pytest.mark.parametrize("mode", [[], ["--hexdump"]], ids=["splice", "buffered"])
def test_target_reset_reaches_the_client_after_its_bytes(run, mode):
    def send_then_reset(c):
        assert c.recv(2) == b"go"    # the relay has bridged the session
        c.sendall(PAYLOAD)
        wait_acked(c)
        reset_close(c)

    t = Target(send_then_reset)
    p, port = relay(run, *mode, "tcp://127.0.0.1:0", f"tcp://127.0.0.1:{t.port}")
    c = small_rcvbuf_client(port)
    c.sendall(b"go")
    assert read_exact(c, len(PAYLOAD)) == PAYLOAD
    assert read_end(c) == "reset"
    c.close()
    p.err.wait_for(rb"\(read target: Connection reset by peer\)")
    t.close()


@pytest.mark.parametrize("mode", [[], ["--hexdump"]], ids=["splice", "buffered"])
def test_client_reset_reaches_the_target_after_its_bytes(run, mode):
    seen = {}
    done = threading.Event()

    def read_all(c):
        got = bytearray()
        try:
            while True:
                data = c.recv(65536)
                if not data:
                    seen["end"] = "eof"
                    break
                got += data
        except ConnectionResetError:
            seen["end"] = "reset"
        seen["data"] = bytes(got)
        done.set()

    t = Target(read_all)
    _, port = relay(run, *mode, "tcp://127.0.0.1:0", f"tcp://127.0.0.1:{t.port}")
    c = tcp_connect("127.0.0.1", port)
    c.sendall(PAYLOAD)
    wait_acked(c)
    reset_close(c)
    assert done.wait(WAIT)
    assert seen["data"] == PAYLOAD
    assert seen["end"] == "reset"
    t.close()


def test_orderly_close_is_still_an_eof(run):
    def send_then_close(c):
        c.sendall(b"complete reply")
        c.shutdown(socket.SHUT_WR)
        c.recv(100)

    t = Target(send_then_close)
    _, port = relay(run, "tcp://127.0.0.1:0", f"tcp://127.0.0.1:{t.port}")
    with tcp_connect("127.0.0.1", port) as c:
        assert read_exact(c, 14) == b"complete reply"
        assert read_end(c) == "eof"
    t.close()


def test_killed_target_connection_resets_the_client(run):
    """`ss -K` destroys the relay's socket to the target (ECONNABORTED in
    the relay): the client is reset, after the bytes it was sent."""
    if subprocess.run(["ss", "-h"], capture_output=True).returncode != 0:
        pytest.fail("ss missing: scripts/install-deps installs iproute2")
    hold = threading.Event()

    def send_then_hold(c):
        c.sendall(b"partial reply")
        hold.wait(WAIT)

    t = Target(send_then_hold)
    p, port = relay(run, "tcp://127.0.0.1:0", f"tcp://127.0.0.1:{t.port}")
    with tcp_connect("127.0.0.1", port) as c:
        assert read_exact(c, 13) == b"partial reply"
        r = subprocess.run(["ss", "-K", "-tn", "state", "established",
                            f"( dport = :{t.port} )"], capture_output=True, timeout=WAIT)
        assert r.returncode == 0, r.stderr
        assert read_end(c) == "reset"
    hold.set()
    p.err.wait_for(rb"\(read target: Software caused connection abort\)")
    t.close()


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem")],
                   check=True, capture_output=True)
    return str(d / "cert.pem"), str(d / "key.pem")


def test_tls_target_reset_resets_the_plain_client(run, cert):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*cert)

    def send_then_reset(c):
        assert c.recv(2) == b"go"
        c.sendall(b"over tls")
        raw = socket.socket(fileno=os.dup(c.fileno()))
        wait_acked(raw)
        reset_close(raw)      # sets SO_LINGER on the shared socket
        c.close()             # the last descriptor: the reset goes out

    t = Target(send_then_reset, wrap=lambda c: ctx.wrap_socket(c, server_side=True))
    _, port = relay(run, "--insecure", "tcp://127.0.0.1:0", f"tls://127.0.0.1:{t.port}")
    with tcp_connect("127.0.0.1", port) as c:
        c.sendall(b"go")
        assert read_exact(c, 8) == b"over tls"
        assert read_end(c) == "reset"
    t.close()


class TlsClient:
    """TLS over a plain socket through memory BIOs, so that what the socket
    says (a reset, an EOF) is seen as is, not folded into an SSL EOF."""

    def __init__(self, port, cafile):
        self.sock = tcp_connect("127.0.0.1", port)
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        ctx = ssl.create_default_context(cafile=cafile)
        self.tls = ctx.wrap_bio(self.inc, self.out, server_hostname="localhost")
        self._call(self.tls.do_handshake)

    def _flush(self):
        data = self.out.read()
        if data:
            self.sock.sendall(data)

    def _call(self, fn, *args):
        """Runs fn until it needs no more input. A reset from the socket
        raises ConnectionResetError; its EOF returns None."""
        while True:
            try:
                r = fn(*args)
                self._flush()
                return r
            except ssl.SSLWantReadError:
                self._flush()
                data = self.sock.recv(65536)
                if not data:
                    return None
                self.inc.write(data)

    def recv(self, n):
        return self._call(self.tls.read, n)

    def send(self, data):
        self._call(self.tls.write, data)


def test_plain_target_reset_resets_the_tls_client(run, cert):
    def send_then_reset(c):
        assert c.recv(2) == b"go"
        c.sendall(b"to a tls client")
        wait_acked(c)
        reset_close(c)

    t = Target(send_then_reset)
    _, port = relay(run, "--cert", cert[0], "--key", cert[1], "tls://127.0.0.1:0",
                    f"tcp://127.0.0.1:{t.port}")
    c = TlsClient(port, cert[0])
    c.send(b"go")
    assert c.recv(100) == b"to a tls client"
    with pytest.raises(ConnectionResetError):
        c.recv(100)
    c.sock.close()
    t.close()
