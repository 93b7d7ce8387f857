"""`sockit relay`: a real service (redis on a unix socket only) made local,
byte-exact bulk both ways, half-close each way, 1,000 concurrent sessions,
targets going down and coming back, round-robin, UDP sessions and expiry,
--hexdump, SIGUSR1 statistics, --connect and splice actually used."""

import hashlib
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import WAIT, expect_recv, recv_to_eof, tcp_connect

BULK = 100 * 1024 * 1024


def relay(run, *args, name="sockit relay"):
    """Starts `sockit relay ARGS` and returns (proc, port)."""
    p = run.sockit("relay", *args, name=name)
    return p, p.port()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Target:
    """A TCP server thread on 127.0.0.1:0 running handler(conn) per client."""

    def __init__(self, handler, port=0):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.handler = handler
        self.conns = 0
        self.stop = False
        self.t = threading.Thread(target=self._serve, daemon=True)
        self.t.start()

    def _serve(self):
        self.sock.settimeout(0.2)
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            self.conns += 1
            threading.Thread(target=self._one, args=(c,), daemon=True).start()

    def _one(self, c):
        c.settimeout(WAIT)
        try:
            self.handler(c)
        except OSError:
            pass
        finally:
            c.close()

    def close(self):
        self.stop = True
        self.t.join(2)
        self.sock.close()


def name_reply(name):
    def handler(c):
        c.sendall(name + b"\n")
        recv_to_eof(c)
    return handler


# ---- a real service behind the relay --------------------------------------------------

