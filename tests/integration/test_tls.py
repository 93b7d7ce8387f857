"""TLS: sockit against openssl s_server and s_client, a test CA made here
with the openssl CLI (good, expired, wrong-host and untrusted certificates),
pinning, mutual TLS, the relay terminating and originating TLS, a client
stalled mid-handshake, and the errors a user reads."""

import os
import socket
import subprocess
import threading
import time

import pytest

from conftest import WAIT, recv_to_eof, tcp_connect


def sh(*argv, cwd=None):
    r = subprocess.run(argv, capture_output=True, cwd=cwd, timeout=30)
    assert r.returncode == 0, (argv, r.stderr)
    return r.stdout


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA and certificates signed (or not) by it."""
    d = tmp_path_factory.mktemp("pki")
    sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
       "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "30", "-subj", "/CN=sockit test CA",
       "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=keyCertSign,cRLSign",
       cwd=d)
    (d / "index.txt").write_text("")
    (d / "serial").write_text("1000\n")
    (d / "ca.cnf").write_text(f"""
[ca]
default_ca = test
[test]
dir = {d}
database = $dir/index.txt
serial = $dir/serial
new_certs_dir = $dir
certificate = $dir/ca.pem
private_key = $dir/ca.key
default_md = sha256
policy = anything
unique_subject = no
copy_extensions = copy
[anything]
commonName = supplied
""")

    def issue(name, cn, san, start=None, end=None, days="30"):
        sh("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
           "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}",
           "-addext", f"subjectAltName={san}", cwd=d)
        dates = ["-startdate", start, "-enddate", end] if start else ["-days", days]
        sh("openssl", "ca", "-batch", "-config", "ca.cnf", "-in", f"{name}.csr",
           "-out", f"{name}.pem", "-notext", *dates, cwd=d)

    issue("good", "localhost", "DNS:localhost,IP:127.0.0.1,IP:::1")
    issue("expired", "localhost", "DNS:localhost,IP:127.0.0.1", "20200101000000Z",
          "20200102000000Z")
    issue("wronghost", "other.example", "DNS:other.example")
    issue("client", "sockit client", "DNS:client.invalid")
    sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
       "-nodes", "-keyout", "untrusted.key", "-out", "untrusted.pem", "-days", "30",
       "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", cwd=d)
    return d


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def s_server(run, pki, name, *extra):
    """openssl s_server on a free port with certificate `name`, in -rev
    mode (each line comes back reversed)."""
    port = free_port()
    p = run.spawn(["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-cert",
                   str(pki / f"{name}.pem"), "-key", str(pki / f"{name}.key"), "-rev", "-quiet",
                   *extra], name="s_server")
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return p, port
        time.sleep(0.02)
    raise AssertionError("s_server did not start")


def connect(run, port, *opts, host="localhost", data=b"hello tls\n"):
    return run.run("connect", *opts, f"tls://{host}:{port}", input=data, timeout=WAIT + 5)


# ---- sockit connect against openssl s_server -----------------------------------------

def test_connect_verifies_against_ca(run, pki):
    _, port = s_server(run, pki, "good")
    code, out, err = connect(run, port, "--ca", str(pki / "ca.pem"), "-v")
    assert code == 0, err
    assert out == b"slt olleh\n"
    assert "TLSv1.3" in err


def test_connect_by_ip_checks_ip_san(run, pki):
    _, port = s_server(run, pki, "good")
    code, out, err = connect(run, port, "--ca", str(pki / "ca.pem"), host="127.0.0.1")
    assert code == 0 and out == b"slt olleh\n", err


@pytest.mark.parametrize("cert,msg", [
    ("expired", "certificate has expired"),
    ("wronghost", "wrong host name: the certificate is not for localhost"),
    ("untrusted", "unknown issuer"),
])
def test_connect_refuses_bad_certificates(run, pki, cert, msg):
    _, port = s_server(run, pki, cert)
    code, out, err = connect(run, port, "--ca", str(pki / "ca.pem"))
    assert code == 1 and out == b"", err
    assert f"sockit: tls tls://localhost:{port}: {msg}" in err, err


def test_default_trust_store_refuses_a_private_ca(run, pki):
    _, port = s_server(run, pki, "good")
    code, out, err = connect(run, port)
    assert code == 1 and "unknown issuer" in err, err


def test_insecure_says_so_and_connects(run, pki):
    _, port = s_server(run, pki, "untrusted")
    code, out, err = connect(run, port, "--insecure")
    assert code == 0 and out == b"slt olleh\n", err
    assert "WARNING: --insecure" in err


def test_not_tls_at_all_is_a_protocol_version_error(run):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()

    def serve():
        c, _ = srv.accept()
        c.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")
        time.sleep(0.2)
        c.close()
    threading.Thread(target=serve, daemon=True).start()
    code, out, err = connect(run, srv.getsockname()[1], "--insecure")
    assert code == 1 and "protocol version" in err, err
    srv.close()


# ---- sockit listen against openssl s_client --------------------------------------------

def test_listen_with_certificate_and_s_client(run, pki):
    sk = run.sockit("listen", "--cert", str(pki / "good.pem"), "--key", str(pki / "good.key"),
                    "tls://127.0.0.1:0")
    port = sk.port()
    sk.write(b"from sockit\n")
    c = run.spawn(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile",
                   str(pki / "ca.pem"), "-verify_return_error", "-brief", "-servername",
                   "localhost"], name="s_client")
    c.out.wait_for(rb"from sockit\n")
    c.write(b"from s_client\n")
    sk.out.expect(b"from s_client\n")


def test_self_signed_pin_match_and_mismatch(run, tmp_path):
    state = tmp_path / "state"
    sk = run.sockit("listen", "--self-signed", "--state-dir", str(state), "tls://127.0.0.1:0")
    m = sk.err.wait_for(rb"self-signed certificate (sha256:[0-9a-f]{64}) \(new\)")
    pin = m.group(1).decode()
    assert (state / "tls-key.pem").stat().st_mode & 0o077 == 0   # the key is private
    port = sk.port()
    code, out, err = connect(run, port, "--pin", "sha256:" + "00" * 32, host="127.0.0.1")
    assert code == 1 and "fingerprint mismatch: the server presented " + pin in err, err
    sk.wait()  # its one connection failed
    sk2 = run.sockit("listen", "--self-signed", "--state-dir", str(state), "tls://127.0.0.1:0")
    sk2.err.wait_for(rb"self-signed certificate " + pin.encode() + rb" \(reused\)")
    sk2.write(b"pinned\n")
    code, out, err = connect(run, sk2.port(), "--pin", pin.upper().replace("SHA256", "sha256"),
                             host="127.0.0.1")
    assert code == 0 and out == b"pinned\n", err
    sk2.out.expect(b"hello tls\n")


def test_mutual_tls(run, pki):
    common = ["--cert", str(pki / "good.pem"), "--key", str(pki / "good.key"),
              "--client-ca", str(pki / "ca.pem"), "tls://127.0.0.1:0"]
    sk = run.sockit("listen", *common)
    code, out, err = connect(run, sk.port(), "--ca", str(pki / "ca.pem"))
    assert code == 1, err
    sk.wait()
    assert "the peer did not present a client certificate, which is required" in sk.err.text()
    sk2 = run.sockit("listen", *common)
    sk2.write(b"welcome\n")
    code, out, err = connect(run, sk2.port(), "--ca", str(pki / "ca.pem"), "--cert",
                             str(pki / "client.pem"), "--key", str(pki / "client.key"))
    assert code == 0 and out == b"welcome\n", err


# ---- the relay: terminate and originate -------------------------------------------------

def test_relay_terminates_and_originates_tls(run, pki):
    echo = run.sockit("serve", "echo", "tcp://127.0.0.1:0")
    eport = int(echo.out.wait_for(rb"^echo +tcp://127\.0\.0\.1:(\d+)$").group(1))
    # tls in, plain out
    front = run.sockit("relay", "--cert", str(pki / "good.pem"), "--key", str(pki / "good.key"),
                       "tls://127.0.0.1:0", f"tcp://127.0.0.1:{eport}", name="relay front")
    fport = front.port()
    code, out, err = connect(run, fport, "--ca", str(pki / "ca.pem"), data=b"through tls\n")
    assert code == 0 and out == b"through tls\n", err
    # plain in, tls out (to the first relay): a plain client reaches the echo over TLS
    back = run.sockit("relay", "--ca", str(pki / "ca.pem"), "tcp://127.0.0.1:0",
                      f"tls://localhost:{fport}", name="relay back")
    with tcp_connect("127.0.0.1", back.port()) as s:
        s.sendall(b"plain to tls\n")
        s.shutdown(socket.SHUT_WR)
        assert recv_to_eof(s) == b"plain to tls\n"
    # originating to a target with the wrong certificate fails cleanly
    bad = run.sockit("relay", "tcp://127.0.0.1:0", f"tls://localhost:{fport}", name="relay bad")
    with tcp_connect("127.0.0.1", bad.port()) as s:
        assert recv_to_eof(s) == b""
    bad.err.wait_for(rb"tls tls://localhost:\d+: unknown issuer")


def test_stalled_handshake_does_not_hold_up_others(run, pki):
    echo = run.sockit("serve", "echo", "tcp://127.0.0.1:0")
    eport = int(echo.out.wait_for(rb"^echo +tcp://127\.0\.0\.1:(\d+)$").group(1))
    front = run.sockit("relay", "--tls-timeout", "1", "--cert", str(pki / "good.pem"), "--key",
                       str(pki / "good.key"), "tls://127.0.0.1:0", f"tcp://127.0.0.1:{eport}")
    port = front.port()
    stalled = [tcp_connect("127.0.0.1", port) for _ in range(5)]
    stalled[0].sendall(b"\x16\x03\x01")          # half a ClientHello, then nothing
    start = time.monotonic()
    code, out, err = connect(run, port, "--ca", str(pki / "ca.pem"), data=b"not blocked\n")
    assert code == 0 and out == b"not blocked\n", err
    assert time.monotonic() - start < 1.0
    for s in stalled:                           # the deadline closes them
        assert recv_to_eof(s, timeout=WAIT) == b""
        s.close()
    front.err.wait_for(rb"tls: TLS handshake timed out; client closed")


@pytest.mark.parametrize("argv,msg", [
    (["connect", "--pin", "sha256:00", "tls://127.0.0.1:1"], "bad pin"),
    (["connect", "--ca", "/nonexistent", "tcp://127.0.0.1:1"], "TLS options need a tls://"),
    (["listen", "tls://127.0.0.1:0"], "needs --cert FILE --key FILE, or --self-signed"),
    (["connect", "--pin", "sha256:" + "00" * 32, "--insecure", "tls://127.0.0.1:1"],
     "contradict"),
])
def test_bad_tls_usage(run, argv, msg):
    code, out, err = run.run(*argv)
    assert code in (1, 2) and msg in err, err


def test_keep_open_tls_many_clients_and_a_stalled_one(run, pki):
    sk = run.sockit("listen", "-k", "--tls-timeout", "1", "--cert", str(pki / "good.pem"),
                    "--key", str(pki / "good.key"), "tls://127.0.0.1:0")
    port = sk.port()
    stalled = tcp_connect("127.0.0.1", port)      # never says hello
    clients = [run.spawn([run.bin, "connect", "--ca", str(pki / "ca.pem"),
                          f"tls://localhost:{port}"], name=f"client{i}") for i in range(2)]
    for i, c in enumerate(clients):
        c.write(b"from client %d\n" % i)
    got = sk.out.read_exact(len(b"from client 0\n") * 2)
    assert sorted(got.splitlines()) == [b"from client 0", b"from client 1"]
    sk.write(b"to everyone\n")
    for c in clients:
        c.out.expect(b"to everyone\n")
    assert recv_to_eof(stalled, timeout=WAIT) == b""   # closed at --tls-timeout
    sk.err.wait_for(rb"tls 127\.0\.0\.1:\d+: TLS handshake timed out")
    stalled.close()
