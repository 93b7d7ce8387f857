"""Issue 19, findings 2 and 3: the drop box (`sockit receive --keep-open`
and the hub's `xfer` service) is no oracle and cannot be held.

A raw SKXF/1 client in Python plays the other senders:

- the oracle: a name that exists, offered with its exact size, gets a plain
  WANT FULL (offset 0, no hash) and is stored under a new name, or (without
  --rename) refused without a WANT; the stored file is untouched;
- the partial hijack: a victim's cut-off upload (made with the victim's
  resume key) is offered to nobody else: another sender offering the same
  name gets neither the offset nor the hash, cannot resume it and cannot
  touch it; the victim's real `sockit send` then resumes it, and the stored
  file holds the victim's bytes;
- two uploads of one name at once are stored apart, never interleaved;
- a KEEPALIVE-only sender and a manifest dripped a byte a second, connected
  first, do not stop an honest `sockit send` from finishing, and are ended
  with their reason logged within the limits given;
- a KEEPALIVE while hashing a prefix is accepted only for a bounded time;
- more senders from one address than --max-per-address are told "busy".

Every wait is bounded.
"""

import hashlib
import hmac
import os
import re
import signal
import socket
import struct
import threading
import time

import pytest

from conftest import WAIT, poll_until
from test_xfer import (ACCEPT, DONE, ERROR, FILE, HELLO, LONG, RESULT, WANT, KIND_FILE, Raw,
                       entry, file_data, file_end, frame, manifest, receiver, sender, summary,
                       write_random)
from faults.helpers import sha256_file

KEEPALIVE = 11
WANT_FULL, WANT_RESUME, WANT_HAVE, WANT_CHECK = range(4)
RES_STORED, RES_EXISTS = 0, 4
KEY_LABEL = b"sockit xfer resume key v1\0"
KEEPALIVE_GRACE = 10.0   # XFER_KEEPALIVE_GRACE_MS


def hello_key(key=None):
    """A sender's HELLO, with a 32-byte resume key when given."""
    if key is None:
        return frame(HELLO, b"SKXF" + struct.pack(">HBB", 1, 1, 0))
    return frame(HELLO, b"SKXF" + struct.pack(">HBB", 1, 1, 1) + key)


def victim_key(state_dir, port):
    """Makes state_dir/xfer-resume.key and returns the key `sockit send
    --state-dir state_dir tcp://127.0.0.1:PORT` derives from it."""
    secret = os.urandom(32)
    os.makedirs(state_dir, exist_ok=True)
    with open(os.path.join(state_dir, "xfer-resume.key"), "wb") as f:
        f.write(secret)
    return hmac.new(secret, KEY_LABEL + f"tcp://127.0.0.1:{port}".encode(), hashlib.sha256).digest()


class Sender(Raw):
    """A raw sender with an optional resume key."""

    @classmethod
    def start(cls, port, files, key=None):
        r = cls.connect(port)
        names = [n.encode() for n, _ in files]
        r.send(hello_key(key), manifest(len(files), sum(s for _, s in files),
                                        sum(len(n) for n in names)),
               *[entry(n, s, KIND_FILE) for n, (_, s) in zip(names, files)])
        t, _ = r.read_frame()
        assert t == HELLO
        return r

    def next_frame(self, *types):
        t, p = self.read_frame()
        assert t in types, (t, p[:200])
        return t, p

    def want(self):
        """ACCEPT (if not read yet) then one WANT: (index, kind, offset, hash)."""
        t, p = self.next_frame(ACCEPT, WANT)
        if t == ACCEPT:
            t, p = self.next_frame(WANT)
        return struct.unpack(">IBQ", p[:13]) + (p[13:],)

    def result(self):
        t, p = self.next_frame(RESULT)
        return struct.unpack(">IB", p[:5]) + (p[5:].decode(),)


def parts(d):
    return sorted(n for n in os.listdir(d) if n.endswith(".part"))


