"""The file-transfer data path of issue 21: content received into buffers,
hashed from them and written with pwrite(); files hashed for a resume or a
check by pread() into a buffer; no mapped file, no SIGBUS handler.

What can break in it: a chunk boundary (the 512 KiB buffers, the 4 MiB
hashing jobs, the 256 KiB small-file limit) losing, repeating or
misplacing bytes; the hash of an existing partial or complete file
stopping short of its last piece or reading past it. So: sizes on and
around every boundary arrive sha256-identical in one transfer; partial
files of lengths on no boundary resume with exactly the rest moved (and
one whose very last byte differs starts over); identical files of such
sizes are recognised and not sent, and one differing only in its last byte
is. And neither side installs a SIGBUS handler any more.
"""

import os
import socket
import struct
import sys

from conftest import WAIT, tcp_connect

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from faults.helpers import sha256_file                                   # noqa: E402
import pytest                                                             # noqa: E402
from test_xfer import LONG, MIB, summary, transfer, write_random        # noqa: E402
from test_xfer_tls import tls_receiver, tls_sender                       # noqa: E402

KIB = 1 << 10
CHUNK = 512 * KIB          # XFER_HASH_CHUNK: one buffer, one read
JOB = 4 * MIB              # XFER_HASH_FILE_CHUNK: one hashing job over a file range
SMALL = 256 * KIB          # XFER_SMALL_FILE: at most this is taken whole, inline

def transfer_over(run, scheme, out, *paths, rargs=()):
    """transfer() over tcp://, or over tls:// (a self-signed receiver, the
    sender pinning it): there the sender pread()s into the hashing
    thread's buffers and the receiver reads through the session."""
    if scheme == "tcp":
        return transfer(run, out, *paths, rargs=rargs)
    rx, port, pin = tls_receiver(run, out, out.parent / "state", *rargs)
    tx = tls_sender(run, port, *paths, args=("--pin", pin))
    tx.expect_exit(0, LONG)
    rx.expect_exit(0, LONG)
    return summary(rx), summary(tx)


SIZES = [SMALL + 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 17, JOB - 1, JOB + 1,
         2 * JOB + CHUNK + 333]


@pytest.mark.parametrize("scheme", ["tcp", "tls"])
def test_sizes_around_every_buffer_boundary_arrive_identical(run, tmp_path, scheme):
    src = tmp_path / "sizes"
    src.mkdir()
    digests = {}
    for i, size in enumerate(SIZES):
        digests[f"f{i}-{size}"] = write_random(src / f"f{i}-{size}", size)
    out = tmp_path / "out"
    r, s = transfer_over(run, scheme, out, src)
    assert (r["stored"], r["failed"], r["moved"], s["moved"]) == \
        (len(SIZES), 0, sum(SIZES), sum(SIZES))
    for name, digest in digests.items():
        got = out / "sizes" / name
        assert got.stat().st_size == int(name.split("-")[1])
        assert sha256_file(got) == digest, name
    assert sorted(os.listdir(out / "sizes")) == sorted(digests)   # no partial file left


def _partial(src, out, length, flip_last=False):
    """Writes the receiver's partial file of src: its first length bytes,
    the last of them inverted when flip_last."""
    data = bytearray(src.read_bytes()[:length])
    if flip_last:
        data[-1] ^= 0xFF
    (out / f".{src.name}.part").write_bytes(bytes(data))


@pytest.mark.parametrize("scheme", ["tcp", "tls"])
def test_partial_files_of_odd_lengths_resume_with_exactly_the_rest(run, tmp_path, scheme):
    """The receiver hashes each partial file with pread() in pieces; the
    sender hashes the same prefix of its file. Lengths that end inside a
    piece and inside a job must hash whole on both sides, and the rest,
    which starts at no page boundary, must land where it belongs."""
    size = 3 * JOB + 5
    prefixes = [1, SMALL + 3, CHUNK + 7, JOB + 4097, 2 * JOB + CHUNK - 1]
    srcdir = tmp_path / "src"
    srcdir.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    digests = {}
    for k, p in enumerate(prefixes):
        src = srcdir / f"p{k}.bin"
        digests[src.name] = write_random(src, size)
        _partial(src, out, p)
    r, s = transfer_over(run, scheme, out, *sorted(srcdir.iterdir()))
    assert (r["stored"], r["resumed"], s["resumed"]) == (len(prefixes),) * 3
    assert s["moved"] == r["moved"] == sum(size - p for p in prefixes)
    for name, digest in digests.items():
        assert sha256_file(out / name) == digest
        assert not (out / f".{name}.part").exists()


