"""Fault tests: `sockit connect` and `sockit listen` over a bad network.

Two test hosts in network namespaces (tests/faults/netns.py) joined by a
veth link, with faults that really exist on these machines: nftables random
drop (loss), tbf (rate), HTB + nft priority (reordering), `ss -K` (reset),
the chaos proxy (delay, 1..N byte writes, cuts), a 1 MiB tmpfs (ENOSPC) and
kill -9 after N bytes.  There is no tc netem here; nothing below needs it.

Namespace tests need root; they skip only when namespaces cannot be made
(not root, `ip netns` fails), with the reason.  CI here runs as root, so
they run.  Every wait is bounded; the whole file takes well under a minute.
"""

import os
import pathlib
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading

import pytest

from conftest import SANITIZER_MARKS, WAIT

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from faults.chaos import ChaosProxy, proxy_binary          # noqa: E402
from faults.helpers import (ByteWatch, kill9_after_bytes, sha256_file,  # noqa: E402
                            tmpfs, wait_all, wait_file_size)
from faults.netns import NetPair, unavailable_reason        # noqa: E402

PORT = 9000
MIB = 1 << 20
BIG = 50 * MIB
# tbf rate on the link: 50 MiB at 200 mbit is about 2.1 s of wire time.
RATE = "200mbit"
# Longest a 50 MiB transfer may take (about 3 s here, more under ASan).
TRANSFER_WAIT = max(30.0, 6 * WAIT)
SEED = 20240601


# ---------------------------------------------------------------------------
# Fixtures and a process collector
# ---------------------------------------------------------------------------

@pytest.fixture
def net():
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    with NetPair() as pair:
        yield pair


