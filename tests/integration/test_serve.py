"""`sockit serve`: the services (echo, discard, daytime, time, upper) over
every endpoint kind, with real clients (Python written the way the seeds
write it, nc, socat), bad input, slow readers, shutdown and the hub."""

import os
import re
import signal
import socket
import subprocess
import time

import pytest

from conftest import (WAIT, expect_closed, expect_recv, recv_msg, recv_to_eof, recvfrom_msg,
                      tcp_connect, unix_connect)

CTIME = rb"\[(Mon|Tue|Wed|Thu|Fri|Sat|Sun) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) " \
        rb"[ 1-3]\d \d\d:\d\d:\d\d \d{4}\] "


def serve(run, *args):
    """Starts `sockit serve ARGS` and returns (proc, {service: [endpoint, ...]})
    read from the table it prints."""
    p = run.sockit("serve", *args)
    p.out.wait_for(rb"^SERVICE +ENDPOINT\n")
    table = {}
    n_expected = sum(1 for a in args if ":" in a or a == "-")
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        rows = re.findall(rb"^(\w+) +(\S+)$", p.out.value(), re.M)
        rows = [(s.decode(), e.decode()) for s, e in rows if s != b"SERVICE"]
        if len(rows) >= n_expected:
            break
        time.sleep(0.02)
    for svc, ep in rows:
        table.setdefault(svc, []).append(ep)
    return p, table


def inet(ep):
    m = re.match(r"(tcp|udp)://(\[[^\]]+\]|[^:]+):(\d+)$", ep)
    host = m.group(2).strip("[]")
    return host, int(m.group(3))


def udp_ask(host, port, data, family=socket.AF_INET):
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.settimeout(WAIT)
    try:
        s.sendto(data, (host, port))
        return s.recvfrom(65536)[0]
    finally:
        s.close()


# ---- each service, each transport ------------------------------------------------

def test_echo_tcp_udp_unix_kinds(run, sockdir, abstract_name):
    path = os.path.join(sockdir, "echo.sock")
    dpath = os.path.join(sockdir, "echo.dgram")
    spath = os.path.join(sockdir, "echo.seq")
    p, t = serve(run, "echo", "tcp://127.0.0.1:0", "udp://127.0.0.1:0", "tcp://[::1]:0",
                 "unix:" + path, "unix-dgram:" + dpath, "unix-seqpacket:" + spath,
                 "unix:@" + abstract_name())
    eps = t["echo"]
    assert len(eps) == 7
    tcp4, udp4, tcp6 = inet(eps[0]), inet(eps[1]), inet(eps[2])
    with tcp_connect(*tcp4) as s:
        s.sendall(b"hello\x00world\r\n")
        expect_recv(s, b"hello\x00world\r\n")
    assert udp_ask(*udp4, b"dgram") == b"dgram"
    with socket.create_connection(tcp6, timeout=WAIT) as s:
        s.sendall(b"six")
        expect_recv(s, b"six")
    with unix_connect(path) as s:
        s.sendall(b"unix stream")
        expect_recv(s, b"unix stream")
    c = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    c.bind(os.path.join(sockdir, "client.dgram"))
    c.settimeout(WAIT)
    c.sendto(b"unix dgram", dpath)
    assert c.recv(100) == b"unix dgram"
    c.close()
    with unix_connect(spath, socket.SOCK_SEQPACKET) as s:
        s.send(b"pkt one")
        s.send(b"pkt two")
        assert recv_msg(s) == b"pkt one"
        assert recv_msg(s) == b"pkt two"
    with unix_connect("\0" + eps[6].split("@", 1)[1]) as s:
        s.sendall(b"abstract")
        expect_recv(s, b"abstract")


def test_time_answers_each_line_with_ctime(run):
    p, t = serve(run, "time", "tcp://127.0.0.1:0", "udp://127.0.0.1:0")
    tcp, udp = inet(t["time"][0]), inet(t["time"][1])
    with tcp_connect(*tcp) as s:
        # Three lines in one write, one line in three writes, and CRLF.
        s.sendall(b"hello python\nsecond\nthird\n")
        s.sendall(b"spl")
        s.sendall(b"it li")
        s.sendall(b"ne\r\n")
        s.shutdown(socket.SHUT_WR)
        got = recv_to_eof(s)
    lines = got.split(b"\n")
    assert lines[-1] == b""
    texts = []
    for line in lines[:-1]:
        m = re.match(CTIME + rb"(.*)$", line)
        assert m, line
        texts.append(m.group(3))
    assert texts == [b"hello python", b"second", b"third", b"split line"]
    reply = udp_ask(*udp, b"hello udp\n")
    assert re.match(CTIME + rb"hello udp\n$", reply), reply