def hub(run, tmp_path, *opts):
    """`sockit serve` with one drop box into tmp/drop; returns (proc, port)."""
    drop = tmp_path / "drop"
    conf = tmp_path / "serve.conf"
    conf.write_text(f"xfer tcp://127.0.0.1:0 --dir={drop} {' '.join(opts)}\n")
    p = run.sockit("serve", "-v", "--config", str(conf))
    line = p.out.read_until(b"\n", LONG) + p.out.read_until(b"\n", LONG)
    m = re.search(rb"^xfer\s+tcp://127\.0\.0\.1:(\d+)$", line, re.M)
    assert m, line
    return p, int(m.group(1))


def dropbox(run, tmp_path, kind, *opts):
    """A drop box of either kind into tmp/drop: (proc, port, drop dir)."""
    drop = tmp_path / "drop"
    drop.mkdir()
    if kind == "hub":
        p, port = hub(run, tmp_path, *opts)
    else:
        p, port = receiver(run, drop, "--keep-open", "--rename", *opts)
    return p, port, drop


# ---------------------------------------------------------------------------
# Finding 2: no oracle
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["receive", "hub"])
def test_existing_name_with_its_size_gets_no_hash(run, tmp_path, kind):
    rx, port, drop = dropbox(run, tmp_path, kind)
    secret = drop / "secret.txt"
    secret.write_bytes(b"PIN=4821\n")
    before = (sha256_file(secret), os.stat(secret).st_mtime_ns)
    r = Sender.start(port, [("secret.txt", 9)])
    index, kind_, offset, h = r.want()
    # Before the fix: WANT HAVE offset=9 with the SHA-256 of b"PIN=4821\n".
    assert (index, kind_, offset, h) == (0, WANT_FULL, 0, bytes(32))
    r.send(file_data(0), b"PIN=0000\n", file_end(0, b"PIN=0000\n"))
    assert r.result() == (0, RES_STORED, "secret (1).txt")
    r.next_frame(DONE)
    r.close()
    assert (sha256_file(secret), os.stat(secret).st_mtime_ns) == before
    assert (drop / "secret (1).txt").read_bytes() == b"PIN=0000\n"
    rx.signal(signal.SIGTERM)
    rx.expect_exit(0, LONG)


def test_existing_name_without_rename_is_refused_unhashed(run, tmp_path):
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "secret.txt").write_bytes(b"PIN=4821\n")
    rx, port = receiver(run, drop, "--keep-open")
    r = Sender.start(port, [("secret.txt", 9)])
    r.next_frame(ACCEPT)
    # Before the fix: WANT CHECK with the stored file's hash. Now its
    # RESULT comes without any WANT.
    index, status, text = r.result()
    assert (index, status) == (0, RES_EXISTS) and "not overwritten" in text
    r.next_frame(DONE)
    r.close()
    assert (drop / "secret.txt").read_bytes() == b"PIN=4821\n"
    assert sorted(os.listdir(drop)) == ["secret.txt"]
    rx.signal(signal.SIGTERM)
    rx.expect_exit(0, LONG)


SIZE, CUT = 1_000_000, 600_000


