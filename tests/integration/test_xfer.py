"""`sockit send` and `sockit receive`: file transfer, checked and resumable.

Round trips (single files, empty files and directories, unicode names, many
small files, 1 GiB from /dev/shm) must arrive byte-identical, with modes
and times. kill -9 of either side at half a file, then the same command
again, resumes: the second run moves clearly less than the whole file.
Over two network namespaces with loss, delay and reordering the result is
identical. A full disk gives a clear error and keeps the partial file. A
hostile sender (a raw client speaking SKXF/1 from Python) is refused with a
clear message for traversal, absolute names, escape sequences, symlink
tricks, sizes that lie, truncated streams and huge manifests, and nothing
is ever written outside the target directory.

Every wait is bounded; sizes shrink under the sanitizer build (its
CMakeCache.txt says SK_SANITIZE=ON), where everything is several times
slower.
"""

import hashlib
import json
import os
import pathlib
import pty
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import time

import pytest

from conftest import REPO, WAIT, poll_until

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from faults.chaos import ChaosProxy, proxy_binary            # noqa: E402
from faults.helpers import sha256_file, tmpfs                # noqa: E402
from faults.netns import NetPair, unavailable_reason          # noqa: E402

MIB = 1 << 20


def _sanitized():
    build = os.environ.get("SOCKIT_BUILD", os.path.join(REPO, "build"))
    try:
        with open(os.path.join(build, "CMakeCache.txt")) as f:
            return any(re.match(r"SK_SANITIZE:BOOL=(ON|1|TRUE)", line, re.I) for line in f)
    except OSError:
        return False


ASAN = _sanitized()
BIG = (128 if ASAN else 1024) * MIB     # the "1 GiB" round trip
MID = (32 if ASAN else 64) * MIB        # kill -9 and resume
LONG = max(60.0, 12 * WAIT) if ASAN else max(30.0, 6 * WAIT)


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------

def write_random(path, size, seed=b""):
    """Writes size pseudo-random bytes (a random 1 MiB block, each MiB
    stamped with its number so no two are alike); returns the sha256."""
    block = bytearray(os.urandom(min(size, MIB)) or b"")
    h = hashlib.sha256()
    with open(path, "wb") as f:
        done, n = 0, 0
        while done < size:
            block[:8] = n.to_bytes(8, "big")
            chunk = bytes(block[:min(len(block), size - done)])
            f.write(chunk)
            h.update(chunk)
            done += len(chunk)
            n += 1
    return h.hexdigest()


def tree(root):
    """{relative path: what it is} for everything under root, symlinks not
    followed: ("d", mode) for directories, ("f", sha256, mode, mtime_ns) for
    files, ("l", target) for symlinks."""
    out = {}
    root = str(root)
    for d, dirs, files in os.walk(root):
        for name in dirs + files:
            p = os.path.join(d, name)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            if os.path.islink(p):
                out[rel] = ("l", os.readlink(p))
            elif os.path.isdir(p):
                out[rel] = ("d", st.st_mode & 0o7777)
            else:
                out[rel] = ("f", sha256_file(p), st.st_mode & 0o7777, st.st_mtime_ns)
    return out


def receiver(run, out, *args, port_file=None):
    """Starts `sockit receive --yes --json --dir OUT tcp://127.0.0.1:0 ARGS`
    and returns (proc, port)."""
    argv = ["receive", "--json", "--dir", str(out), "tcp://127.0.0.1:0", *args]
    if "--no-yes" in argv:
        argv.remove("--no-yes")
    else:
        argv.insert(1, "--yes")
    p = run.sockit(*argv)
    return p, p.port(LONG)


def sender(run, port, *paths, args=()):
    return run.sockit("send", "--json", *args, f"tcp://127.0.0.1:{port}", *[str(x) for x in paths])


def summary(proc, timeout=None):
    """The JSON summary line a --json side printed."""
    text = proc.out.read_to_eof(LONG if timeout is None else timeout).decode()
    lines = [l for l in text.splitlines() if l.startswith("{")]
    assert lines, f"{proc!r} printed no JSON; stderr: {proc.err.text()[-800:]!r}"
    return json.loads(lines[-1])


def transfer(run, out, *paths, rargs=(), sargs=(), rcode=0, scode=0, timeout=None):
    """One receiver, one sender, both to the end; returns their summaries."""
    rx, port = receiver(run, out, *rargs)
    tx = sender(run, port, *paths, args=sargs)
    tx.expect_exit(scode, LONG if timeout is None else timeout)
    rx.expect_exit(rcode, LONG if timeout is None else timeout)
    return summary(rx), summary(tx)


@pytest.fixture
def proxy_bin(sockit_bin):
    path = proxy_binary(os.path.dirname(sockit_bin))
    if not os.access(path, os.X_OK):
        pytest.fail(f"no chaos_proxy at {path}: it is built with the tree", pytrace=False)
    return path


# ---------------------------------------------------------------------------
# Round trips
# ---------------------------------------------------------------------------

def test_single_file_keeps_bytes_mode_and_time(run, tmp_path):
    src = tmp_path / "report.bin"
    digest = write_random(src, 3 * MIB + 123)
    os.chmod(src, 0o640)
    os.utime(src, ns=(1_600_000_000_123_456_789, 1_500_000_000_987_654_321))
    out = tmp_path / "out"
    r, s = transfer(run, out, src)
    got = out / "report.bin"
    assert sha256_file(got) == digest
    st = got.stat()
    assert st.st_mode & 0o7777 == 0o640 & ~current_umask()
    assert st.st_mtime_ns == 1_500_000_000_987_654_321
    for j in (r, s):
        assert (j["status"], j["files"], j["stored"], j["failed"]) == ("ok", 1, 1, 0)
        assert j["bytes"] == j["moved"] == 3 * MIB + 123
    assert sorted(os.listdir(out)) == ["report.bin"]      # no partial file left


def current_umask():
    m = os.umask(0)
    os.umask(m)
    return m