def test_time_last_line_without_newline_is_answered_at_eof(run):
    p, t = serve(run, "time", "tcp://127.0.0.1:0")
    with tcp_connect(*inet(t["time"][0])) as s:
        s.sendall(b"no newline")
        s.shutdown(socket.SHUT_WR)
        got = recv_to_eof(s)
    assert re.match(CTIME + rb"no newline\n$", got), got


def test_time_overlong_line_errors_and_others_go_on(run):
    p, t = serve(run, "time", "tcp://127.0.0.1:0")
    addr = inet(t["time"][0])
    other = tcp_connect(*addr)
    with tcp_connect(*addr) as s:
        try:
            s.sendall(b"x" * 10000 + b"\n")
        except OSError:
            pass
        got = recv_to_eof(s)
    assert got == b"error: line longer than 8192 bytes\n"
    # A line of exactly the limit (8191 bytes + LF) is fine.
    other.sendall(b"y" * 8191 + b"\n")
    got = b""
    while not got.endswith(b"\n"):
        chunk = other.recv(65536)
        assert chunk
        got += chunk
    assert re.match(CTIME + b"y{8191}\n$", got)
    other.close()


def test_upper_like_seed_002(run):
    p, t = serve(run, "upper", "tcp://127.0.0.1:0", "udp://127.0.0.1:0")
    host, port = inet(t["upper"][0])
    # The seed's client, as written there.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(WAIT)
    sock.connect((host, port))
    sock.send(bytes('Hello, world', encoding='UTF-8'))
    data = sock.recv(1024)
    sock.close()
    assert data == b"HELLO, WORLD"
    assert udp_ask(*inet(t["upper"][1]), "привет abc".encode()) == "привет ABC".encode()


def test_daytime_and_discard(run):
    p, t = serve(run, "daytime", "tcp://127.0.0.1:0", "udp://127.0.0.1:0",
                 "discard", "tcp://127.0.0.1:0")
    day = rb"^\w+day, \w+ \d\d, \d{4} \d\d:\d\d:\d\d-\w+\r\n$"
    with tcp_connect(*inet(t["daytime"][0])) as s:
        assert re.match(day, recv_to_eof(s))
    assert re.match(day, udp_ask(*inet(t["daytime"][1]), b"?"))
    with tcp_connect(*inet(t["discard"][0])) as s:
        s.sendall(os.urandom(1 << 20))
        s.shutdown(socket.SHUT_WR)
        assert recv_to_eof(s) == b""


# ---- real clients ------------------------------------------------------------------

def test_nc_and_socat_clients(run):
    p, t = serve(run, "echo", "tcp://127.0.0.1:0", "udp://127.0.0.1:0",
                 "time", "tcp://127.0.0.1:0")
    host, port = inet(t["echo"][0])
    r = subprocess.run(["nc", "-N", host, str(port)], input=b"via nc\n", capture_output=True,
                       timeout=WAIT)
    assert r.stdout == b"via nc\n"
    r = subprocess.run(["socat", "-", f"TCP:{host}:{port}"], input=b"via socat\n",
                       capture_output=True, timeout=WAIT)
    assert r.stdout == b"via socat\n"
    uh, up = inet(t["echo"][1])
    r = subprocess.run(["socat", "-t", "1", "-", f"UDP:{uh}:{up}"], input=b"udp socat\n",
                       capture_output=True, timeout=WAIT)
    assert r.stdout == b"udp socat\n"
    th, tp = inet(t["time"][0])
    r = subprocess.run(["nc", "-N", th, str(tp)], input=b"a\nb\n", capture_output=True,
                       timeout=WAIT)
    lines = r.stdout.splitlines()
    assert len(lines) == 2 and lines[0].endswith(b"] a") and lines[1].endswith(b"] b")


def test_sockit_connect_against_serve(run):
    p, t = serve(run, "echo", "tcp://127.0.0.1:0", "udp://127.0.0.1:0")
    data = os.urandom(3 << 20)
    code, out, err = run.run("connect", t["echo"][0], input=data, timeout=20)
    assert code == 0 and out == data, err
    code, out, err = run.run("connect", t["echo"][1], input=b"one\ntwo\n")
    assert code == 0 and out == b"one\ntwo\n", err


