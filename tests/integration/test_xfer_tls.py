"""`sockit send` / `sockit receive` over TLS (tls:// on either side).

Whichever side listens is the TLS server (--self-signed or --cert/--key)
and prints its pin; the side that connects verifies it (--pin, --ca). A
set of files goes both ways round and arrives byte-identical (SHA-256 of
every file compared); a CA-signed certificate works with --ca; a wrong
pin, an unknown issuer and a wrong host name are refused with tls.c's
words and nothing is written; kill -9 of the receiver mid-file, then the
same command again, resumes over TLS; a file cut short while it is sent
is caught (the TLS path reads the file itself, no sendfile); plain
against TLS fails at once with a message saying what to do, either way
round; a silent client meets --tls-timeout; a keep-open receiver and the
hub's drop box survive bad handshakes. Real peers: `openssl s_server`
and `s_client` as TLS pipes carrying the plain protocol to and from a
plain sockit.

Every wait is bounded; sizes shrink under the sanitizer build.
"""

import os
import re
import signal
import socket
import subprocess
import time

import pytest

from conftest import WAIT, poll_until
from test_xfer import ASAN, LONG, MIB, MID, proxy_bin, summary, tree, write_random  # noqa: F401
from faults.chaos import ChaosProxy
from faults.helpers import sha256_file

PIN_RE = rb"clients connect with --pin (sha256:[0-9a-f]{64})"
NO_SUCH_PIN = "sha256:" + "00" * 32