@pytest.mark.parametrize("kind", ["receive", "hub"])
def test_partial_file_is_resumed_only_by_its_sender(run, tmp_path, kind):
    rx, port, drop = dropbox(run, tmp_path, kind)
    src = tmp_path / "report.bin"
    digest = write_random(src, SIZE)
    content = src.read_bytes()
    vstate = tmp_path / "victim-state"
    key = victim_key(vstate, port)

    # The victim's upload, cut off after CUT bytes (its key in HELLO).
    v = Sender.start(port, [("report.bin", SIZE)], key=key)
    assert v.want()[1:3] == (WANT_FULL, 0)
    v.send(file_data(0), content[:CUT])
    v.close()
    poll_until(lambda: len(parts(drop)) == 1 and os.path.getsize(drop / parts(drop)[0]) == CUT,
               LONG, "the victim's partial file")
    victim_part = drop / parts(drop)[0]
    held = sha256_file(victim_part)

    # A keyless attacker offering the same name and size: no offset, no
    # hash (before the fix: WANT RESUME offset=600000 and the hash of the
    # victim's bytes). Asking to resume anyway is refused.
    a = Sender.start(port, [("report.bin", SIZE)])
    assert a.want() == (0, WANT_FULL, 0, bytes(32))
    a.send(file_data(0, CUT), b"X" * (SIZE - CUT))
    code, text = a.expect_error()
    assert code == 1 and "does not answer WANT" in text, (code, text)
    a.close()

    # An attacker with a key of its own writing from offset 0, cut off: it
    # writes its own partial file, never the victim's.
    b = Sender.start(port, [("report.bin", SIZE)], key=os.urandom(32))
    assert b.want() == (0, WANT_FULL, 0, bytes(32))
    b.send(file_data(0), b"B" * 300_000)
    b.close()
    poll_until(lambda: len(parts(drop)) == 2 and
               all(os.path.getsize(drop / p) in (CUT, 300_000) for p in parts(drop)),
               LONG, "the attacker's own partial file")
    assert sha256_file(victim_part) == held

    # The victim runs its real `sockit send`: it resumes its own bytes.
    tx = sender(run, port, src, args=("--state-dir", str(vstate)))
    tx.expect_exit(0, LONG)
    s = summary(tx)
    assert (s["stored"], s["resumed"], s["moved"]) == (1, 1, SIZE - CUT), s
    assert s["renamed"] == []
    assert sha256_file(drop / "report.bin") == digest
    assert not victim_part.exists()
    assert len(parts(drop)) == 1            # the keyed attacker's, untouched by anyone
    rx.signal(signal.SIGTERM)
    rx.expect_exit(0, LONG)


def test_a_sender_sees_only_its_own_stored_files(run, tmp_path):
    rx, port, drop = dropbox(run, tmp_path, "receive")
    src = tmp_path / "f.bin"
    digest = write_random(src, 300_000)
    mine, other = ("--state-dir", str(tmp_path / "mine")), ("--state-dir", str(tmp_path / "other"))
    runs = []
    for args in (mine, mine, other):
        tx = sender(run, port, src, args=args)
        tx.expect_exit(0, LONG)
        s = summary(tx)
        runs.append((s["stored"], s["identical"], s["moved"], s["renamed"]))
    # The same sender again: recognised (it stored that file), nothing moved.
    # Another sender with the very same bytes learns nothing: a new copy.
    assert runs == [(1, 0, 300_000, []), (0, 1, 0, []),
                    (1, 0, 300_000, [{"name": "f.bin", "stored_as": "f (1).bin"}])], runs
    assert sha256_file(drop / "f.bin") == sha256_file(drop / "f (1).bin") == digest
    rx.signal(signal.SIGTERM)
    rx.expect_exit(0, LONG)


def test_keyless_sender_leaves_no_partial_file(run, tmp_path):
    rx, port, drop = dropbox(run, tmp_path, "receive")
    r = Sender.start(port, [("x.bin", 100_000)])
    assert r.want()[1] == WANT_FULL
    r.send(file_data(0), b"x" * 50_000)
    r.close()
    rx.err.wait_for(rb"connection closed after", LONG)
    # Nobody could resume it: it is removed, not left to fill the disk.
    poll_until(lambda: parts(drop) == [], LONG, "the keyless partial file to go")
    rx.signal(signal.SIGTERM)
    rx.expect_exit(0, LONG)


def test_one_shot_receive_still_resumes_any_partial(run, tmp_path):
    """Not a drop box: the receiver's own directory, resumed as before."""
    out = tmp_path / "out"
    out.mkdir()
    src = tmp_path / "f.bin"
    write_random(src, SIZE)
    (out / ".f.bin.part").write_bytes(src.read_bytes()[:CUT])
    rx, port = receiver(run, out)
    tx = sender(run, port, src, args=("--state-dir", str(tmp_path / "st")))
    tx.expect_exit(0, LONG)
    rx.expect_exit(0, LONG)
    s = summary(tx)
    assert (s["resumed"], s["moved"]) == (1, SIZE - CUT), s
    assert sha256_file(out / "f.bin") == sha256_file(src)