def test_seed_001_interactive_client_driven_by_script(run):
    """Seed 001's client as written there: input() lines (no newline) sent,
    each reply printed. The server answers an unterminated line after a
    short pause, so the seed's client works unchanged."""
    p, t = serve(run, "time", "tcp://127.0.0.1:0")
    host, port = inet(t["time"][0])
    script = f"""
import socket
HOST = {host!r}
PORT = {port}
BUF_SIZE = 1024
ADDR = (HOST,PORT)
client = socket.socket()
client.connect(ADDR)
while True:
    try:
        data = input(">>> ")
    except EOFError:
        break
    if not data:continue
    client.send(bytes(data,encoding='utf-8'))
    recv_data = client.recv(BUF_SIZE)
    if not recv_data:break
    print(recv_data.decode())
client.close()
"""
    r = subprocess.run(["/usr/bin/python3", "-c", script], input=b"hello python\n\nsecond\n",
                       capture_output=True, timeout=WAIT)
    assert r.returncode == 0, r.stderr
    out = r.stdout.replace(b">>> ", b"")
    lines = [line for line in out.splitlines() if line]
    assert len(lines) == 2, out
    assert re.match(CTIME + rb"hello python$", lines[0]), lines
    assert re.match(CTIME + rb"second$", lines[1]), lines


def test_seed_001_client_with_newlines(run):
    p, t = serve(run, "time", "tcp://127.0.0.1:0")
    host, port = inet(t["time"][0])
    client = socket.socket()
    client.settimeout(WAIT)
    client.connect((host, port))
    for word in ("hello python", "again"):
        client.send(bytes(word + "\n", encoding='utf-8'))
        recv_data = client.recv(1024)
        assert re.match(CTIME + word.encode() + rb"\n$", recv_data), recv_data
    client.close()


# ---- hostile and slow peers ----------------------------------------------------------

def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_client_that_never_reads_is_bounded_and_others_are_served(run):
    p, t = serve(run, "echo", "tcp://127.0.0.1:0")
    addr = inet(t["echo"][0])
    hog = socket.socket()
    hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    hog.connect(addr)
    hog.setblocking(False)
    sent = 0
    chunk = b"z" * 65536
    deadline = time.monotonic() + WAIT
    # Send until the server stops reading (its queue is full, ours is full).
    stalled_since = None
    while time.monotonic() < deadline:
        try:
            sent += hog.send(chunk)
            stalled_since = None
        except BlockingIOError:
            if stalled_since is None:
                stalled_since = time.monotonic()
            elif time.monotonic() - stalled_since > 0.5:
                break
            time.sleep(0.01)
    assert stalled_since is not None, "the server kept reading from a client that never reads"
    assert sent < 64 << 20, sent
    before = rss_kib(p.pid)
    with tcp_connect(*addr) as s:
        s.sendall(b"still here")
        expect_recv(s, b"still here")
    assert rss_kib(p.pid) < before + 8192
    hog.close()


def test_half_close_gets_all_answers(run):
    p, t = serve(run, "upper", "tcp://127.0.0.1:0")
    with tcp_connect(*inet(t["upper"][0])) as s:
        data = os.urandom(1 << 20).replace(b"a", b"b")
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        got = recv_to_eof(s, timeout=10)
    assert got == data.upper()


def test_connection_flood(run):
    p, t = serve(run, "echo", "tcp://127.0.0.1:0")
    addr = inet(t["echo"][0])
    socks = [tcp_connect(*addr) for _ in range(300)]
    for i, s in enumerate(socks):
        s.sendall(b"%d\n" % i)
    for i, s in enumerate(socks):
        expect_recv(s, b"%d\n" % i)
        s.close()


def test_max_conns_and_idle_timeout(run):
    p, t = serve(run, "--max-conns", "1", "--idle-timeout", "0.5", "echo", "tcp://127.0.0.1:0")
    addr = inet(t["echo"][0])
    first = tcp_connect(*addr)
    first.sendall(b"1")
    expect_recv(first, b"1")
    second = tcp_connect(*addr)
    second.sendall(b"2")
    second.settimeout(0.3)
    with pytest.raises(socket.timeout):
        second.recv(1)          # waits in the backlog while first is connected
    expect_closed(first, timeout=WAIT)   # idle timeout frees the slot
    second.settimeout(WAIT)
    assert second.recv(1) == b"2"
    second.close()