def sh(*argv, cwd=None):
    r = subprocess.run(argv, capture_output=True, cwd=cwd, timeout=30)
    assert r.returncode == 0, (argv, r.stderr)
    return r.stdout


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A test CA, a certificate it signed for 127.0.0.1/localhost, and one
    it signed for another name."""
    d = tmp_path_factory.mktemp("xfer-pki")
    sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
       "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "30",
       "-subj", "/CN=sockit xfer test CA", "-addext", "basicConstraints=critical,CA:TRUE",
       "-addext", "keyUsage=keyCertSign,cRLSign", cwd=d)
    for name, san in (("good", "DNS:localhost,IP:127.0.0.1,IP:::1"),
                      ("wronghost", "DNS:other.example")):
        sh("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
           "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}",
           "-addext", f"subjectAltName={san}", cwd=d)
        sh("openssl", "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
           "-CAcreateserial", "-days", "30", "-copy_extensions", "copy", "-out", f"{name}.pem",
           cwd=d)
    return d


def payload(tmp_path):
    """A directory of files for a round trip: one big enough for the
    streaming path (over XFER_SMALL_FILE), small ones, an empty file and
    directory, and unicode names."""
    src = tmp_path / "payload"
    (src / "sub" / "deeper").mkdir(parents=True)
    (src / "empty-dir").mkdir()
    write_random(src / "big.bin", (3 if ASAN else 9) * MIB + 4321)
    write_random(src / "sub" / "mid.bin", 300 * 1024)
    for i in range(20):
        (src / "sub" / "deeper" / f"small-{i}.txt").write_bytes(os.urandom(i * 211))
    (src / "sub" / "zero").write_bytes(b"")
    (src / "日本語 été.txt").write_bytes("héllo wörld\n".encode())
    return src


def tls_receiver(run, out, state, *args):
    """`sockit receive --yes --json --self-signed tls://127.0.0.1:0`:
    returns (proc, port, its pin as printed)."""
    p = run.sockit("receive", "--yes", "--json", "--dir", str(out), "--self-signed",
                   "--state-dir", str(state), *args, "tls://127.0.0.1:0")
    port = p.port(LONG)
    pin = p.err.wait_for(PIN_RE, LONG).group(1).decode()
    return p, port, pin


def tls_sender(run, port, *paths, args=()):
    return run.sockit("send", "--json", *args, f"tls://127.0.0.1:{port}",
                      *[str(x) for x in paths])


def nothing_written(out):
    return not out.exists() or os.listdir(out) == []


def tcp_listening(port):
    """True once something listens on 127.0.0.1:port (/proc/net/tcp: a
    probe connection would use up a -naccept 1 server)."""
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if int(local.split(":")[1], 16) == port and state == "0A":
                return True
    return False


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------
# Round trips
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("listener", ["receiver", "sender"])
def test_files_over_tls_with_the_printed_pin(run, tmp_path, listener):
    src = payload(tmp_path)
    out, state = tmp_path / "out", tmp_path / "state"
    if listener == "receiver":
        rx, port, pin = tls_receiver(run, out, state, "-v")
        tx = tls_sender(run, port, src, args=("--pin", pin))
    else:
        pf = tmp_path / "port"
        tx = run.sockit("send", "--listen", "--json", "--self-signed", "--state-dir", str(state),
                        "--port-file", str(pf), "tls://127.0.0.1:0", str(src))
        pin = tx.err.wait_for(PIN_RE, LONG).group(1).decode()
        poll_until(lambda: pf.exists(), LONG, "the port file")
        rx = run.sockit("receive", "--connect", "-v", "--yes", "--json", "--dir", str(out),
                        "--pin", pin, f"tls://127.0.0.1:{int(pf.read_text())}")
    tx.expect_exit(0, LONG)
    rx.expect_exit(0, LONG)
    assert tree(out / "payload") == tree(src)            # every file's SHA-256, mode, mtime
    r, s = summary(rx), summary(tx)
    for j in (r, s):
        assert (j["status"], j["files"], j["stored"], j["failed"]) == ("ok", 24, 24, 0)
        assert j["moved"] == j["bytes"]
    assert re.search(r"tls \S+: TLSv1\.3 \S+, peer certificate ", rx.err.text()), rx.err.text()
    assert not list(out.rglob("*.part"))


def test_ca_signed_certificate_with_ca(run, pki, tmp_path):
    src = tmp_path / "report.bin"
    digest = write_random(src, 2 * MIB + 7)
    out = tmp_path / "out"
    rx = run.sockit("receive", "--yes", "--json", "--dir", str(out), "--cert",
                    str(pki / "good.pem"), "--key", str(pki / "good.key"), "tls://127.0.0.1:0")
    port = rx.port(LONG)
    assert re.search(r"tls tls://127\.0\.0\.1:0: certificate sha256:[0-9a-f]{64}", rx.err.text())
    tx = tls_sender(run, port, src, args=("--ca", str(pki / "ca.pem")))
    tx.expect_exit(0, LONG)
    rx.expect_exit(0, LONG)
    assert sha256_file(out / "report.bin") == digest
    assert summary(tx)["stored"] == 1


# ---------------------------------------------------------------------------
# Refusals: nothing is written
# ---------------------------------------------------------------------------

def test_wrong_pin_is_refused_and_nothing_written(run, tmp_path):
    src = tmp_path / "secret.txt"
    src.write_bytes(b"not for the wrong ears\n")
    out = tmp_path / "out"
    rx, port, pin = tls_receiver(run, out, tmp_path / "state")
    tx = tls_sender(run, port, src, args=("--pin", NO_SUCH_PIN))
    tx.expect_exit(1, LONG)
    rx.expect_exit(1, LONG)
    assert (f"sockit: tls tls://127.0.0.1:{port}: fingerprint mismatch: the server presented "
            f"{pin}, which is not the pinned one") in tx.err.text()
    assert f"if it does not trust this certificate, it needs --pin {pin}" in rx.err.text()
    assert nothing_written(out)


@pytest.mark.parametrize("cert,sender_args,msg", [
    ("self-signed", (), "unknown issuer: the certificate is not signed by a trusted CA (give the "
                        "CA with --ca FILE, or trust this one certificate with --pin)"),
    ("wronghost", ("--ca", "{pki}/ca.pem"),
     "wrong host name: the certificate is not for 127.0.0.1"),
])
def test_untrusted_certificate_is_refused(run, pki, tmp_path, cert, sender_args, msg):
    src = tmp_path / "f.txt"
    src.write_bytes(b"x\n")
    out = tmp_path / "out"
    if cert == "self-signed":
        rx, port, _ = tls_receiver(run, out, tmp_path / "state")
    else:
        rx = run.sockit("receive", "--yes", "--dir", str(out), "--cert", str(pki / f"{cert}.pem"),
                        "--key", str(pki / f"{cert}.key"), "tls://127.0.0.1:0")
        port = rx.port(LONG)
    tx = tls_sender(run, port, src, args=[a.format(pki=pki) for a in sender_args])
    tx.expect_exit(1, LONG)
    rx.expect_exit(1, LONG)
    assert f"sockit: tls tls://127.0.0.1:{port}: {msg}" in tx.err.text()
    assert "the peer ended the handshake" in rx.err.text()
    assert nothing_written(out)


# ---------------------------------------------------------------------------
# Resume, and a file cut short while sent
# ---------------------------------------------------------------------------

def test_kill9_receiver_mid_file_then_resume_over_tls(run, proxy_bin, tmp_path):
    src = tmp_path / "big.bin"
    digest = write_random(src, MID)
    out, state = tmp_path / "out", tmp_path / "state"
    part = out / ".big.bin.part"
    rx, port, pin = tls_receiver(run, out, state)
    # The proxy holds the encrypted stream at half a file: the kill lands there.
    with ChaosProxy(proxy_bin, f"127.0.0.1:{port}", up_stall_after=MID // 2,
                    up_stall_ms=2000) as px:
        tx = tls_sender(run, px.port, src, args=("--pin", pin))
        poll_until(lambda: "stalling" in px.log, LONG, "the stream to reach half")
        poll_until(lambda: part.exists() and part.stat().st_size >= MID // 2 - 2 * MIB, LONG,
                   "the partial file to reach half")
        rx.signal(signal.SIGKILL)
        tx.expect_exit(1, LONG)
    held = part.stat().st_size
    assert MIB < held < MID and not (out / "big.bin").exists()
    assert tx.err.text().strip(), "the sender said nothing when its receiver died"
    # The same commands again (the kept certificate: the same pin).
    rx2, port2, pin2 = tls_receiver(run, out, state)
    assert pin2 == pin
    tx2 = tls_sender(run, port2, src, args=("--pin", pin))
    tx2.expect_exit(0, LONG)
    rx2.expect_exit(0, LONG)
    assert sha256_file(out / "big.bin") == digest
    s, r = summary(tx2), summary(rx2)
    assert s["moved"] == MID - held and s["resumed"] == 1 and r["resumed"] == 1
    assert s["moved"] < 0.6 * MID
    assert not part.exists()


def test_file_cut_short_while_sent_over_tls(run, proxy_bin, tmp_path):
    src = tmp_path / "live.bin"
    write_random(src, MID)
    out = tmp_path / "out"
    part = out / ".live.bin.part"
    rx, port, pin = tls_receiver(run, out, tmp_path / "state")
    with ChaosProxy(proxy_bin, f"127.0.0.1:{port}", up_stall_after=4 * MIB,
                    up_stall_ms=1500) as px:
        tx = tls_sender(run, px.port, src, args=("--pin", pin))
        poll_until(lambda: part.exists() and part.stat().st_size >= 2 * MIB, LONG,
                   "data to arrive")
        os.truncate(src, MIB)
        tx.expect_exit(1, LONG)
        rx.expect_exit(1, LONG)
    s, r = summary(tx), summary(rx)
    assert s["failures"][0]["status"] == "changed" and r["failures"][0]["status"] == "changed"
    assert "changed while it was being sent" in tx.err.text()
    assert not (out / "live.bin").exists() and not part.exists()


# ---------------------------------------------------------------------------
# Plain against TLS, a silent client, usage
# ---------------------------------------------------------------------------

TLS_ONLY = "this side speaks TLS only: connect to its tls:// endpoint (trusting it with --pin or --ca)"
PLAIN_PEER = "the peer speaks plain SKXF, not TLS: it needs a tls:// endpoint too"


@pytest.mark.parametrize("case", ["plain-sender", "plain-receiver", "tls-sender-plain-receiver"])
def test_plain_against_tls_fails_at_once_with_advice(run, tmp_path, case):
    src = tmp_path / "f.txt"
    src.write_bytes(b"x\n")
    out, state = tmp_path / "out", tmp_path / "state"
    t0 = time.monotonic()
    if case == "plain-sender":           # sockit send tcp:// to a TLS receiver
        rx, port, _ = tls_receiver(run, out, state)
        tx = run.sockit("send", f"tcp://127.0.0.1:{port}", str(src))
        tx_msg, rx_msg = f"sockit: tcp://127.0.0.1:{port}: {TLS_ONLY}", PLAIN_PEER
    elif case == "plain-receiver":       # receive --connect tcp:// to a TLS send --listen
        pf = tmp_path / "port"
        tx = run.sockit("send", "--listen", "--self-signed", "--state-dir", str(state),
                        "--port-file", str(pf), "tls://127.0.0.1:0", str(src))
        poll_until(lambda: pf.exists(), LONG, "the port file")
        port = int(pf.read_text())
        rx = run.sockit("receive", "--connect", "--yes", "--dir", str(out),
                        f"tcp://127.0.0.1:{port}")
        tx_msg, rx_msg = PLAIN_PEER, f"sockit: tcp://127.0.0.1:{port}: {TLS_ONLY}"
    else:                                # sockit send tls:// to a plain receiver
        rx = run.sockit("receive", "--yes", "--dir", str(out), "tcp://127.0.0.1:0")
        port = rx.port(LONG)
        tx = tls_sender(run, port, src, args=("--pin", NO_SUCH_PIN))
        tx_msg = (f"sockit: tls tls://127.0.0.1:{port}: protocol version: the peer does not "
                  "speak TLS 1.2 or later (or not TLS at all); if the other side is a sockit "
                  "on a tcp:// endpoint, give it a tls:// one")
        rx_msg = "speaks TLS, not plain SKXF: give this side a tls:// endpoint too"
    tx.expect_exit(1, LONG)
    rx.expect_exit(1, LONG)
    assert tx_msg in tx.err.text()
    assert rx_msg in rx.err.text()
    assert "Connection reset" not in tx.err.text() + rx.err.text()
    assert time.monotonic() - t0 < 4 + WAIT      # no side waits for an idle timeout
    assert nothing_written(out)


def test_silent_client_meets_the_tls_timeout(run, tmp_path):
    rx, port, _ = tls_receiver(run, tmp_path / "out", tmp_path / "state", "--tls-timeout", "1")
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as s:
        t0 = time.monotonic()
        rx.expect_exit(1, WAIT + 2)
        assert time.monotonic() - t0 < 1 + WAIT
        assert re.search(r"sockit: tls 127\.0\.0\.1:\d+: TLS handshake timed out",
                         rx.err.text()), rx.err.text()
        s.settimeout(WAIT)
        assert s.recv(100) == b""


@pytest.mark.parametrize("argv,msg", [
    (["send", "--pin", NO_SUCH_PIN, "tcp://127.0.0.1:9", "F"], "TLS options need a tls:// endpoint"),
    (["receive", "--self-signed", "tcp://127.0.0.1:0"], "TLS options need a tls:// endpoint"),
    (["receive", "--pin", NO_SUCH_PIN, "tls://127.0.0.1:0"], "--pin is for the side that connects"),
    (["send", "--pin", NO_SUCH_PIN, "--insecure", "tls://127.0.0.1:9", "F"],
     "--pin and --insecure contradict each other"),
    (["send", "--tls-timeout", "soon", "tls://127.0.0.1:9", "F"], "bad --tls-timeout 'soon'"),
])
def test_tls_usage_errors(run, tmp_path, argv, msg):
    f = tmp_path / "f"
    f.write_bytes(b"x")
    argv = [str(f) if a == "F" else a for a in argv]
    code, out, err = run.run(*argv, "--dir" if argv[0] == "receive" else "--json",
                             *([str(tmp_path / "out")] if argv[0] == "receive" else []))
    assert code == 2, err
    assert msg in err


# ---------------------------------------------------------------------------
# Drop boxes
# ---------------------------------------------------------------------------

def test_keep_open_tls_receiver_survives_bad_handshakes(run, tmp_path):
    out = tmp_path / "drop"
    rx, port, pin = tls_receiver(run, out, tmp_path / "state", "--keep-open", "--rename")
    f = tmp_path / "note.txt"
    f.write_bytes(b"hello over tls\n")
    bad = tls_sender(run, port, f, args=("--pin", NO_SUCH_PIN))
    bad.expect_exit(1, LONG)
    plain = run.sockit("send", f"tcp://127.0.0.1:{port}", str(f))
    plain.expect_exit(1, LONG)
    assert TLS_ONLY in plain.err.text()
    good = tls_sender(run, port, f, args=("--pin", pin))
    good.expect_exit(0, LONG)
    assert os.listdir(out) == ["note.txt"]
    assert (out / "note.txt").read_bytes() == b"hello over tls\n"
    assert rx.alive()
    rx.signal(signal.SIGTERM)
    rx.expect_exit(0, WAIT)


def test_hub_drop_box_over_tls(run, proxy_bin, tmp_path):
    drop, state = tmp_path / "dropbox", tmp_path / "state"
    conf = tmp_path / "serve.conf"
    conf.write_text(f"xfer tls://127.0.0.1:0 --dir={drop}\necho tcp://127.0.0.1:0\n")
    hub = run.sockit("serve", "-v", "--self-signed", "--state-dir", str(state), "--tls-timeout",
                     "2", "--config", str(conf))
    line = hub.out.read_until(b"\n", LONG) if hub.out.wait_contains(b"\n", LONG) else b""
    if not line and hub.err.wait_contains(b"drop box does not speak TLS yet", WAIT):
        pytest.skip("this serve.c does not hand its TLS context to the drop box yet "
                    "(serve_xfer_use_tls)")
    table = line + hub.out.read_until(b"\n") + hub.out.read_until(b"\n")
    ports = dict(re.findall(rb"^(\w+)\s+(?:tcp|tls)://127\.0\.0\.1:(\d+)$", table, re.M))
    assert re.search(rb"^xfer\s+tls://", table, re.M), table
    port = int(ports[b"xfer"])
    pin = hub.err.wait_for(PIN_RE, LONG).group(1).decode()
    src = payload(tmp_path)
    tx = tls_sender(run, port, src, args=("--pin", pin))
    tx.expect_exit(0, LONG)
    assert tree(drop / "payload") == tree(src)
    hub.err.wait_for(rb"xfer: 127\.0\.0\.1:\d+: 24 files, .* into .*: 24 stored", LONG)
    plain = run.sockit("send", f"tcp://127.0.0.1:{port}", str(src / "sub" / "zero"))
    plain.expect_exit(1, LONG)
    assert TLS_ONLY in plain.err.text()
    hub.err.wait_for(rb"xfer: 127\.0\.0\.1:\d+: tls: " + re.escape(PLAIN_PEER.encode()), LONG)
    # SIGTERM with a TLS transfer held mid-file: cut at the end of the grace
    # period (the drop box's stop timer), its partial file kept.
    big = tmp_path / "held.bin"
    write_random(big, 16 * MIB)
    with ChaosProxy(proxy_bin, f"127.0.0.1:{port}", up_stall_after=4 * MIB,
                    up_stall_ms=60000) as px:
        held = tls_sender(run, px.port, big, args=("--pin", pin))
        poll_until(lambda: "stalling" in px.log, LONG, "the stream to stall")
        poll_until(lambda: any(drop.glob(".*.part")), LONG, "the partial file")
        t0 = time.monotonic()
        hub.signal(signal.SIGTERM)
        hub.expect_exit(0, LONG)
        assert time.monotonic() - t0 < 2 + WAIT          # the default grace, 2 s
        held.signal(signal.SIGKILL)
    hub.err.wait_for(rb"xfer: 127\.0\.0\.1:\d+: 'held\.bin': interrupted after .* kept for a "
                     rb"resume", LONG)
    assert any(drop.glob(".*.part")) and not (drop / "held.bin").exists()


# ---------------------------------------------------------------------------
# Real peers: openssl as a TLS pipe for the plain protocol
# ---------------------------------------------------------------------------

class Piped:
    """Two programs with each one's standard output piped into the
    other's standard input: a TLS pipe (openssl) spliced to a plain
    `sockit connect`. Standard error goes to files, read for messages.
    Both are killed (by pid) when the block ends, if still running."""

    def __init__(self, tmp_path, argv_a, argv_b):
        a_in, b_out = os.pipe()
        b_in, a_out = os.pipe()
        self.logs = [open(tmp_path / f"pipe-{i}.err", "w+b") for i in range(2)]
        self.procs = []
        for argv, rfd, wfd, log in ((argv_a, a_in, a_out, self.logs[0]),
                                    (argv_b, b_in, b_out, self.logs[1])):
            self.procs.append(subprocess.Popen([str(x) for x in argv], stdin=rfd, stdout=wfd,
                                               stderr=log))
        for fd in (a_in, b_out, b_in, a_out):
            os.close(fd)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait(WAIT)
        for f in self.logs:
            f.close()

    def wait(self, timeout):
        deadline = time.monotonic() + timeout
        for p in self.procs:
            p.wait(max(0.1, deadline - time.monotonic()))
        return [p.returncode for p in self.procs]

    def stderr(self):
        text = b""
        for f in self.logs:
            f.seek(0)
            text += f.read()
        return text.decode("utf-8", "replace")


def test_send_over_tls_to_openssl_s_server_piped_to_plain_receive(run, pki, tmp_path):
    """sockit send tls:// -> openssl s_server, its plain side piped both
    ways to `sockit connect` -> a plain sockit receive."""
    src = payload(tmp_path)
    out = tmp_path / "out"
    rx = run.sockit("receive", "--yes", "--json", "--dir", str(out), "tcp://127.0.0.1:0")
    rport = rx.port(LONG)
    port = free_port()
    with Piped(tmp_path,
               ["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-naccept", "1", "-quiet",
                "-cert", pki / "good.pem", "-key", pki / "good.key"],
               [run.bin, "connect", f"tcp://127.0.0.1:{rport}"]) as pipe:
        poll_until(lambda: tcp_listening(port), LONG, "s_server to listen")
        tx = tls_sender(run, port, src, args=("--ca", str(pki / "ca.pem")))
        tx.expect_exit(0, LONG)
        rx.expect_exit(0, LONG)
        assert pipe.wait(LONG) == [0, 0], pipe.stderr()
    assert tree(out / "payload") == tree(src)
    assert summary(tx)["stored"] == summary(rx)["stored"] == 24


def test_plain_send_piped_to_openssl_s_client_to_tls_receive(run, pki, tmp_path):
    """A plain sockit send --listen <- `sockit connect`, piped both ways to
    openssl s_client -> sockit receive on tls:// with a CA-signed
    certificate."""
    src = payload(tmp_path)
    out = tmp_path / "out"
    rx = run.sockit("receive", "--yes", "--json", "--dir", str(out), "--cert",
                    str(pki / "good.pem"), "--key", str(pki / "good.key"), "tls://127.0.0.1:0")
    rport = rx.port(LONG)
    pf = tmp_path / "port"
    tx = run.sockit("send", "--listen", "--json", "--port-file", str(pf), "tcp://127.0.0.1:0",
                    str(src))
    poll_until(lambda: pf.exists(), LONG, "the port file")
    with Piped(tmp_path,
               ["openssl", "s_client", "-connect", f"127.0.0.1:{rport}", "-quiet", "-no_ign_eof", "-nocommands",
                "-CAfile", pki / "ca.pem", "-verify_return_error", "-verify_ip", "127.0.0.1"],
               [run.bin, "connect", f"tcp://127.0.0.1:{int(pf.read_text())}"]) as pipe:
        tx.expect_exit(0, LONG)
        rx.expect_exit(0, LONG)
        assert pipe.wait(LONG) == [0, 0], pipe.stderr()
    assert tree(out / "payload") == tree(src)
    assert summary(tx)["stored"] == summary(rx)["stored"] == 24