def test_empty_files_and_empty_directories(run, tmp_path):
    src = tmp_path / "stuff"
    (src / "empty-dir" / "deeper").mkdir(parents=True)
    (src / "zero").write_bytes(b"")
    (src / "empty-dir" / "also-zero").write_bytes(b"")
    os.utime(src / "empty-dir" / "deeper", ns=(10**18, 10**18))
    out = tmp_path / "out"
    r, s = transfer(run, out, src)
    assert tree(out / "stuff") == tree(src)
    assert (r["files"], r["dirs"], r["stored"], r["bytes"]) == (2, 3, 2, 0)
    assert (out / "stuff" / "empty-dir" / "deeper").stat().st_mtime_ns == 10**18


UNICODE_NAMES = [
    "日本語のファイル.txt", "Привет мир.doc", "e\u0301te\u0301 (NFD).txt", "été (NFC).txt",
    "😀 emoji.png", "عربي.txt", "Ελληνικά/κείμενο.md", ".hidden", "spaces  in  name ",
    "-dash-first", "notes….txt", "中文目录/子目录/文件.bin",
]


def test_directory_tree_with_unicode_names(run, tmp_path):
    src = tmp_path / "tree"
    for i, name in enumerate(UNICODE_NAMES):
        p = src / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(os.urandom(i * 997))
        os.utime(p, ns=(1_234_567_890 * 10**9 + i, 1_234_567_890 * 10**9 + i))
    out = tmp_path / "out"
    r, s = transfer(run, out, src)
    assert tree(out / "tree") == tree(src)
    assert r["stored"] == len(UNICODE_NAMES) and r["failed"] == 0


def test_many_small_files(run, tmp_path):
    n = 500 if ASAN else 3000
    src = tmp_path / "small"
    for i in range(n):
        d = src / f"d{i % 25:02d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:05d}.dat").write_bytes(os.urandom(i % 3001))
    out = tmp_path / "out"
    r, s = transfer(run, out, src)
    assert tree(out / "small") == tree(src)
    assert (r["files"], r["dirs"], r["stored"]) == (n, 26, n)
    assert (s["stored"], s["failed"]) == (n, 0)