# ---- shutdown, config, workers, the hub ----------------------------------------------

def test_sigterm_with_live_connection_ends_within_grace(run, sockdir):
    path = os.path.join(sockdir, "t.sock")
    p, t = serve(run, "--grace", "0.5", "echo", "tcp://127.0.0.1:0", "unix:" + path)
    s = tcp_connect(*inet(t["echo"][0]))
    s.sendall(b"x")
    expect_recv(s, b"x")
    start = time.monotonic()
    p.signal(signal.SIGTERM)
    assert p.wait(timeout=WAIT) == 0
    took = time.monotonic() - start
    assert 0.4 < took < 3, took
    expect_closed(s)
    assert not os.path.exists(path)


def test_config_file(run, tmp_path):
    cfg = tmp_path / "serve.conf"
    cfg.write_text("# lab services\n\necho tcp://127.0.0.1:0 udp://127.0.0.1:0\n"
                   "time tcp://127.0.0.1:0 --idle-timeout=30   # comment\n")
    p, t = serve(run, "--config", str(cfg))
    p.out.wait_for(rb"^time +tcp://")
    rows = re.findall(rb"^(\w+) +(\S+)$", p.out.value(), re.M)
    t = {}
    for s, e in rows[1:]:
        t.setdefault(s.decode(), []).append(e.decode())
    assert len(t["echo"]) == 2 and len(t["time"]) == 1
    with tcp_connect(*inet(t["echo"][0])) as s:
        s.sendall(b"cfg")
        expect_recv(s, b"cfg")


@pytest.mark.parametrize("bad,msg", [
    (["nosuch", "tcp://127.0.0.1:0"], "unknown service 'nosuch'"),
    (["echo"], "needs at least one endpoint"),
    (["echo", "tcp://127.0.0.1:99999"], "out of range"),
    (["--workers", "x", "echo", "tcp://:0"], "bad --workers"),
])
def test_bad_usage(run, bad, msg):
    code, out, err = run.run("serve", *bad)
    assert code == 2 and msg in err, err


def test_busy_port_is_a_clear_error(run):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    port = s.getsockname()[1]
    code, out, err = run.run("serve", "echo", f"tcp://127.0.0.1:{port}")
    s.close()
    assert code == 1 and "Address already in use" in err and str(port) in err, err


def test_workers_share_the_load(run):
    p, t = serve(run, "--workers", "2", "echo", "tcp://127.0.0.1:0", "udp://127.0.0.1:0")
    addr = inet(t["echo"][0])
    socks = [tcp_connect(*addr) for _ in range(40)]
    for i, s in enumerate(socks):
        s.sendall(b"w%d" % i)
    for i, s in enumerate(socks):
        expect_recv(s, b"w%d" % i)
        s.close()
    assert udp_ask(*inet(t["echo"][1]), b"u") == b"u"
    tasks = os.listdir(f"/proc/{p.pid}/task")
    assert len(tasks) == 2, tasks
    p.signal(signal.SIGINT)
    assert p.wait(timeout=WAIT) == 0


HUB = [("echo", "tcp", 7007), ("echo", "udp", 7007), ("discard", "tcp", 9009),
       ("daytime", "tcp", 13013), ("time", "tcp", 8009), ("upper", "tcp", 55000),
       ("wc", "tcp", 9393), ("xfer", "tcp", 9003)]


def test_hub_defaults(run):
    for _, proto, port in HUB:
        s = socket.socket(socket.AF_INET,
                          socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the hub does
        try:
            s.bind(("127.0.0.1", port))
            if proto == "tcp":
                s.listen()
        except OSError:
            pytest.skip(f"hub port {proto}/{port} is taken on this machine")
        finally:
            s.close()
    p = run.sockit("serve")
    for svc, proto, port in HUB:
        p.out.wait_for(rb"^%s +%s://127\.0\.0\.1:%d$" % (svc.encode(), proto.encode(), port))
    with tcp_connect("127.0.0.1", 8009) as s:
        s.sendall(b"hub\n")
        assert re.match(CTIME + rb"hub\n", s.recv(100))
    with tcp_connect("127.0.0.1", 55000) as s:
        s.sendall(b"hub")
        expect_recv(s, b"HUB")
    p.signal(signal.SIGINT)
    assert p.wait(timeout=WAIT) == 0