@pytest.fixture
def redis_unix(sockdir):
    if not shutil.which("redis-server"):
        pytest.fail("redis-server missing: scripts/install-deps installs redis-server")
    path = os.path.join(sockdir, "redis.sock")
    p = subprocess.Popen(["redis-server", "--port", "0", "--unixsocket", path, "--save", "",
                          "--appendonly", "no", "--daemonize", "no"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + WAIT
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert os.path.exists(path), "redis-server did not start"
    yield path
    p.terminate()
    p.wait(WAIT)


def test_redis_on_unix_socket_through_relay(run, redis_unix):
    p, port = relay(run, "tcp://127.0.0.1:0", f"unix:{redis_unix}")
    cli = ["redis-cli", "-h", "127.0.0.1", "-p", str(port)]
    assert subprocess.run(cli + ["ping"], capture_output=True, timeout=WAIT).stdout == b"PONG\n"
    assert subprocess.run(cli + ["set", "seed", "002"], capture_output=True,
                          timeout=WAIT).stdout == b"OK\n"
    assert subprocess.run(cli + ["get", "seed"], capture_output=True,
                          timeout=WAIT).stdout == b"002\n"
    r = subprocess.run(["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-q", "-n", "5000",
                        "-c", "50", "-t", "ping,set,get"], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    for test in ("PING_INLINE", "SET", "GET"):
        assert re.search(rf"{test}: [\d.]+ requests per second", out), out
    p.err.wait_for(rb"-> unix:.*redis.sock up=\d+ down=\d+ bytes")


# ---- bytes: bulk, half-close ------------------------------------------------------------

def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@pytest.fixture(scope="module")
def bulk_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("bulk") / "100MiB"
    seed = hashlib.sha256(b"relay").digest()
    block = b"".join(hashlib.sha256(seed + bytes([i])).digest() for i in range(256)) * 16
    with open(path, "wb") as f:
        for i in range(BULK // len(block)):
            f.write(block[i % 97:] + block[:i % 97])
    return path


def listener_with_file(run, tmp_path, name, stdin, stdout):
    """`sockit listen` on port 0 with its stdin/stdout on files; returns
    (popen, port) once it listens."""
    pf = tmp_path / (name + ".port")
    p = subprocess.Popen([run.bin, "listen", "-q", "--port-file", str(pf), "tcp://127.0.0.1:0"],
                         stdin=stdin, stdout=stdout, stderr=subprocess.PIPE)
    deadline = time.monotonic() + WAIT
    while not pf.exists() and time.monotonic() < deadline and p.poll() is None:
        time.sleep(0.01)
    assert pf.exists(), p.stderr.read() if p.poll() is not None else "no port file"
    return p, int(pf.read_text())


def test_100_mib_each_way_byte_exact(run, bulk_file, tmp_path):
    want = sha256_file(bulk_file)
    # Upload: client -> relay -> listener writing to a file.
    got = tmp_path / "up"
    with open(got, "wb") as out:
        sink, sport = listener_with_file(run, tmp_path, "sink", subprocess.DEVNULL, out)
    try:
        _, port = relay(run, "tcp://127.0.0.1:0", f"tcp://127.0.0.1:{sport}")
        with open(bulk_file, "rb") as f:
            r = subprocess.run([run.bin, "connect", f"tcp://127.0.0.1:{port}"], stdin=f,
                               capture_output=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert sink.wait(timeout=60) == 0
    finally:
        sink.kill()
        sink.wait()
    assert sha256_file(got) == want
    # Download: listener sending a file -> relay -> client.
    with open(bulk_file, "rb") as f:
        src, sport = listener_with_file(run, tmp_path, "src", f, subprocess.DEVNULL)
    try:
        _, port = relay(run, "tcp://127.0.0.1:0", f"tcp://127.0.0.1:{sport}")
        down = tmp_path / "down"
        with open(down, "wb") as out:
            r = subprocess.run([run.bin, "connect", f"tcp://127.0.0.1:{port}"],
                               stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.PIPE,
                               timeout=120)
        assert r.returncode == 0, r.stderr
    finally:
        src.kill()
        src.wait()
    assert sha256_file(down) == want


def test_half_close_client_first(run):
    """The client sends and shuts its write half; the target answers only
    after EOF; the answer comes back whole."""
    def reverse_after_eof(c):
        data = recv_to_eof(c)
        c.sendall(data[::-1])
    t = Target(reverse_after_eof)
    _, port = relay(run, "tcp://127.0.0.1:0", f"tcp://127.0.0.1:{t.port}")
    with tcp_connect("127.0.0.1", port) as s:
        payload = os.urandom(300000)
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        assert recv_to_eof(s) == payload[::-1]
    t.close()


def test_half_close_target_first(run):
    """The target sends and shuts its write half, then reads the client's
    upload to EOF and acknowledges it: both directions complete."""
    got = {}

    def greet_then_read(c):
        c.sendall(b"hello\n")
        c.shutdown(socket.SHUT_WR)
        got["data"] = recv_to_eof(c)

    t = Target(greet_then_read)
    _, port = relay(run, "tcp://127.0.0.1:0", f"tcp://127.0.0.1:{t.port}")
    with tcp_connect("127.0.0.1", port) as s:
        assert recv_to_eof(s) == b"hello\n"       # the target's EOF arrives
        upload = os.urandom(500000)
        s.sendall(upload)                         # our side is still open
        s.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + WAIT
        while "data" not in got and time.monotonic() < deadline:
            time.sleep(0.01)
    assert got.get("data") == upload
    t.close()


def test_1000_concurrent_sessions_no_byte_lost(run, sockit_bin):
    loadgen = os.path.join(os.path.dirname(sockit_bin), "bench", "loadgen")
    echo = os.path.join(os.path.dirname(sockit_bin), "bench", "echo_ceiling")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 4096:
        pytest.skip(f"descriptor hard limit {hard} is below what 1000 sessions need")

    def lift():
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    e = run.spawn([echo, "--listen", "127.0.0.1:0"], name="echo_ceiling", preexec_fn=lift)
    m = e.out.wait_for(rb"(\d+)")
    _, port = relay(run, "-q", "tcp://127.0.0.1:0", f"tcp://127.0.0.1:{m.group(1).decode()}")
    r = subprocess.run([loadgen, "pingpong", "--connect", f"127.0.0.1:{port}", "--conns", "1000",
                        "--size", "64", "--count", "20000", "--timeout", "60"],
                       capture_output=True, timeout=90, preexec_fn=lift)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert b'"errors":0' in r.stdout.replace(b" ", b""), r.stdout


# ---- targets: down, back, round-robin, failover ---------------------------------------------

def test_target_down_then_back(run):
    port_t = free_port()
    p, port = relay(run, "--retry", "0.3", "tcp://127.0.0.1:0", f"tcp://127.0.0.1:{port_t}")
    with tcp_connect("127.0.0.1", port) as s:
        assert recv_to_eof(s) == b""              # clean close, no data
    p.err.wait_for(rb"no target available")
    t = Target(name_reply(b"back"), port=port_t)
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        with tcp_connect("127.0.0.1", port) as s:
            line = s.recv(100)
            if line == b"back\n":
                break
        time.sleep(0.1)
    assert line == b"back\n"
    t.close()


def test_round_robin_and_failover(run):
    a, b = Target(name_reply(b"A")), Target(name_reply(b"B"))
    dead = free_port()
    p, port = relay(run, "--retry", "30", "tcp://127.0.0.1:0", f"tcp://127.0.0.1:{a.port}",
                    f"tcp://127.0.0.1:{dead}", f"tcp://127.0.0.1:{b.port}")
    seen = []
    for _ in range(8):
        with tcp_connect("127.0.0.1", port) as s:
            seen.append(s.recv(10))
    # Every client served, by A or B only; both used; the dead one skipped.
    assert set(seen) == {b"A\n", b"B\n"}, seen
    assert abs(seen.count(b"A\n") - seen.count(b"B\n")) <= 2, seen
    p.err.wait_for(rb"connect tcp://127\.0\.0\.1:%d: Connection refused" % dead)
    p.signal(signal.SIGUSR1)
    p.err.wait_for(rb"target tcp://127\.0\.0\.1:%d: down" % dead)
    p.err.wait_for(rb"target tcp://127\.0\.0\.1:%d: up" % a.port)
    a.close()
    b.close()


def test_sigusr1_statistics_and_session_log(run):
    t = Target(lambda c: c.sendall(recv_to_eof(c)))
    p, port = relay(run, "tcp://127.0.0.1:0", f"tcp://127.0.0.1:{t.port}")
    with tcp_connect("127.0.0.1", port) as s:
        s.sendall(b"x" * 1000)
        s.shutdown(socket.SHUT_WR)
        assert recv_to_eof(s) == b"x" * 1000
    p.err.wait_for(rb"#1 127\.0\.0\.1:\d+ -> tcp://127\.0\.0\.1:\d+ up=1000 down=1000 bytes "
                   rb"[\d.]+ s\n")
    p.signal(signal.SIGUSR1)
    p.err.wait_for(rb"sessions 0 active, 1 total; bytes up 1000, down 1000")
    p.signal(signal.SIGTERM)
    assert p.wait() == 0
    t.close()


# ---- options ------------------------------------------------------------------------------------

def test_hexdump(run):
    t = Target(lambda c: c.sendall(c.recv(100).upper()))
    p, port = relay(run, "--hexdump", "tcp://127.0.0.1:0", f"tcp://127.0.0.1:{t.port}")
    with tcp_connect("127.0.0.1", port) as s:
        s.sendall(b"hello relay\n")
        expect_recv(s, b"HELLO RELAY\n")
    p.err.wait_for(rb"> #1 client->target offset=0 length=12 \d\d:\d\d:\d\d\.\d{6}\n"
                   rb"  00000000  68 65 6c 6c 6f 20 72 65 6c 61 79 0a {13} \|hello relay\.\|\n")
    p.err.wait_for(rb"< #1 target->client offset=0 length=12 ")
    t.close()


def test_allow_deny_and_max_conns(run):
    t = Target(name_reply(b"ok"))
    p, port = relay(run, "--deny", "127.0.0.0/8", "tcp://127.0.0.1:0", f"tcp://127.0.0.1:{t.port}")
    with tcp_connect("127.0.0.1", port) as s:
        assert recv_to_eof(s) == b""
    assert t.conns == 0
    p2, port2 = relay(run, "--max-conns", "1", "tcp://127.0.0.1:0", f"tcp://127.0.0.1:{t.port}")
    first = tcp_connect("127.0.0.1", port2)
    assert first.recv(10) == b"ok\n"
    second = tcp_connect("127.0.0.1", port2)
    second.settimeout(0.3)
    with pytest.raises(socket.timeout):
        second.recv(10)                           # waits in the backlog
    first.close()
    second.settimeout(WAIT)
    assert second.recv(10) == b"ok\n"
    second.close()
    t.close()


def test_connect_mode_stdio_to_unix(run, sockdir):
    path = os.path.join(sockdir, "u.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen()

    def serve():
        c, _ = srv.accept()
        c.sendall(recv_to_eof(c).upper())
        c.close()
    th = threading.Thread(target=serve, daemon=True)
    th.start()
    code, out, err = run.run("relay", "--connect", "-", f"unix:{path}", input=b"stdin text")
    assert code == 0 and out == b"STDIN TEXT", err
    th.join(WAIT)
    srv.close()


def test_splice_is_used_between_sockets(run, tmp_path):
    if not shutil.which("strace"):
        pytest.fail("strace missing")
    t = Target(lambda c: c.sendall(recv_to_eof(c)))
    env = dict(os.environ, ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") + ":detect_leaks=0")
    trace = tmp_path / "trace"
    p = run.spawn(["strace", "-f", "-qq", "-e", "trace=splice,read,write,sendto,recvfrom",
                   "-o", str(trace), run.bin, "relay", "-q", "tcp://127.0.0.1:0",
                   f"tcp://127.0.0.1:{t.port}"], name="strace relay", env=env)
    port = p.port()
    data = os.urandom(1 << 20)
    with tcp_connect("127.0.0.1", port) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        assert recv_to_eof(s) == data
    # Signal the relay itself, not strace, and let strace end with it.
    with open(f"/proc/{p.pid}/task/{p.pid}/children") as f:
        child = int(f.read().split()[0])
    os.kill(child, signal.SIGTERM)
    assert p.wait() == 0
    text = trace.read_bytes()
    assert re.search(rb"splice\(\d+, NULL, \d+, NULL, \d+, SPLICE_F_MOVE\|SPLICE_F_NONBLOCK\)"
                     rb" = [1-9]", text), text[-2000:]
    # The payload (1 MiB each way) never passes through user space: all that
    # read() and recv() bring in is start-up files and wake-up counters.
    read_in = sum(int(n) for n in re.findall(rb"(?:read|recvfrom)\(.*\) = (\d+)\n", text))
    assert read_in < 256 * 1024, f"{read_in} bytes read into user space"
    t.close()


def test_udp_sessions_mapping_and_expiry(run):
    up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    up.bind(("127.0.0.1", 0))
    up.settimeout(WAIT)
    p, port = relay(run, "--idle-timeout", "0.5", "udp://127.0.0.1:0",
                    f"udp://127.0.0.1:{up.getsockname()[1]}")
    clients = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3)]
    sources = {}
    for i, c in enumerate(clients):
        c.settimeout(WAIT)
        c.sendto(b"q%d" % i, ("127.0.0.1", port))
        data, src = up.recvfrom(100)
        sources[data] = src
        up.sendto(b"answer to " + data, src)     # the target answers that session
    assert len(set(sources.values())) == 3       # one upstream socket per client
    for i, c in enumerate(clients):
        data, frm = c.recvfrom(100)
        assert data == b"answer to q%d" % i and frm == ("127.0.0.1", port)
    # Quiet for longer than the idle timeout: the sessions expire, and the
    # next datagram from a client gets a fresh upstream socket.
    p.err.wait_for(rb"udp 127\.0\.0\.1:\d+ -> udp://.* \(expired\)(.|\n)*\(expired\)(.|\n)*"
                   rb"\(expired\)")
    clients[0].sendto(b"again", ("127.0.0.1", port))
    data, src = up.recvfrom(100)
    assert data == b"again" and src != sources[b"q0"]
    for c in clients:
        c.close()
    up.close()


@pytest.mark.parametrize("args,msg", [
    (["tcp://127.0.0.1:0"], "expected LISTEN and at least one TARGET"),
    (["udp://127.0.0.1:0", "tcp://127.0.0.1:1"], "a udp listener needs udp targets"),
    (["tcp://127.0.0.1:0", "udp://127.0.0.1:1"], "a stream listener needs stream targets"),
    (["--connect", "tcp://127.0.0.1:1", "tcp://127.0.0.1:2", "tcp://127.0.0.1:3"],
     "exactly two endpoints"),
    (["--max-conns", "0", "tcp://127.0.0.1:0", "tcp://127.0.0.1:1"], "bad --max-conns"),
])
def test_bad_usage(run, args, msg):
    code, out, err = run.run("relay", *args)
    assert code in (1, 2) and msg in err, err
    if "expected" in msg or "bad" in msg or "exactly" in msg:
        assert code == 2


def test_relay_in_the_hub_from_a_config_file(run, tmp_path):
    t = Target(name_reply(b"behind the hub"))
    cfg = tmp_path / "hub.conf"
    cfg.write_text(f"echo tcp://127.0.0.1:0\nrelay tcp://127.0.0.1:0 tcp://127.0.0.1:{t.port}"
                   " --idle-timeout=30\n")
    p = run.sockit("serve", "--config", str(cfg))
    m = p.out.wait_for(rb"^relay +tcp://127\.0\.0\.1:(\d+)$")
    with tcp_connect("127.0.0.1", int(m.group(1))) as s:
        assert s.recv(100) == b"behind the hub\n"
    p.signal(signal.SIGTERM)
    assert p.wait() == 0
    t.close()


def cpu_seconds(pid):
    """utime + stime of a process, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_no_spin_when_the_target_stops_reading(run):
    """Small pieces fill a pipe's slots before its byte capacity: the relay
    must then wait for the target to read, not spin on a readable client."""
    stuck = socket.socket()
    stuck.bind(("127.0.0.1", 0))
    stuck.listen()
    p, port = relay(run, "-q", "tcp://127.0.0.1:0", f"tcp://127.0.0.1:{stuck.getsockname()[1]}")
    c = tcp_connect("127.0.0.1", port)
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    c.setblocking(False)
    conn, _ = stuck.accept()                     # accepted, never read
    sent = 0
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:           # 200-byte pieces until all is full
        try:
            sent += c.send(b"x" * 200)
        except BlockingIOError:
            time.sleep(0.01)
    before = cpu_seconds(p.pid)
    time.sleep(1.0)
    used = cpu_seconds(p.pid) - before
    assert used < 0.2, f"relay used {used:.2f} CPU seconds in 1 s while stalled"
    assert sent > 0
    c.close()
    conn.close()
    stuck.close()