# ---------------------------------------------------------------------------
# Finding 3: nobody holds the drop box
# ---------------------------------------------------------------------------

def test_two_uploads_of_one_name_at_once_are_stored_apart(run, tmp_path):
    rx, port, drop = dropbox(run, tmp_path, "receive")
    one, two = os.urandom(200_000), os.urandom(200_000)
    a = Sender.start(port, [("same.bin", len(one))])
    assert a.want()[1] == WANT_FULL
    # Before the fix b waited in the backlog: no HELLO until a was done.
    b = Sender.start(port, [("same.bin", len(two))])
    assert b.want()[1] == WANT_FULL
    a.send(file_data(0), one[:100_000])
    b.send(file_data(0), two, file_end(0, two))
    got_b = b.result()
    a.send(one[100_000:], file_end(0, one))
    got_a = a.result()
    for r in (a, b):
        r.next_frame(DONE)
        r.close()
    assert got_b == (0, RES_STORED, "")
    assert got_a == (0, RES_STORED, "same (1).bin")
    assert (drop / "same.bin").read_bytes() == two
    assert (drop / "same (1).bin").read_bytes() == one
    rx.signal(signal.SIGTERM)
    rx.expect_exit(0, LONG)


class Dripper:
    """A sender that writes HELLO and a manifest one byte a second."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=LONG)
        self.data = hello_key() + manifest(1, 10, 5) + entry("d.bin", 10)
        self.stop = threading.Event()
        self.sent = 0
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        try:
            for i in range(len(self.data)):
                if self.stop.wait(0 if i == 0 else 1.0):
                    return
                self.s.sendall(self.data[i:i + 1])
                self.sent += 1
        except OSError:
            pass                              # ended by the receiver

    def close(self):
        self.stop.set()
        self.t.join(WAIT)
        self.s.close()


@pytest.mark.parametrize("kind", ["receive", "hub"])
def test_keepalive_only_and_dripping_senders_do_not_hold_it(run, tmp_path, kind):
    window = 2
    rx, port, drop = dropbox(run, tmp_path, kind, "--min-rate=1K", f"--rate-window={window}")
    # A KEEPALIVE-only sender: after its first WANT it only says "still here".
    k = Sender.start(port, [("k.bin", 10)])
    assert k.want()[1] == WANT_FULL
    k.send(frame(KEEPALIVE, b""))
    drip = Dripper(port)
    t0 = time.monotonic()
    # The honest sender, connected after both, finishes with its bytes.
    src = tmp_path / "honest.bin"
    digest = write_random(src, 256 * 1024)
    tx = sender(run, port, src, args=("--state-dir", str(tmp_path / "st")))
    tx.expect_exit(0, 3 * WAIT)
    assert sha256_file(drop / "honest.bin") == digest
    # The KEEPALIVE sender is told why at once (before the fix the
    # KEEPALIVEs kept it alive as long as it liked).
    code, text = k.expect_error()
    assert code == 1 and "KEEPALIVE with no prefix to hash" in text, (code, text)
    k.close()
    rx.err.wait_for(rb"KEEPALIVE with no prefix to hash", WAIT)
    # The dripper is ended after one window (plus the watchdog's tick, at
    # most 1 s); before the fix it held the drop box for as long as it liked.
    rx.err.wait_for(rb"ended: \d+ bytes moved in 2\.0 s, under the minimum of 2\.00 KiB",
                    window + 1 + WAIT)
    assert drip.sent < len(drip.data)
    drip.close()
    took = time.monotonic() - t0
    print(f"dripper ended {took:.1f} s after it connected; window {window} s")
    assert sorted(os.listdir(drop)) == ["honest.bin"]
    rx.signal(signal.SIGTERM)
    rx.expect_exit(0, LONG)


def test_keepalive_while_hashing_is_bounded(run, tmp_path):
    rx, port, drop = dropbox(run, tmp_path, "receive")
    key = os.urandom(32)
    v = Sender.start(port, [("big.bin", SIZE)], key=key)
    assert v.want()[1] == WANT_FULL
    v.send(file_data(0), b"v" * CUT)
    v.close()
    poll_until(lambda: len(parts(drop)) == 1 and os.path.getsize(drop / parts(drop)[0]) == CUT,
               LONG, "the partial file")
    # The same sender again: RESUME at CUT; it "hashes" with KEEPALIVEs.
    r = Sender.start(port, [("big.bin", SIZE)], key=key)
    index, kind, offset, h = r.want()
    assert (kind, offset) == (WANT_RESUME, CUT) and h == hashlib.sha256(b"v" * CUT).digest()
    t0 = time.monotonic()
    code = text = None
    while time.monotonic() - t0 < KEEPALIVE_GRACE + 4 * WAIT:
        r.send(frame(KEEPALIVE, b""))
        r.s.settimeout(1.0)
        try:
            t, p = r.read_frame()
        except socket.timeout:
            continue
        assert t == ERROR, t
        code, text = struct.unpack(">H", p[:2])[0], p[2:].decode()
        break
    took = time.monotonic() - t0
    assert code == 8 and "sent KEEPALIVE for" in text and f"{CUT} bytes" in text, (code, text)
    assert took >= KEEPALIVE_GRACE - 1.0, took      # the allowance was given first
    r.close()
    rx.signal(signal.SIGTERM)
    rx.expect_exit(0, LONG)


@pytest.mark.parametrize("kind", ["receive", "hub"])
def test_max_sessions_waits_and_a_silent_holder_is_ended(run, tmp_path, kind):
    rx, port, drop = dropbox(run, tmp_path, kind, "--max-sessions=1", "--min-rate=1K",
                             "--rate-window=2")
    first = Sender.start(port, [("a.bin", 10)])
    assert first.want()[1] == WANT_FULL
    # The one slot is taken: the next sender waits in the backlog...
    second = Raw.connect(port)
    second.s.settimeout(1.0)
    with pytest.raises(socket.timeout):
        second.read_frame()
    # ...until the silent first one is ended by the rate watchdog (before
    # the fix, any sender could hold the only slot for its idle timeout
    # again and again by trickling bytes).
    second.s.settimeout(LONG)
    t, _ = second.read_frame()
    assert t == HELLO
    rx.err.wait_for(rb"ended: 0 bytes moved in 2\.0 s", WAIT)
    with pytest.raises((EOFError, OSError)):
        first.read_frame()
    first.close()
    second.send(hello_key(), manifest(1, 1, 5), entry("b.bin", 1))
    r = Sender(second.s)
    assert r.want()[1] == WANT_FULL
    r.send(file_data(0), b"b", file_end(0, b"b"))
    assert r.result() == (0, RES_STORED, "")
    r.close()
    assert sorted(os.listdir(drop)) == ["b.bin"]
    rx.signal(signal.SIGTERM)
    rx.expect_exit(0, LONG)


@pytest.mark.parametrize("kind", ["receive", "hub"])
def test_more_than_max_per_address_are_told_busy(run, tmp_path, kind):
    rx, port, drop = dropbox(run, tmp_path, kind, "--max-per-address=1")
    first = Sender.start(port, [("a.bin", 1)])
    assert first.want()[1] == WANT_FULL
    second = Raw.connect(port)
    t, p = second.read_frame()
    assert t == HELLO
    code, text = second.expect_error()
    assert code == 4 and "busy: 1 transfers from your address already" in text, (code, text)
    second.close()
    rx.err.wait_for(rb"refused: .*(--max-per-address)", WAIT)
    # A real sender is told the same, and says it.
    f = tmp_path / "b.bin"
    f.write_bytes(b"b")
    tx = sender(run, port, f, args=("--state-dir", str(tmp_path / "st")))
    tx.expect_exit(1, LONG)
    assert "busy: 1 transfers from your address already" in tx.err.text()
    first.send(file_data(0), b"a", file_end(0, b"a"))
    assert first.result() == (0, RES_STORED, "")
    first.close()
    rx.signal(signal.SIGTERM)
    rx.expect_exit(0, LONG)