@pytest.fixture(scope="module")
def payload():
    """50 MiB of random bytes in a file, and its sha256.  Removed after the
    module (pytest keeps old tmp_path trees; these are too big to keep)."""
    d = tempfile.mkdtemp(prefix="sockit-faults-")
    path = os.path.join(d, "payload")
    with open(path, "wb") as f:
        for _ in range(BIG // MIB):
            f.write(os.urandom(MIB))
    yield path, sha256_file(path)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def scratch():
    """A directory for big transfer outputs, removed after the test."""
    d = tempfile.mkdtemp(prefix="sockit-faults-")
    yield pathlib.Path(d)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def proxy_bin(sockit_bin):
    path = proxy_binary(os.path.dirname(sockit_bin))
    if not os.access(path, os.X_OK):
        pytest.fail(f"no chaos_proxy at {path}: it is built with the tree "
                    f"(tests/faults/CMakeLists.txt)", pytrace=False)
    return path


class Sockits:
    """Starts sockit processes inside a namespace with stderr in a file;
    at teardown kills what still runs and fails on sanitizer reports."""

    def __init__(self, binary, tmp_path):
        self.bin = binary
        self.tmp = tmp_path
        self.procs = []

    def start(self, host, args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL):
        """Runs sockit ARGS in host's namespace (host None: in this one).
        stdin/stdout: a path (opened for reading / writing), or a
        subprocess constant (PIPE, DEVNULL)."""
        n = len(self.procs)
        errpath = self.tmp / f"sockit{n}.{args[0]}.err"
        files = []
        if isinstance(stdin, (str, os.PathLike)):
            stdin = open(stdin, "rb")
            files.append(stdin)
        if isinstance(stdout, (str, os.PathLike)):
            stdout = open(stdout, "wb")
            files.append(stdout)
        err = open(errpath, "wb")
        files.append(err)
        try:
            argv = [self.bin] + list(args)
            kw = dict(stdin=stdin, stdout=stdout, stderr=err)
            p = host.popen(argv, **kw) if host is not None else subprocess.Popen(argv, **kw)
        finally:
            for f in files:
                f.close()
        p.errpath = errpath
        p.what = " ".join(["sockit"] + list(args))
        self.procs.append(p)
        return p

    @staticmethod
    def err(p):
        with open(p.errpath, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def teardown(self):
        reports = []
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait(WAIT)
            for stream in (p.stdin, p.stdout):
                if stream is not None:
                    try:
                        stream.close()
                    except OSError:
                        pass
            err = self.err(p)
            print(f"--- {p.what}: exit {p.returncode}\n{err[-2000:]}")
            if any(m.decode() in err for m in SANITIZER_MARKS):
                reports.append(f"{p.what}: {err[-3000:]}")
        assert not reports, "sanitizer reports:\n" + "\n".join(reports)


@pytest.fixture
def sk(sockit_bin, tmp_path):
    s = Sockits(sockit_bin, tmp_path)
    yield s
    s.teardown()


def assert_no_sanitizer_report(log, what):
    assert not any(m.decode() in log for m in SANITIZER_MARKS), f"{what}: {log[-3000:]}"


def feed(pipe, data):
    """Writes data into a child's stdin pipe from a thread (the child reads
    it at its own pace) and leaves the pipe open.  Returns the thread."""
    def run():
        try:
            pipe.write(data)
            pipe.flush()
        except (BrokenPipeError, ValueError, OSError):
            pass
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def close_quietly(pipe):
    try:
        pipe.close()
    except (BrokenPipeError, OSError):
        pass


def listen_in(sk, host, **kw):
    """`sockit listen tcp://ADDR:PORT` in host, waited for until it listens."""
    p = sk.start(host, ["listen", f"tcp://{host.addr}:{PORT}"], **kw)
    host.wait_listening(PORT, timeout=WAIT, proc=p)
    return p


def last_error_line(text):
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("sockit: "), f"no 'sockit: ' error line: {text!r}"
    return lines[-1]


# ---------------------------------------------------------------------------
# 50 MiB across a lossy, rate-capped link
# ---------------------------------------------------------------------------

def test_50mib_over_5pct_loss_and_tbf_arrives_identical(net, sk, payload, scratch):
    """listen in B, connect in A; nft drops 5% of the segments B receives
    and tbf caps A's egress at RATE.  The far end gets every byte, in order."""
    src, digest = payload
    net.b.loss(5, dport=PORT)
    net.a.rate(RATE)
    out = scratch / "received"

    srv = listen_in(sk, net.b, stdin=subprocess.PIPE, stdout=out)
    cli = sk.start(net.a, ["connect", f"tcp://{net.b.addr}:{PORT}"], stdin=src,
                   stdout=scratch / "cli.out")
    wait_file_size(out, BIG, TRANSFER_WAIT, procs=[srv, cli])
    # Everything arrived: now end listen's side, which ends both sessions.
    close_quietly(srv.stdin)
    assert wait_all([cli, srv], WAIT) == [0, 0], (sk.err(cli), sk.err(srv))

    assert os.path.getsize(out) == BIG
    assert sha256_file(out) == digest
    assert os.path.getsize(scratch / "cli.out") == 0
    # The fault really happened: segments were dropped, and resent.
    assert net.b.dropped() > 100, net.b.counters()
    assert net.a.nstat("TcpRetransSegs")["TcpRetransSegs"] > 0


def test_50mib_through_chaos_proxy_with_delay_and_splits(net, sk, payload, proxy_bin,
                                                         scratch):
    """The same link (5% loss, tbf), with the chaos proxy in A between
    connect and the link: every chunk delayed 50 ms, forwarded in random
    1..1500-byte writes upstream and 1..16-byte writes downstream (so both
    sockits see short reads).  Both directions arrive byte-identical."""
    src, digest = payload
    net.b.loss(5, dport=PORT)
    net.a.rate(RATE)
    reply = os.urandom(MIB)
    out = scratch / "received"
    back = scratch / "replied"

    srv = listen_in(sk, net.b, stdin=subprocess.PIPE, stdout=out)
    with ChaosProxy(proxy_bin, f"{net.b.addr}:{PORT}", host=net.a, seed=SEED,
                    up_delay=50, up_split=1500, down_delay=50, down_split=16) as px:
        cli = sk.start(net.a, ["connect", f"tcp://127.0.0.1:{px.port}"], stdin=src,
                       stdout=back)
        feeder = feed(srv.stdin, reply)
        try:
            wait_file_size(out, BIG, TRANSFER_WAIT, procs=[srv, cli])
            wait_file_size(back, len(reply), WAIT, procs=[srv, cli])
        except (TimeoutError, RuntimeError) as e:
            pytest.fail(f"{e}\nproxy: {px.log}")
        feeder.join(WAIT)
        close_quietly(srv.stdin)
        assert wait_all([cli, srv], WAIT) == [0, 0], (sk.err(cli), sk.err(srv), px.log)
        log = px.log
    assert_no_sanitizer_report(log, "chaos_proxy")

    assert sha256_file(out) == digest
    with open(back, "rb") as f:
        assert f.read() == reply
    # The proxy really split: at least one write per 1500 (16) bytes.
    m = re.search(r"up: (\d+) bytes in, (\d+) out in (\d+) writes", log)
    assert m and int(m.group(2)) == BIG and int(m.group(3)) >= BIG // 1500, log
    m = re.search(r"down: (\d+) bytes in, (\d+) out in (\d+) writes", log)
    assert m and int(m.group(2)) == len(reply) and int(m.group(3)) >= len(reply) // 16, log
    assert net.b.dropped() > 0


def test_reordered_segments_arrive_identical(net, sk, payload, scratch):
    """2% of A's segments to B are held back in a slow HTB class (nft sets
    their priority) and overtaken by the rest: B's stack queues segments
    out of order although nothing is dropped.  The bytes arrive intact."""
    src, digest = payload
    size = 16 * MIB
    part = scratch / "part"
    with open(src, "rb") as f, open(part, "wb") as g:
        g.write(f.read(size))
    rule = net.a.reorder(2, dport=PORT)
    out = scratch / "received"

    srv = listen_in(sk, net.b, stdin=subprocess.PIPE, stdout=out)
    cli = sk.start(net.a, ["connect", f"tcp://{net.b.addr}:{PORT}"], stdin=part)
    wait_file_size(out, size, TRANSFER_WAIT, procs=[srv, cli])
    close_quietly(srv.stdin)
    assert wait_all([cli, srv], WAIT) == [0, 0], (sk.err(cli), sk.err(srv))

    assert sha256_file(out) == sha256_file(part)
    assert net.a.counters()[rule] > 0
    assert net.a.qdisc_drops() == 0, net.a.qdisc_stats()
    ofo = net.b.nstat("TcpExtTCPOFOQueue")["TcpExtTCPOFOQueue"]
    assert ofo > 0, "no segment arrived out of order"


# ---------------------------------------------------------------------------
# Resets and dead peers
# ---------------------------------------------------------------------------

def test_ss_kill_mid_transfer_resets_connect(net, sk):
    """`ss -K` on B's socket after 1 MiB arrived: B's kernel sends a RST, so
    `sockit connect` (streaming /dev/zero) exits 1 with "Connection reset";
    `sockit listen`, whose socket was destroyed, exits 1 too."""
    srv = listen_in(sk, net.b, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    cli = sk.start(net.a, ["connect", f"tcp://{net.b.addr}:{PORT}"], stdin="/dev/zero")
    killed = []
    watch = ByteWatch(srv.stdout, MIB, lambda: killed.append(net.b.kill_connections(PORT)))
    assert watch.wait_fired(WAIT), f"only {watch.count} bytes arrived"
    assert killed == [1], killed

    assert wait_all([cli], WAIT) == [1], sk.err(cli)
    line = last_error_line(sk.err(cli))
    assert "Connection reset by peer" in line, line
    assert wait_all([srv], WAIT) == [1], sk.err(srv)
    last_error_line(sk.err(srv))
    assert watch.join(WAIT)


def test_kill9_listener_after_1mib_fails_connect(net, sk):
    """kill -9 of `sockit listen` once 1 MiB reached its stdout: the kernel
    resets the connection (unread data), and `sockit connect` exits 1 with
    one error line instead of hanging or exiting 0."""
    srv = listen_in(sk, net.b, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    cli = sk.start(net.a, ["connect", f"tcp://{net.b.addr}:{PORT}"], stdin="/dev/zero")
    watch = kill9_after_bytes(srv, MIB)
    assert watch.wait_fired(WAIT), f"only {watch.count} bytes arrived"
    assert wait_all([srv], WAIT) == [-9]
    assert wait_all([cli], WAIT) == [1], sk.err(cli)
    line = last_error_line(sk.err(cli))
    assert re.search(r"Connection reset by peer|Broken pipe", line), line


def test_reject_with_reset_mid_transfer(net, sk):
    """After 1 MiB, B's nftables answers every segment to the port with a
    TCP reset: connect exits 1 "Connection reset by peer".  listen hears
    nothing more (its peer is gone without a word) and leaves through
    --idle-timeout, exit 1."""
    srv = sk.start(net.b, ["listen", "--idle-timeout", "1", f"tcp://{net.b.addr}:{PORT}"],
                   stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    net.b.wait_listening(PORT, timeout=WAIT, proc=srv)
    cli = sk.start(net.a, ["connect", f"tcp://{net.b.addr}:{PORT}"], stdin="/dev/zero")
    rules = []
    watch = ByteWatch(srv.stdout, MIB, lambda: rules.append(net.b.reject_reset(PORT)))
    assert watch.wait_fired(WAIT), f"only {watch.count} bytes arrived"

    assert wait_all([cli], WAIT) == [1], sk.err(cli)
    assert "Connection reset by peer" in last_error_line(sk.err(cli))
    assert wait_all([srv], WAIT) == [1], sk.err(srv)
    last_error_line(sk.err(srv))
    assert net.b.counters()[rules[0]] > 0


def test_blackhole_mid_transfer_ends_by_idle_timeout(net, sk):
    """After 1 MiB, B silently drops everything to the port (a dead peer).
    Without a timeout TCP would retry for about 15 minutes; with
    --idle-timeout 1 both sides give up, exit 1, within seconds."""
    srv = sk.start(net.b, ["listen", "--idle-timeout", "1", f"tcp://{net.b.addr}:{PORT}"],
                   stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    net.b.wait_listening(PORT, timeout=WAIT, proc=srv)
    cli = sk.start(net.a, ["connect", "--idle-timeout", "1", f"tcp://{net.b.addr}:{PORT}"],
                   stdin="/dev/zero")
    rules = []
    watch = ByteWatch(srv.stdout, MIB, lambda: rules.append(net.b.blackhole(PORT)))
    assert watch.wait_fired(WAIT), f"only {watch.count} bytes arrived"

    assert wait_all([cli, srv], WAIT) == [1, 1], (sk.err(cli), sk.err(srv))
    last_error_line(sk.err(cli))
    last_error_line(sk.err(srv))
    assert net.b.counters()[rules[0]] > 0


def test_chaos_proxy_cut_rst_resets_connect(sk, proxy_bin, tmp_path):
    """Loopback, no namespace: the proxy forwards exactly 100000 bytes of
    the target's stream in writes of 1..4096 bytes and, once connect's
    kernel has acknowledged them, aborts both sides with SO_LINGER 0.
    Those bytes sit in connect's receive queue ahead of the reset, so it
    prints all of them, then exits 1 "Connection reset by peer"."""
    data = os.urandom(4 * MIB)
    srv = socket.create_server(("127.0.0.1", 0))
    srv.settimeout(WAIT)

    def serve():
        try:
            conn, _ = srv.accept()
            with conn:
                conn.sendall(data)
        except OSError:
            pass
    t = threading.Thread(target=serve, daemon=True)
    t.start()

    with ChaosProxy(proxy_bin, f"127.0.0.1:{srv.getsockname()[1]}", seed=SEED,
                    down_split=4096, down_cut_at=100000, down_cut="rst") as px:
        out = tmp_path / "out"
        p = sk.start(None, ["connect", f"tcp://127.0.0.1:{px.port}"],
                     stdin=subprocess.PIPE, stdout=out)
        rc = wait_all([p], WAIT)
        close_quietly(p.stdin)
        log = px.log
    assert_no_sanitizer_report(log, "chaos_proxy")
    t.join(WAIT)
    srv.close()

    assert rc == [1], (sk.err(p), log)
    assert "Connection reset by peer" in last_error_line(sk.err(p))
    with open(out, "rb") as f:
        got = f.read()
    assert len(got) == 100000 and got == data[:100000], len(got)
    assert "down: cut (rst) after 100000 bytes" in log, log


# ---------------------------------------------------------------------------
# Disk full
# ---------------------------------------------------------------------------

def test_listener_stdout_on_full_tmpfs_exits_1(net, sk, scratch):
    """listen writes what it receives to a file on a 1 MiB tmpfs; at ENOSPC
    it reports "No space left on device" and exits 1, and connect, whose
    peer vanished with unread data, exits 1 too."""
    src = scratch / "4mib"
    with open(src, "wb") as f:
        f.write(os.urandom(4 * MIB))
    with tmpfs("1m") as d:
        srv = listen_in(sk, net.b, stdin=subprocess.PIPE, stdout=os.path.join(d, "out"))
        cli = sk.start(net.a, ["connect", f"tcp://{net.b.addr}:{PORT}"], stdin=src)
        assert wait_all([srv], WAIT) == [1], sk.err(srv)
        assert "No space left on device" in last_error_line(sk.err(srv))
        assert wait_all([cli], WAIT) == [1], sk.err(cli)
        close_quietly(srv.stdin)