def test_partial_file_differing_in_its_last_byte_starts_over(run, tmp_path):
    size, prefix = 2 * JOB + 9, JOB + CHUNK + 3
    src = tmp_path / "data.bin"
    digest = write_random(src, size)
    out = tmp_path / "out"
    out.mkdir()
    _partial(src, out, prefix, flip_last=True)
    r, s = transfer(run, out, src)
    assert (s["moved"], s["resumed"], r["stored"]) == (size, 0, 1)
    assert sha256_file(out / "data.bin") == digest


def test_existing_files_of_odd_sizes_are_checked_whole(run, tmp_path):
    """WANT HAVE: an identical file is not sent again; one that differs
    only in its last byte is (with --overwrite) and ends up identical."""
    srcdir = tmp_path / "src"
    srcdir.mkdir()
    sizes = {"same.bin": JOB + CHUNK + 1, "last.bin": 2 * JOB + 3}
    digests = {n: write_random(srcdir / n, sz) for n, sz in sizes.items()}
    out = tmp_path / "out"
    out.mkdir()
    (out / "same.bin").write_bytes((srcdir / "same.bin").read_bytes())
    data = bytearray((srcdir / "last.bin").read_bytes())
    data[-1] ^= 0xFF
    (out / "last.bin").write_bytes(bytes(data))
    r, s = transfer(run, out, *sorted(srcdir.iterdir()), rargs=("--overwrite",))
    assert (r["identical"], r["stored"], r["moved"]) == (1, 1, sizes["last.bin"])
    for name, digest in digests.items():
        assert sha256_file(out / name) == digest


def _catches_sigbus(pid):
    """Whether process pid has a handler for SIGBUS (SigCgt in /proc)."""
    with open(f"/proc/{pid}/status") as f:
        caught = next(int(l.split()[1], 16) for l in f if l.startswith("SigCgt:"))
    return bool(caught & (1 << (7 - 1)))   # SIGBUS is 7 on Linux


def _read_hello(sock):
    """Reads one SKXF HELLO frame (type 1: 8 bytes, or 40 when a sender
    adds its resume key) from sock."""
    sock.settimeout(LONG)
    got = b""
    while len(got) < 5 or len(got) < 5 + struct.unpack(">I", got[1:5])[0]:
        chunk = sock.recv(4096)
        assert chunk, f"connection closed after {got!r}"
        got += chunk
    kind, length = struct.unpack(">BI", got[:5])
    assert (kind, got[5:9]) == (1, b"SKXF") and length in (8, 40), got[:9]


def test_neither_side_catches_sigbus(run, tmp_path):
    """Hashing reads files with pread(), so no SIGBUS handler is needed:
    neither side has one once its hashing thread runs (it starts before
    each side sends its HELLO)."""
    # The sanitizer runtime catches SIGBUS itself unless told not to.
    env = dict(os.environ)
    env["ASAN_OPTIONS"] = ":".join(filter(None, [env.get("ASAN_OPTIONS"), "handle_sigbus=0"]))
    rx = run.sockit("receive", "--yes", "--dir", str(tmp_path / "out"), "tcp://127.0.0.1:0",
                    env=env)
    with tcp_connect("127.0.0.1", rx.port(LONG), timeout=WAIT) as s:
        _read_hello(s)
        assert not _catches_sigbus(rx.pid)
    rx.expect_exit(1, LONG)   # the raw client left without a word

    src = tmp_path / "f.bin"
    write_random(src, 1000)
    tx = run.sockit("send", "--listen", "tcp://127.0.0.1:0", str(src), env=env)
    with tcp_connect("127.0.0.1", tx.port(LONG), timeout=WAIT) as s:
        _read_hello(s)
        assert not _catches_sigbus(tx.pid)
        s.shutdown(socket.SHUT_WR)
    tx.expect_exit(1, LONG)