def test_several_paths_and_same_name_refused(run, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    (a / "x").mkdir(parents=True)
    (b / "x").mkdir(parents=True)
    (a / "x" / "one").write_bytes(b"1")
    (tmp_path / "solo.txt").write_bytes(b"solo")
    out = tmp_path / "out"
    r, s = transfer(run, out, a / "x", tmp_path / "solo.txt")
    assert (out / "x" / "one").read_bytes() == b"1" and (out / "solo.txt").read_bytes() == b"solo"
    code, _, err = run.run("send", "tcp://127.0.0.1:9", str(a / "x"), str(b / "x"))
    assert code == 1 and "two paths to send are both named 'x'" in err


def test_one_gib_from_dev_shm_with_constant_memory(run, sockit_bin):
    """The big round trip: BIG bytes /dev/shm to /dev/shm, sha256-identical,
    and neither side's peak RSS near the file size (constant memory)."""
    shm = pathlib.Path("/dev/shm") if os.path.isdir("/dev/shm") else None
    if shm is None:
        pytest.fail("no /dev/shm", pytrace=False)
    base = shm / f"sockit-xfer-test-{os.getpid()}"
    base.mkdir()
    try:
        src = base / "big.bin"
        digest = write_random(src, BIG)
        out = base / "out"
        rss = base / "rss"
        timer = ["/usr/bin/time", "-f", "%M", "-o"]
        rx = run.spawn(timer + [str(rss) + ".r", sockit_bin, "receive", "--yes", "--json", "--dir",
                                str(out), "tcp://127.0.0.1:0"], name="sockit receive")
        port = rx.port(LONG)
        tx = run.spawn(timer + [str(rss) + ".s", sockit_bin, "send", "--json",
                                f"tcp://127.0.0.1:{port}", str(src)], name="sockit send")
        tx.expect_exit(0, LONG * 2)
        rx.expect_exit(0, LONG)
        s, r = summary(tx), summary(rx)
        assert s["moved"] == r["moved"] == BIG and r["stored"] == 1
        assert sha256_file(out / "big.bin") == digest
        for side in ("r", "s"):
            peak_kib = int(open(f"{rss}.{side}").read().split()[-1])
            limit = 256 * 1024 if ASAN else 48 * 1024      # KiB; ASan's shadow memory costs
            assert peak_kib < limit, f"{side}: peak RSS {peak_kib} KiB for a {BIG >> 20} MiB file"
        for p in (tx, rx):
            assert "ERROR: AddressSanitizer" not in p.err.text()
    finally:
        for p in sorted(base.rglob("*"), reverse=True):
            p.unlink() if not p.is_dir() else p.rmdir()
        base.rmdir()


def test_unix_socket_endpoint(run, tmp_path, sockdir):
    src = tmp_path / "f.bin"
    digest = write_random(src, 300000)
    path = os.path.join(sockdir, "x.sock")
    out = tmp_path / "out"
    rx = run.sockit("receive", "--yes", "--dir", str(out), "--port-file", str(tmp_path / "pf"),
                    f"unix:{path}")
    poll_until(lambda: os.path.exists(tmp_path / "pf"), LONG, "the port file")
    tx = run.sockit("send", f"unix:{path}", str(src))
    tx.expect_exit(0, LONG)
    rx.expect_exit(0, LONG)
    assert sha256_file(out / "f.bin") == digest
    assert tx.err.text() == ""          # not a terminal: nothing but errors


# ---------------------------------------------------------------------------
# Again, resume, existing files
# ---------------------------------------------------------------------------

def test_second_run_sends_nothing_again(run, tmp_path):
    src = tmp_path / "dir"
    src.mkdir()
    for i in range(5):
        write_random(src / f"f{i}", 100000 * i)
    out = tmp_path / "out"
    transfer(run, out, src)
    r, s = transfer(run, out, src)
    assert (r["identical"], r["stored"], r["moved"]) == (5, 0, 0)
    assert (s["identical"], s["moved"]) == (5, 0)


def test_corrupt_partial_file_starts_over(run, tmp_path):
    """A partial file whose bytes are not the source's first bytes fails
    the sender's check: the file is sent whole, and arrives right."""
    src = tmp_path / "data.bin"
    digest = write_random(src, 2 * MIB)
    out = tmp_path / "out"
    out.mkdir()
    (out / ".data.bin.part").write_bytes(b"\0" * MIB)
    r, s = transfer(run, out, src)
    assert sha256_file(out / "data.bin") == digest
    assert (s["moved"], s["resumed"]) == (2 * MIB, 0)
    assert not (out / ".data.bin.part").exists()


def test_good_partial_file_resumes(run, tmp_path):
    src = tmp_path / "data.bin"
    digest = write_random(src, 3 * MIB)
    out = tmp_path / "out"
    out.mkdir()
    (out / ".data.bin.part").write_bytes(src.read_bytes()[:MIB + 5])
    r, s = transfer(run, out, src)
    assert sha256_file(out / "data.bin") == digest
    assert (s["moved"], s["resumed"], r["resumed"]) == (2 * MIB - 5, 1, 1)


def test_long_prefix_hash_keeps_the_session_alive(run):
    """Resuming a big partial file: both sides hash its prefix before any
    content moves, longer than their idle timeout here; KEEPALIVE frames
    keep the session up."""
    base = pathlib.Path("/dev/shm") / f"sockit-xfer-alive-{os.getpid()}"
    base.mkdir()
    try:
        src = base / "big.bin"
        size = 384 * MIB       # a SHA-256 of it takes over 0.2 s (~1.7 GB/s)
        digest = write_random(src, size)
        out = base / "out"
        out.mkdir()
        with open(src, "rb") as f, open(out / ".big.bin.part", "wb") as p:
            for _ in range(size // MIB - 1):
                p.write(f.read(MIB))
        r, s = transfer(run, out, src, rargs=("--idle-timeout", "0.15"),
                        sargs=("--idle-timeout", "0.15"))
        assert (s["moved"], s["resumed"]) == (MIB, 1)
        assert sha256_file(out / "big.bin") == digest
    finally:
        for p in sorted(base.rglob("*"), reverse=True):
            p.unlink() if not p.is_dir() else p.rmdir()
        base.rmdir()


def test_existing_file_is_kept_overwritten_or_renamed(run, tmp_path):
    src = tmp_path / "a.txt"
    src.write_bytes(b"new content\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.txt").write_bytes(b"old content, longer\n")
    r, s = transfer(run, out, src, rcode=1, scode=1)
    assert (out / "a.txt").read_bytes() == b"old content, longer\n"
    assert r["failures"][0]["status"] == "exists" and s["failures"][0]["status"] == "exists"
    assert "not overwritten" in s["failures"][0]["reason"]
    # the same size but different bytes: checked by hash, still kept
    (out / "a.txt").write_bytes(b"NEW CONTENT\n")
    r, s = transfer(run, out, src, rcode=1, scode=1)
    assert (out / "a.txt").read_bytes() == b"NEW CONTENT\n" and r["failures"][0]["status"] == "exists"
    r, s = transfer(run, out, src, rargs=("--rename",))
    assert (out / "a.txt").read_bytes() == b"NEW CONTENT\n"
    assert (out / "a (1).txt").read_bytes() == b"new content\n"
    assert r["renamed"] == [{"name": "a.txt", "stored_as": "a (1).txt"}]
    r, s = transfer(run, out, src, rargs=("--overwrite",))
    assert (out / "a.txt").read_bytes() == b"new content\n"
    assert sorted(os.listdir(out)) == ["a (1).txt", "a.txt"]


# ---------------------------------------------------------------------------
# kill -9 at half a file, then the same command again
# ---------------------------------------------------------------------------

def _kill_at_half(run, proxy_bin, tmp_path, victim):
    src = tmp_path / "big.bin"
    digest = write_random(src, MID)
    out = tmp_path / "out"
    part = out / ".big.bin.part"
    rx, port = receiver(run, out)
    # The proxy stops forwarding at half the stream for a while: the kill
    # lands at a known point whatever the machine's speed.
    with ChaosProxy(proxy_bin, f"127.0.0.1:{port}", up_stall_after=MID // 2,
                    up_stall_ms=2000) as px:
        tx = sender(run, px.port, src)
        poll_until(lambda: "stalling" in px.log, LONG, "the stream to reach half")
        poll_until(lambda: part.exists() and part.stat().st_size >= MID // 2 - MIB, LONG,
                   "the partial file to reach half")
        (tx if victim == "sender" else rx).signal(signal.SIGKILL)
        other = rx if victim == "sender" else tx
        other.expect_exit(1, LONG)
    held = part.stat().st_size
    assert MIB < held < MID and not (out / "big.bin").exists()
    if victim == "sender":
        assert re.search(r"'big\.bin': (connection closed|Connection reset by peer) after .* of "
                         r"(64|32)\.0 MiB", rx.err.text()), rx.err.text()
        assert "kept for a resume" in rx.err.text()
    else:
        assert tx.err.text().strip(), "the sender said nothing when its receiver died"
    # The same command again: it goes on from what the receiver holds.
    r, s = transfer(run, out, src)
    assert sha256_file(out / "big.bin") == digest
    assert s["moved"] == MID - held and s["resumed"] == 1 and r["resumed"] == 1
    assert s["moved"] < 0.6 * MID
    assert not part.exists()


def test_kill9_sender_at_half_then_resume(run, proxy_bin, tmp_path):
    _kill_at_half(run, proxy_bin, tmp_path, "sender")


def test_kill9_receiver_at_half_then_resume(run, proxy_bin, tmp_path):
    _kill_at_half(run, proxy_bin, tmp_path, "receiver")


# ---------------------------------------------------------------------------
# The sender's file changes
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["truncate", "overwrite"])
def test_source_changing_while_sent_is_detected(run, proxy_bin, tmp_path, how):
    src = tmp_path / "live.bin"
    write_random(src, MID)
    out = tmp_path / "out"
    part = out / ".live.bin.part"
    rx, port = receiver(run, out)
    with ChaosProxy(proxy_bin, f"127.0.0.1:{port}", up_stall_after=4 * MIB, up_stall_ms=1500) as px:
        tx = sender(run, px.port, src)
        poll_until(lambda: part.exists() and part.stat().st_size >= 2 * MIB, LONG, "data to arrive")
        if how == "truncate":
            os.truncate(src, MIB)
        else:
            with open(src, "r+b") as f:        # same size, new bytes at the start
                f.write(b"changed!" * 1000)
        tx.expect_exit(1, LONG)
        rx.expect_exit(1, LONG)
    s, r = summary(tx), summary(rx)
    assert s["failures"][0]["status"] == "changed" and r["failures"][0]["status"] == "changed"
    assert "changed while it was being sent" in tx.err.text()
    assert not (out / "live.bin").exists() and not part.exists()


class RawReceiver:
    """A test-only receiver speaking SKXF/1 from Python (for what a real
    receiver cannot be made to do at a chosen moment)."""

    def __init__(self):
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(1)
        self.lsock.settimeout(LONG)
        self.port = self.lsock.getsockname()[1]
        self.s = None

    def accept(self):
        self.s, _ = self.lsock.accept()
        self.s.settimeout(LONG)
        return Raw(self.s)


def test_source_changed_after_listing_is_not_sent(run, tmp_path):
    src = tmp_path / "f.txt"
    src.write_bytes(b"listed\n")
    rr = RawReceiver()
    tx = sender(run, rr.port, src)
    raw = rr.accept()
    raw.send(hello(ROLE_RECEIVER))
    assert raw.read_frame()[0] == HELLO
    assert raw.read_frame()[0] == MANIFEST
    assert raw.read_frame()[0] == ENTRY
    src.write_bytes(b"changed since it was listed\n")
    raw.send(frame(ACCEPT, b""), want(0, 0, 0, b"\0" * 32))
    t, p = raw.read_frame()
    assert t == FILE and struct.unpack(">IBQ", p) == (0, 3, 0)     # CHANGED, no data
    raw.send(frame(RESULT, struct.pack(">IB", 0, 3) + b"changed"), frame(DONE, b""))
    tx.expect_exit(1, LONG)
    assert "changed after it was listed" in tx.err.text()


def test_sender_refuses_other_protocol_version(run, tmp_path):
    src = tmp_path / "f.txt"
    src.write_bytes(b"x")
    rr = RawReceiver()
    tx = sender(run, rr.port, src)
    raw = rr.accept()
    raw.send(hello(ROLE_RECEIVER, version=2))
    code, text = raw.expect_error()
    assert code == 2 and "version 1" in text
    tx.expect_exit(1, LONG)
    assert "this sender speaks SKXF version 1, the receiver 2" in tx.err.text()


# ---------------------------------------------------------------------------
# Faults: a bad link, a full disk
# ---------------------------------------------------------------------------

def test_over_lossy_delayed_reordering_link(sockit_bin, proxy_bin, tmp_path):
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    src = tmp_path / "payload"
    (src / "small").mkdir(parents=True)
    write_random(src / "big.bin", (8 if ASAN else 24) * MIB)
    for i in range(40):
        (src / "small" / f"s{i}").write_bytes(os.urandom(i * 300))
    out = tmp_path / "out"
    out.mkdir()
    with NetPair() as net:
        net.b.loss(3, dport=9000)              # real loss: B drops 3% of what arrives
        rule = net.a.reorder(3, dport=9000)    # 3% of A's segments held back: out of order
        rx = net.b.popen([sockit_bin, "receive", "--yes", "--json", "--dir", str(out),
                          "tcp://10.9.0.2:9000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        net.b.wait_listening(9000, timeout=LONG, proc=rx)
        # Delay: the chaos proxy in A holds every chunk 5 ms on its way.
        with ChaosProxy(proxy_bin, "10.9.0.2:9000", host=net.a, up_delay=5, down_delay=5) as px:
            tx = net.a.popen([sockit_bin, "send", "--json", f"tcp://127.0.0.1:{px.port}", str(src)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            sout, serr = tx.communicate(timeout=LONG * 2)
            rout, rerr = rx.communicate(timeout=LONG)
        assert tx.returncode == 0 and rx.returncode == 0, (serr, rerr)
        assert tree(out / "payload") == tree(src)
        assert net.b.dropped() > 0, "no packet was dropped"
        assert net.a.counters()[rule] > 0, "no packet was reordered"
        ofo = net.b.nstat("TcpExtTCPOFOQueue")["TcpExtTCPOFOQueue"]
        assert ofo > 0, "the receiver never queued a segment out of order"
        assert json.loads(sout)["stored"] == 41


def test_disk_full_keeps_partial_and_resumes(run, proxy_bin, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs")
    src = tmp_path / "big.bin"
    size = 6 * MIB
    digest = write_random(src, size)
    with tmpfs("24m") as d:
        out = pathlib.Path(d) / "out"
        part = out / ".big.bin.part"
        rx, port = receiver(run, out)
        with ChaosProxy(proxy_bin, f"127.0.0.1:{port}", up_stall_after=2 * MIB,
                        up_stall_ms=1500) as px:
            tx = sender(run, px.port, src)
            poll_until(lambda: part.exists() and part.stat().st_size >= MIB, LONG, "data")
            # Someone else fills the disk while the transfer is held up.
            filler = pathlib.Path(d) / "filler"
            with open(filler, "wb", buffering=0) as f:
                try:
                    while True:
                        f.write(b"\0" * 65536)
                except OSError:
                    pass
            rx.expect_exit(1, LONG)
            tx.expect_exit(1, LONG)
        assert "write: No space left on device; the partial file is kept for a resume" in rx.err.text()
        assert "No space left on device" in tx.err.text()   # the receiver told the sender
        assert not (out / "big.bin").exists()
        held = part.stat().st_size
        assert held >= MIB
        filler.unlink()
        r, s = transfer(run, out, src)
        assert sha256_file(out / "big.bin") == digest
        assert s["moved"] == size - held


def test_not_enough_space_is_refused_before_writing(run, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs")
    src = tmp_path / "big.bin"
    write_random(src, 12 * MIB)
    with tmpfs("8m") as d:
        out = pathlib.Path(d) / "out"
        r, s = transfer(run, out, src, rcode=1, scode=1)
        assert "not enough free space" in r["error"] and "not enough free space" in s["error"]
        assert os.listdir(out) == []


# ---------------------------------------------------------------------------
# The receiver asks; directions; drop boxes
# ---------------------------------------------------------------------------

def test_non_interactive_receiver_without_yes_declines(run, tmp_path):
    src = tmp_path / "f.txt"
    src.write_bytes(b"hello")
    out = tmp_path / "out"
    r, s = transfer(run, out, src, rargs=("--no-yes",), rcode=1, scode=1)
    assert "standard input is not a terminal" in run.procs[0].err.text()
    assert "use --yes" in run.procs[0].err.text()
    assert "declined by the receiver" in s["error"]
    assert os.listdir(out) == []


def _pty_read_until(fd, pattern, timeout):
    buf = b""
    deadline = time.monotonic() + timeout
    while not re.search(pattern, buf):
        left = deadline - time.monotonic()
        assert left > 0, f"no {pattern!r} on the terminal; got {buf[-2000:]!r}"
        if select.select([fd], [], [], left)[0]:
            try:
                data = os.read(fd, 65536)
            except OSError:
                data = b""
            if not data:
                break
            buf += data
    return buf


@pytest.mark.parametrize("answer", [b"y\n", b"n\n"])
def test_receiver_shows_manifest_and_asks_on_a_terminal(run, sockit_bin, tmp_path, answer):
    src = tmp_path / "photos"
    (src / "2024").mkdir(parents=True)
    (src / "2024" / "beach.jpg").write_bytes(os.urandom(5000))
    (src / ".hidden-thing").write_bytes(b"h" * 10)
    out = tmp_path / "out"
    master, slave = pty.openpty()
    pf = tmp_path / "port"
    rx = subprocess.Popen([sockit_bin, "receive", "--dir", str(out), "--port-file", str(pf),
                           "tcp://127.0.0.1:0"], stdin=slave, stdout=subprocess.DEVNULL,
                          stderr=slave)
    os.close(slave)
    try:
        poll_until(lambda: pf.exists(), LONG, "the port file")
        tx = run.sockit("send", f"tcp://127.0.0.1:{int(pf.read_text())}", str(src))
        screen = _pty_read_until(master, rb"Accept\? \[y/N\] ", LONG).decode()
        assert "offers 2 files and 2 directories, 4.89 KiB in all" in screen
        assert "photos/2024/beach.jpg" in screen and "4.88 KiB" in screen
        assert "photos/.hidden-thing" in screen and "10 bytes" in screen
        os.write(master, answer)
        _pty_read_until(master, rb"\Z(?!x)", LONG)     # read the terminal until it closes
        rx.wait(LONG)
        if answer == b"y\n":
            assert rx.returncode == 0
            tx.expect_exit(0, LONG)
            assert tree(out / "photos") == tree(src)
        else:
            assert rx.returncode == 1
            tx.expect_exit(1, LONG)
            assert "declined by the receiver" in tx.err.text()
            assert os.listdir(out) == []
    finally:
        if rx.poll() is None:
            rx.kill()
            rx.wait(WAIT)
        os.close(master)


def test_progress_and_summary_on_a_terminal(run, sockit_bin, tmp_path):
    src = tmp_path / "big.bin"
    write_random(src, 16 * MIB)
    out = tmp_path / "out"
    rx, port = receiver(run, out)
    master, slave = pty.openpty()
    tx = subprocess.Popen([sockit_bin, "send", f"tcp://127.0.0.1:{port}", str(src)],
                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    try:
        screen = _pty_read_until(master, rb"sent 1 file .*failed", LONG).decode()
        tx.wait(LONG)
    finally:
        if tx.poll() is None:
            tx.kill()
            tx.wait(WAIT)
        os.close(master)
    assert tx.returncode == 0
    rx.expect_exit(0, LONG)
    assert re.search(r"\[1/1\] big\.bin +100% 16\.0 MiB/16\.0 MiB [0-9.]+ [KMG]iB/s ETA 0:00 "
                     r"\| total 100% 16\.0 MiB/16\.0 MiB ETA 0:00", screen), screen
    assert "sent 1 file (16.0 MiB, 16.0 MiB moved) to tcp://127.0.0.1:" in screen
    assert "1 stored, 0 resumed, 0 identical, 0 failed" in screen


def test_send_listens_and_receive_connects(run, tmp_path):
    src = tmp_path / "d"
    src.mkdir()
    write_random(src / "x.bin", MIB)
    out = tmp_path / "out"
    pf = tmp_path / "port"
    tx = run.sockit("send", "--listen", "--json", "--port-file", str(pf), "tcp://127.0.0.1:0", str(src))
    poll_until(lambda: pf.exists(), LONG, "the port file")
    rx = run.sockit("receive", "--connect", "--yes", "--json", "--dir", str(out),
                    f"tcp://127.0.0.1:{int(pf.read_text())}")
    rx.expect_exit(0, LONG)
    tx.expect_exit(0, LONG)
    assert tree(out / "d") == tree(src)
    assert summary(rx)["stored"] == summary(tx)["stored"] == 1


def test_keep_open_drop_box_takes_senders_in_turn(run, tmp_path):
    out = tmp_path / "drop"
    rx, port = receiver(run, out, "--keep-open", "--rename")
    for i in range(3):
        f = tmp_path / f"note{i}.txt"
        f.write_bytes(f"note {i}\n".encode())
        same = tmp_path / "same" / f"{i}"
        same.mkdir(parents=True)
        (same / "clash.txt").write_bytes(f"clash {i}\n".encode())
        tx = sender(run, port, f, same / "clash.txt")
        tx.expect_exit(0, LONG)
    assert sorted(os.listdir(out)) == ["clash (1).txt", "clash (2).txt", "clash.txt",
                                       "note0.txt", "note1.txt", "note2.txt"]
    assert rx.alive()
    rx.signal(signal.SIGTERM)
    rx.expect_exit(0, WAIT)


def test_hub_drop_box_does_not_block_other_services(run, proxy_bin, tmp_path):
    drop = tmp_path / "dropbox"
    conf = tmp_path / "serve.conf"
    conf.write_text(f"xfer tcp://127.0.0.1:0 --dir={drop}\necho tcp://127.0.0.1:0\n")
    hub = run.sockit("serve", "-v", "--config", str(conf))
    table = hub.out.read_until(b"\n", LONG) + hub.out.read_until(b"\n") + hub.out.read_until(b"\n")
    ports = dict(re.findall(rb"^(\w+)\s+tcp://127\.0\.0\.1:(\d+)$", table, re.M))
    xfer_port, echo_port = int(ports[b"xfer"]), int(ports[b"echo"])
    src = tmp_path / "big.bin"
    digest = write_random(src, 16 * MIB)
    with ChaosProxy(proxy_bin, f"127.0.0.1:{xfer_port}", up_stall_after=4 * MIB,
                    up_stall_ms=1500) as px:
        tx = sender(run, px.port, src)
        poll_until(lambda: any(drop.glob(".*.part")), LONG, "the transfer to start")
        # mid-transfer: the echo service on the loop answers at once
        t0 = time.monotonic()
        with socket.create_connection(("127.0.0.1", echo_port), timeout=WAIT) as s:
            s.sendall(b"ping\n")
            assert s.recv(100) == b"ping\n"
        assert time.monotonic() - t0 < 1.0
        assert tx.alive()
        tx.expect_exit(0, LONG)
    assert sha256_file(drop / "big.bin") == digest
    hub.err.wait_for(rb"xfer: 127\.0\.0\.1:\d+: 1 file, 16\.0 MiB into .*: 1 stored", LONG)
    hub.signal(signal.SIGTERM)
    hub.expect_exit(0, LONG)


# ---------------------------------------------------------------------------
# Usage
# ---------------------------------------------------------------------------

def test_usage_errors(run, tmp_path):
    f = tmp_path / "f"
    f.write_bytes(b"x")
    for args, msg in [
        (("send",), "missing ENDPOINT"),
        (("send", "tcp://127.0.0.1:9"), "missing PATH"),
        (("send", "udp://127.0.0.1:9", str(f)), "needs a stream endpoint"),
        (("receive",), "missing ENDPOINT"),
        (("receive", "--overwrite", "--rename", "tcp://:0"), "only one of"),
        (("receive", "--max-total", "lots", "tcp://:0"), "bad --max-total"),
        (("receive", "--connect", "--keep-open", "tcp://127.0.0.1:9"), "--connect goes with"),
    ]:
        code, _, err = run.run(*args)
        assert code == 2 and msg in err, (args, err)
    code, _, err = run.run("send", "tcp://127.0.0.1:9", str(tmp_path / "missing"))
    assert code == 1 and "No such file or directory" in err
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "line\nbreak").write_bytes(b"x")
    code, _, err = run.run("send", "tcp://127.0.0.1:9", str(bad))
    assert code == 1 and "control character U+000A" in err and "'bad/line\\x0abreak'" in err


# ---------------------------------------------------------------------------
# A hostile sender: a raw SKXF/1 client
# ---------------------------------------------------------------------------

HELLO, MANIFEST, ENTRY, ACCEPT, WANT, FILE, FILE_END, RESULT, DONE, ERROR = range(1, 11)
ROLE_SENDER, ROLE_RECEIVER = 1, 2
KIND_FILE, KIND_DIR = 1, 2


def frame(t, payload):
    return bytes([t]) + struct.pack(">I", len(payload)) + payload


def hello(role=ROLE_SENDER, version=1):
    return frame(HELLO, b"SKXF" + struct.pack(">HBB", version, role, 0))


def manifest(count, total, name_bytes):
    return frame(MANIFEST, struct.pack(">IQI", count, total, name_bytes))


def entry(name, size=0, kind=KIND_FILE, mode=0o644, mtime=1_700_000_000):
    if isinstance(name, str):
        name = name.encode()
    return frame(ENTRY, struct.pack(">BIqIQ", kind, mode, mtime, 0, size) + name)


def want(index, kind, offset, h):
    return frame(WANT, struct.pack(">IBQ", index, kind, offset) + h)


def file_data(index, offset=0):
    return frame(FILE, struct.pack(">IBQ", index, 0, offset))


def file_end(index, content, status=0):
    return frame(FILE_END, struct.pack(">IB", index, status) + hashlib.sha256(content).digest())


class Raw:
    """One raw connection: frames out, frames in, every read bounded."""

    def __init__(self, s):
        self.s = s

    @classmethod
    def connect(cls, port):
        return cls(socket.create_connection(("127.0.0.1", port), timeout=LONG))

    def send(self, *parts):
        self.s.sendall(b"".join(parts))

    def _exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.s.recv(n - len(buf))
            if not chunk:
                raise EOFError(f"EOF after {len(buf)} of {n} bytes")
            buf += chunk
        return buf

    def read_frame(self):
        t, n = struct.unpack(">BI", self._exact(5))
        return t, self._exact(n)

    def expect_error(self):
        """Reads until ERROR; returns (code, text)."""
        while True:
            t, p = self.read_frame()
            if t == ERROR:
                return struct.unpack(">H", p[:2])[0], p[2:].decode("utf-8", "replace")

    def offer(self, entries, total=None, name_bytes=None):
        """HELLO, MANIFEST and ENTRY frames for [(name, size, kind)...]."""
        names = [e[0].encode() if isinstance(e[0], str) else e[0] for e in entries]
        total = sum(e[1] for e in entries) if total is None else total
        nb = sum(len(n) for n in names) if name_bytes is None else name_bytes
        self.send(hello(), manifest(len(entries), total, nb),
                  *[entry(n, e[1], e[2] if len(e) > 2 else KIND_FILE) for n, e in zip(names, entries)])
        t, _ = self.read_frame()
        assert t == HELLO

    def close(self):
        self.s.close()


@pytest.fixture
def hostile(run, tmp_path):
    """A receiver (--yes) in tmp/out, a sentinel directory next to it, and
    a check at the end that nothing outside out/ changed."""
    out = tmp_path / "out"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "sentinel").write_bytes(b"do not touch\n")

    class H:
        pass
    h = H()
    h.out, h.outside, h.run = out, outside, run

    def start(*args):
        rx, port = receiver(run, out, *args)
        h.rx = rx
        h.raw = Raw.connect(port)
        return h.raw
    h.start = start
    out.mkdir()
    before = tree(tmp_path)
    yield h
    after = tree(tmp_path)
    changed = {k for k in set(before) | set(after)
               if k != "out" and not k.startswith("out/") and before.get(k) != after.get(k)}
    assert not changed, f"written outside the target directory: {sorted(changed)}"


def _refused(h, code, text, *needles):
    """The receiver sent ERROR code with text, said it on stderr, exit 1."""
    got_code, got_text = h.raw.expect_error()
    h.raw.close()                                  # the receiver reads us out until EOF
    assert got_code == code, (got_code, got_text)
    assert text in got_text, got_text
    h.rx.expect_exit(1, LONG)
    err = h.rx.err.text()
    for n in (text,) + needles:
        assert n in err, err
    assert "\x1b" not in err
    return err


@pytest.mark.parametrize("name,why", [
    ("../evil", "'..' component"),
    ("a/../../evil", "'..' component"),
    ("/tmp/evil-absolute", "absolute name"),
    ("a//b", "empty component"),
    ("dir/./x", "'.' component"),
    ("ok\x1b[31mred\x1b[0m", "control character U+001B"),
    ("\x1b]0;owned\x07", "control character"),
    ("a\\..\\..\\evil", "backslash"),
    ("evil\u202egnp.exe", "bidirectional control U+202E"),
    ("\uff0e\uff0e/evil", "look-alike of '.'"),
    ("x" * 256, "longer than 255"),
    (".sneaky.part", "partial file"),
])
def test_hostile_names_are_refused(hostile, name, why):
    raw = hostile.start()
    raw.offer([(name, 4)])
    err = _refused(hostile, 5, why, "refused: name '")
    if "\x1b" in name:
        assert "\\x1b" in err                      # shown escaped, never raw
    assert os.listdir(hostile.out) == []


def test_name_longer_than_a_frame_is_refused(hostile):
    raw = hostile.start()
    raw.send(hello(), manifest(1, 0, 4096), entry("y/" * 2049))
    _refused(hostile, 1, "ENTRY: payload length 4123 out of range")


@pytest.mark.parametrize("raw_name", [b"\xc0\xae\xc0\xae/evil", b"a\x00b", b"\xff\xfe"])
def test_hostile_bytes_in_names_are_refused(hostile, raw_name):
    raw = hostile.start()
    raw.offer([(raw_name, 1)])
    _refused(hostile, 5, "invalid UTF-8" if b"\0" not in raw_name else "NUL", "refused: name '")
    assert os.listdir(hostile.out) == []


def _serve_files(raw, contents):
    """After an offer: reads ACCEPT, answers every WANT with the content,
    collects RESULTs until DONE. Returns {index: (status, text)}."""
    t, _ = raw.read_frame()
    assert t == ACCEPT, t
    results = {}
    while True:
        t, p = raw.read_frame()
        if t == WANT:
            i, kind, off = struct.unpack(">IBQ", p[:13])
            data = contents[i]
            raw.send(file_data(i), data, file_end(i, data))
        elif t == RESULT:
            i, st = struct.unpack(">IB", p[:5])
            results[i] = (st, p[5:].decode())
        elif t == DONE:
            raw.s.shutdown(socket.SHUT_WR)
            return results
        else:
            raise AssertionError(f"unexpected frame {t}: {p!r}")


def test_symlinked_directory_in_dir_is_not_followed(hostile):
    os.symlink(hostile.outside, hostile.out / "link")
    raw = hostile.start()
    raw.offer([("link", 0, KIND_DIR), ("link/evil", 5), ("fine.txt", 4)])
    res = _serve_files(raw, {1: b"evil!", 2: b"fine"})
    assert res[1][0] == 5 and "'link' is a symlink (not followed)" in res[1][1]
    assert res[2][0] == 0 and (hostile.out / "fine.txt").read_bytes() == b"fine"
    hostile.rx.expect_exit(1, LONG)
    assert not (hostile.outside / "evil").exists()


def test_symlinked_partial_file_is_not_written_through(hostile):
    target = hostile.outside / "sentinel"
    os.symlink(target, hostile.out / ".x.part")
    raw = hostile.start()
    raw.offer([("x", 5)])
    res = _serve_files(raw, {0: b"EVIL!"})
    assert res[0][0] == 5 and "not a regular file" in res[0][1]
    hostile.rx.expect_exit(1, LONG)
    assert os.readlink(hostile.out / ".x.part") == str(target)


def test_symlinked_final_name_is_replaced_not_followed(hostile):
    target = hostile.outside / "sentinel"
    os.symlink(target, hostile.out / "y")
    raw = hostile.start("--overwrite")
    raw.offer([("y", 4)])
    res = _serve_files(raw, {0: b"NEW!"})
    assert res[0][0] == 0
    hostile.rx.expect_exit(0, LONG)
    assert not os.path.islink(hostile.out / "y") and (hostile.out / "y").read_bytes() == b"NEW!"


def test_symlink_as_final_name_without_overwrite_is_kept(hostile):
    os.symlink(hostile.outside / "sentinel", hostile.out / "y")
    raw = hostile.start()
    raw.offer([("y", 4)])
    res = _serve_files(raw, {0: b"NEW!"})
    assert res[0][0] == 4
    hostile.rx.expect_exit(1, LONG)
    assert os.path.islink(hostile.out / "y")


def test_setuid_setgid_sticky_bits_are_dropped(hostile):
    raw = hostile.start()
    raw.send(hello(), manifest(2, 4, 4),
             frame(ENTRY, struct.pack(">BIqIQ", KIND_DIR, 0o1777, 1, 0, 0) + b"d"),
             frame(ENTRY, struct.pack(">BIqIQ", KIND_FILE, 0o6755, 1, 0, 4) + b"d/s"))
    assert raw.read_frame()[0] == HELLO
    res = _serve_files(raw, {1: b"#!/x"})
    assert res[1][0] == 0
    hostile.rx.expect_exit(0, LONG)
    assert (hostile.out / "d" / "s").stat().st_mode & 0o7777 == 0o755 & ~current_umask()
    assert (hostile.out / "d").stat().st_mode & 0o7000 == 0


def test_more_bytes_than_declared(hostile):
    raw = hostile.start()
    raw.offer([("f", 10)])
    t, _ = raw.read_frame()
    assert t == ACCEPT
    t, _ = raw.read_frame()
    assert t == WANT
    raw.send(file_data(0), b"0123456789" + b"EXTRA BYTES!!", file_end(0, b"0123456789"))
    _refused(hostile, 1, "more bytes than declared")
    assert not (hostile.out / "f").exists()


def test_fewer_bytes_than_declared_then_close(hostile):
    raw = hostile.start()
    raw.offer([("f", 1000)])
    raw.read_frame(), raw.read_frame()
    raw.send(file_data(0), b"only 22 bytes of 1000")
    raw.s.shutdown(socket.SHUT_WR)
    hostile.rx.expect_exit(1, LONG)
    assert "'f': connection closed" in hostile.rx.err.text()
    assert not (hostile.out / "f").exists()


def test_content_that_does_not_match_its_hash(hostile):
    raw = hostile.start()
    raw.offer([("f", 10), ("g", 3)])
    t, _ = raw.read_frame()
    assert t == ACCEPT
    results = {}
    while True:
        t, p = raw.read_frame()
        if t == WANT:
            i = struct.unpack(">I", p[:4])[0]
            if i == 0:
                raw.send(file_data(0), b"0123456789", file_end(0, b"something else"))
            else:
                raw.send(file_data(1), b"abc", file_end(1, b"abc"))
        elif t == RESULT:
            i, st = struct.unpack(">IB", p[:5])
            results[i] = (st, p[5:].decode())
        elif t == DONE:
            raw.s.shutdown(socket.SHUT_WR)
            break
    assert results[0][0] == 2 and "does not match the sender's SHA-256" in results[0][1]
    assert results[1][0] == 0
    hostile.rx.expect_exit(1, LONG)
    assert sorted(os.listdir(hostile.out)) == ["g"]        # no "f", no partial file


def test_sizes_that_do_not_add_up(hostile):
    raw = hostile.start()
    raw.offer([("f", 10)], total=100)
    _refused(hostile, 4, "the sizes add up to 10 bytes, not the 100 bytes announced")


def test_entry_larger_than_the_announced_total(hostile):
    raw = hostile.start()
    raw.offer([("f", 1 << 40), ("g", 1 << 40)], total=1 << 40)
    _refused(hostile, 4, "the sizes add up to more than")


def test_truncated_stream(hostile):
    raw = hostile.start()
    whole = entry("half-an-entry", 5)
    raw.send(hello(), manifest(1, 5, 13), whole[:len(whole) // 2])
    raw.s.shutdown(socket.SHUT_WR)
    hostile.rx.expect_exit(1, LONG)
    assert "in the middle of a message" in hostile.rx.err.text()
    assert os.listdir(hostile.out) == []


@pytest.mark.parametrize("count,total,names,code,text", [
    (200000, 0, 200000, 4, "over this receiver's limit of 100000 (--max-files)"),
    (1, 2 << 40, 1, 4, "over this receiver's limit of 1.00 TiB (1099511627776 bytes; --max-total)"),
    (2000000, 0, 2000000, 1, "entry count 2000000 out of range"),
    (10, 0, 17 << 20, 1, "bytes of names is over the limit"),
])
def test_huge_manifests_are_refused_at_once(hostile, count, total, names, code, text):
    raw = hostile.start()
    raw.send(hello(), manifest(count, total, names))
    _refused(hostile, code, text)


@pytest.mark.parametrize("count,total,text", [
    (3, 0, "3 files and directories is over this receiver's limit of 2 (--max-files)"),
    (1, 1025, "1.00 KiB (1025 bytes) is over this receiver's limit of 1.00 KiB (1024 bytes; "
              "--max-total)"),
])
def test_max_files_and_max_total_options(hostile, count, total, text):
    raw = hostile.start("--max-files", "2", "--max-total", "1K")
    raw.send(hello(), manifest(count, total, count))
    _refused(hostile, 4, text)


def test_duplicate_names_and_files_used_as_directories(run, tmp_path):
    for entries, text in [([("a", 1), ("a", 1)], "the name 'a' appears twice"),
                          ([("a", 1), ("a/b", 1)], "'a' is a file, yet 'a/b' is listed under it")]:
        out = tmp_path / f"out{len(text)}"
        rx, port = receiver(run, out)
        raw = Raw.connect(port)
        raw.offer(entries)
        code, got = raw.expect_error()
        raw.close()
        assert code == 5 and text in got
        rx.expect_exit(1, LONG)
        assert os.listdir(out) == []


def test_answers_out_of_order_are_refused(hostile):
    raw = hostile.start()
    raw.offer([("a", 1), ("b", 1)])
    assert raw.read_frame()[0] == ACCEPT
    raw.send(file_data(1), b"b", file_end(1, b"b"))
    _refused(hostile, 1, "does not answer WANT 0")


def test_other_version_and_other_protocols(hostile):
    raw = hostile.start()
    raw.send(hello(version=2))
    _refused(hostile, 2, "this receiver speaks SKXF version 1, the sender 2")


def test_not_a_sockit_peer(run, tmp_path):
    out = tmp_path / "out"
    rx, port = receiver(run, out)
    with socket.create_connection(("127.0.0.1", port), timeout=LONG) as s:
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        raw = Raw(s)
        code, text = raw.expect_error()
    assert code == 1 and "unknown message type 71" in text
    rx.expect_exit(1, LONG)
