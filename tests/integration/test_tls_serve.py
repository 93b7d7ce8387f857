"""TLS on `sockit serve` and `sockit chat serve`: the chat over TLS end to
end (openssl s_client, `sockit connect` and `sockit chat` as clients), hub
services over TLS with a self-signed certificate and --pin, a stalled
handshake that holds up nobody and is closed at --tls-timeout, plain text
and plain HTTP on a TLS port, mutual TLS, several MiB byte-exact, shutdown,
and the usage errors. A test CA is made with the openssl CLI. Loopback
only, port 0, every wait bounded."""

import os
import re
import signal
import socket
import ssl
import subprocess
import time

import pytest

from conftest import WAIT, recv_to_eof, tcp_connect


def sh(*argv, cwd=None):
    r = subprocess.run(argv, capture_output=True, cwd=cwd, timeout=30)
    assert r.returncode == 0, (argv, r.stderr)
    return r.stdout


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A test CA, a server certificate for localhost/127.0.0.1 and a client
    certificate, all signed by it (openssl x509 -req, no CA database)."""
    d = tmp_path_factory.mktemp("pki-serve")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    sh("openssl", "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "30",
       "-subj", "/CN=sockit serve test CA", "-addext", "basicConstraints=critical,CA:TRUE",
       "-addext", "keyUsage=keyCertSign,cRLSign", cwd=d)
    for name, cn, ext in [
            ("server", "localhost",
             "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"),
            ("client", "sockit test client", "extendedKeyUsage=clientAuth\n")]:
        sh("openssl", "req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr",
           "-subj", f"/CN={cn}", cwd=d)
        (d / f"{name}.ext").write_text("basicConstraints=CA:FALSE\n" + ext)
        sh("openssl", "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
           "-CAcreateserial", "-days", "30", "-sha256", "-extfile", f"{name}.ext",
           "-out", f"{name}.pem", cwd=d)
    return d


def cert_opts(pki):
    return ["--cert", str(pki / "server.pem"), "--key", str(pki / "server.key")]


def table_port(proc, service, scheme="tls"):
    """The port of SERVICE's first SCHEME endpoint in serve's table."""
    m = proc.out.wait_for(rb"^%s +%s://127\.0\.0\.1:(\d+)$" % (service.encode(), scheme.encode()))
    return int(m.group(1))


def pin_of(proc):
    m = proc.err.wait_for(rb"clients connect with --pin (sha256:[0-9a-f]{64})")
    return m.group(1).decode()


def s_client(run, pki, port, name="s_client"):
    """openssl s_client verifying the server against the test CA. -quiet
    ignores EOF on stdin, so the test never waits for it to end: the
    runner kills it by pid at teardown."""
    return run.spawn(["openssl", "s_client", "-quiet", "-connect", f"127.0.0.1:{port}",
                      "-CAfile", str(pki / "ca.pem"), "-verify_return_error",
                      "-servername", "localhost", "-verify_hostname", "localhost"], name=name)


def chat_tls(run, pki, *extra):
    p = run.sockit("chat", "serve", "tls://127.0.0.1:0", *cert_opts(pki), *extra,
                   name="sockit chat serve")
    return p, p.port()


# ---- the chat over TLS ---------------------------------------------------------------------

def test_chat_over_tls_end_to_end(run, pki):
    chat, port = chat_tls(run, pki, "--no-bot")
    chat.err.wait_for(rb"tls tls://127\.0\.0\.1:0: certificate sha256:[0-9a-f]{64}")
    alice = s_client(run, pki, port, "alice (s_client)")
    alice.out.wait_for(rb"HELLO 1 guest\d+ #lobby ")
    alice.write(b"/nick alice\n")
    alice.out.wait_for(rb"NICK #lobby guest\d+ alice\n")
    bob = run.spawn([run.bin, "connect", "--ca", str(pki / "ca.pem"), f"tls://localhost:{port}"],
                    name="bob (sockit connect)")
    bob.out.wait_for(rb"HELLO 1 guest\d+ #lobby ")
    bob.write(b"/nick bob\nhello alice\n")
    alice.out.wait_for(rb"MSG #lobby bob hello alice\n")
    alice.write(b"hi bob, over TLS\n")
    bob.out.wait_for(rb"MSG #lobby alice hi bob, over TLS\n")
    # the terminal client, piped: says one line and quits at end of input
    code, out, err = run.run("chat", f"tls://localhost:{port}", "--ca", str(pki / "ca.pem"),
                             "--nick", "carol", input=b"hey all\n", timeout=WAIT + 5)
    assert code == 0, err
    assert b"* sockit chat: type a line" in out, out
    alice.out.wait_for(rb"MSG #lobby carol hey all\n")
    bob.out.wait_for(rb"QUIT #lobby carol quit\n")
    # the operator's console shows the room over TLS like any other
    chat.out.wait_for(rb"MSG #lobby alice hi bob, over TLS\n")
    chat.write(b"the operator says hi\n")
    alice.out.wait_for(rb"MSG \* @server the operator says hi\n")
    bob.out.wait_for(rb"MSG \* @server the operator says hi\n")


def test_chat_client_refuses_an_unverified_server(run, pki, tmp_path):
    chat = run.sockit("chat", "serve", "tls://127.0.0.1:0", "--self-signed", "--state-dir",
                      str(tmp_path / "state"), "--no-bot")
    port = chat.port()
    pin = pin_of(chat)
    code, out, err = run.run("chat", f"tls://127.0.0.1:{port}", "--ca", str(pki / "ca.pem"),
                             input=b"never sent\n", timeout=WAIT + 5)
    assert code == 1, err
    assert f"tls tls://127.0.0.1:{port}: unknown issuer" in err, err
    code, out, err = run.run("chat", f"tls://127.0.0.1:{port}", "--pin", pin, "--nick", "dave",
                             input=b"/who\n", timeout=WAIT + 5)
    assert code == 0, err
    assert re.search(rb"\* in #lobby \(1\): dave", out), out


def test_chat_stalled_handshake_and_timeout(run, pki):
    chat, port = chat_tls(run, pki, "--tls-timeout", "1", "--no-bot")
    silent = tcp_connect("127.0.0.1", port)           # connects, never says hello
    half = tcp_connect("127.0.0.1", port)
    half.sendall(b"\x16\x03\x01\x02\x00\x01")        # half a ClientHello, then nothing
    start = time.monotonic()
    alice = s_client(run, pki, port)
    alice.out.wait_for(rb"HELLO 1 guest\d+ #lobby ")
    alice.write(b"not held up\n")
    chat.out.wait_for(rb"MSG #lobby guest\d+ not held up\n")
    assert time.monotonic() - start < 1.0              # before the stallers' deadline
    for s in (silent, half):                          # the deadline closes them
        assert recv_to_eof(s, timeout=WAIT) == b""
        s.close()
    assert time.monotonic() - start >= 0.9
    chat.err.wait_for(rb"chat: tls 127\.0\.0\.1:\d+: TLS handshake timed out")
    # and the chat goes on
    alice.write(b"still here\n")
    chat.out.wait_for(rb"MSG #lobby guest\d+ still here\n")


def test_chat_plain_text_on_tls_port(run, pki):
    chat, port = chat_tls(run, pki, "--no-bot")
    with tcp_connect("127.0.0.1", port) as s:
        s.sendall(b"hello, is this the chat?\n")
        try:
            data = recv_to_eof(s)
        except ConnectionResetError:
            data = b""
        assert b"HELLO" not in data                   # no chat line in the clear
    chat.err.wait_for(rb"chat: tls 127\.0\.0\.1:\d+: protocol version: the peer does not speak "
                      rb"TLS 1\.2 or later \(or not TLS at all\)")
    alice = s_client(run, pki, port)
    alice.out.wait_for(rb"HELLO 1 guest\d+ #lobby ")


def test_chat_client_reconnect_handshake_times_out_then_recovers(run, pki):
    """The client's reconnect does its TLS handshake on the loop, bounded by
    --tls-timeout: a listener that accepts and never answers costs one
    timed-out try, and the client is back once the real server is."""
    chat, port = chat_tls(run, pki, "--no-bot")
    c = run.sockit("chat", f"tls://localhost:{port}", "--ca", str(pki / "ca.pem"),
                   "--tls-timeout", "1", "--nick", "vera", name="vera")
    c.out.wait_for(rb"^\* guest\d+ is now vera$")
    chat.p.kill()
    chat.wait()
    c.out.wait_for(rb"^\* disconnected, reconnecting in 0\.5s$")
    silent = socket.socket()
    silent.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    silent.bind(("127.0.0.1", port))
    silent.listen(8)
    try:
        c.out.wait_for(rb"^\* tls tls://localhost:%d: TLS handshake timed out; retrying in 1s$"
                       % port, timeout=WAIT + 2)
    finally:
        silent.close()
    again = run.sockit("chat", "serve", f"tls://127.0.0.1:{port}", *cert_opts(pki), "--no-bot",
                       name="sockit chat serve (again)")
    c.out.wait_for(rb"^\* reconnected to tls://localhost:%d$" % port, timeout=WAIT + 10)
    c.out.wait_for(rb"(?s)reconnected.*^\* guest\d+ is now vera$")
    c.write(b"back over TLS\n")
    again.out.wait_for(rb"MSG #lobby vera back over TLS\n")
    c.close_stdin()
    c.expect_exit(0)


def test_chat_client_input_ended_and_server_gone_before_hello_ends_the_client(run, pki):
    """Input that ends while the first connection is still being made (the
    TLS handshake takes a few rounds) is acted on once it is made: a server
    that completes the handshake and leaves before HELLO ends the client
    (exit 0), rather than starting a reconnect schedule nobody will use."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(pki / "server.pem"), str(pki / "server.key"))
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(4)
    lst.settimeout(WAIT)
    port = lst.getsockname()[1]
    c = run.sockit("chat", f"tls://localhost:{port}", "--ca", str(pki / "ca.pem"),
                   stdin=subprocess.PIPE, name="chat client")
    c.close_stdin()
    conn, _ = lst.accept()
    time.sleep(0.3)                              # the client sees its end of input meanwhile
    tls = ctx.wrap_socket(conn, server_side=True)
    tls.close()                                  # gone before HELLO
    lst.close()                                  # and later connects are refused
    c.expect_exit(0)


def test_chat_client_interrupted_during_a_handshake_exits_cleanly(run, pki):
    """SIGINT while the first TLS handshake waits on a silent server: exit 0
    at once, and the handshake's state is freed (checked under ASan)."""
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(4)
    port = lst.getsockname()[1]
    try:
        c = run.sockit("chat", f"tls://localhost:{port}", "--ca", str(pki / "ca.pem"),
                       stdin=subprocess.PIPE, name="chat client")
        conn, _ = lst.accept()                   # accepted, never answered
        time.sleep(0.3)
        c.signal(signal.SIGINT)
        c.expect_exit(0)
        conn.close()
    finally:
        lst.close()


def test_chat_tls_and_plain_side_by_side_and_shutdown(run, pki):
    chat = run.sockit("chat", "serve", "tls://127.0.0.1:0", "tcp://127.0.0.1:0", *cert_opts(pki),
                      "--no-bot")
    tls_port = int(chat.err.wait_for(rb"listening on tls://127\.0\.0\.1:(\d+)").group(1))
    plain_port = int(chat.err.wait_for(rb"listening on tcp://127\.0\.0\.1:(\d+)").group(1))
    alice = s_client(run, pki, tls_port)
    alice.out.wait_for(rb"HELLO 1 guest\d+ #lobby ")
    with tcp_connect("127.0.0.1", plain_port) as nc:
        nc.sendall(b"/nick plain\nfrom the clear side\n")
        alice.out.wait_for(rb"MSG #lobby plain from the clear side\n")
        alice.write(b"from the TLS side\n")
        buf = b""
        deadline = time.monotonic() + WAIT
        while b"from the TLS side" not in buf and time.monotonic() < deadline:
            buf += nc.recv(4096)
        assert b"MSG #lobby guest" in buf and b"from the TLS side" in buf
        chat.signal(signal.SIGTERM)
        alice.out.wait_for(rb"BYE the server is shutting down\n")
        chat.expect_exit(0)


# ---- services in the hub over TLS ----------------------------------------------------------

def test_hub_echo_over_tls_self_signed_pin(run, tmp_path):
    state = tmp_path / "state"
    conf = tmp_path / "serve.conf"
    conf.write_text("echo tls://127.0.0.1:0 tcp://127.0.0.1:0\n"
                    "upper tls://127.0.0.1:0 --idle-timeout=5\n"
                    "chat tls://127.0.0.1:0\n"
                    "time udp://127.0.0.1:0\n")
    srv = run.sockit("serve", "--self-signed", "--state-dir", str(state), "--config", str(conf))
    echo_port, upper_port = table_port(srv, "echo"), table_port(srv, "upper")
    plain_port = table_port(srv, "echo", "tcp")
    pin = pin_of(srv)
    assert (state / "tls-key.pem").stat().st_mode & 0o077 == 0
    code, out, err = run.run("connect", "--pin", pin, f"tls://127.0.0.1:{echo_port}",
                             input=b"echo over tls\n", timeout=WAIT + 5)
    assert code == 0 and out == b"echo over tls\n", err
    code, out, err = run.run("connect", "--pin", pin, f"tls://127.0.0.1:{upper_port}",
                             input=b"upper over tls\n", timeout=WAIT + 5)
    assert code == 0 and out == b"UPPER OVER TLS\n", err
    code, out, err = run.run("connect", f"tcp://127.0.0.1:{plain_port}", input=b"plain\n")
    assert code == 0 and out == b"plain\n", err
    code, out, err = run.run("connect", "--pin", pin, f"tls://127.0.0.1:{table_port(srv, 'chat')}",
                             input=b"/quit\n", timeout=WAIT + 5)
    assert code == 0 and out.startswith(b"HELLO 1 guest") and out.endswith(b"BYE goodbye\n"), err
    code, out, err = run.run("connect", "--pin", "sha256:" + "ab" * 32,
                             f"tls://127.0.0.1:{echo_port}", input=b"x\n", timeout=WAIT + 5)
    assert code == 1 and f"fingerprint mismatch: the server presented {pin}" in err, err
    # the same certificate is reused by the next run: the pin holds
    srv.signal(signal.SIGTERM)
    srv.expect_exit(0)
    again = run.sockit("serve", "--self-signed", "--state-dir", str(state), "echo",
                       "tls://127.0.0.1:0")
    again.err.wait_for(rb"self-signed certificate " + pin.encode() + rb" \(reused\)")
    code, out, err = run.run("connect", "--pin", pin, f"tls://127.0.0.1:{table_port(again, 'echo')}",
                             input=b"same pin\n", timeout=WAIT + 5)
    assert code == 0 and out == b"same pin\n", err


def test_serve_tls_several_mib_byte_exact_with_workers(run, pki):
    srv = run.sockit("serve", "--workers", "2", *cert_opts(pki), "echo", "tls://127.0.0.1:0")
    port = table_port(srv, "echo")
    data = os.urandom(3 << 20)
    code, out, err = run.run("connect", "--ca", str(pki / "ca.pem"), f"tls://localhost:{port}",
                             input=data, timeout=WAIT + 20)
    assert code == 0, err
    assert len(out) == len(data) and out == data


def test_serve_stalled_handshake_does_not_block(run, pki):
    srv = run.sockit("serve", "--tls-timeout", "1", *cert_opts(pki), "echo", "tls://127.0.0.1:0")
    port = table_port(srv, "echo")
    stalled = tcp_connect("127.0.0.1", port)
    start = time.monotonic()
    code, out, err = run.run("connect", "--ca", str(pki / "ca.pem"), f"tls://localhost:{port}",
                             input=b"not blocked\n", timeout=WAIT + 5)
    assert code == 0 and out == b"not blocked\n", err
    assert time.monotonic() - start < 1.0
    assert recv_to_eof(stalled, timeout=WAIT) == b""  # closed at --tls-timeout
    stalled.close()
    srv.err.wait_for(rb"echo: tls 127\.0\.0\.1:\d+: TLS handshake timed out")


def test_serve_plain_http_on_tls_port(run, pki):
    srv = run.sockit("serve", *cert_opts(pki), "echo", "tls://127.0.0.1:0")
    port = table_port(srv, "echo")
    with tcp_connect("127.0.0.1", port) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        try:
            recv_to_eof(s)
        except ConnectionResetError:
            pass
    srv.err.wait_for(rb"echo: tls 127\.0\.0\.1:\d+: plain HTTP on a TLS port: the client "
                     rb"should use https://")
    code, out, err = run.run("connect", "--ca", str(pki / "ca.pem"), f"tls://localhost:{port}",
                             input=b"still serving\n", timeout=WAIT + 5)
    assert code == 0 and out == b"still serving\n", err


def test_serve_mutual_tls(run, pki):
    srv = run.sockit("serve", *cert_opts(pki), "--client-ca", str(pki / "ca.pem"), "echo",
                     "tls://127.0.0.1:0")
    port = table_port(srv, "echo")
    code, out, err = run.run("connect", "--ca", str(pki / "ca.pem"), f"tls://localhost:{port}",
                             input=b"anonymous\n", timeout=WAIT + 5)
    assert out == b"", err
    srv.err.wait_for(rb"echo: tls 127\.0\.0\.1:\d+: the peer did not present a client "
                     rb"certificate, which is required")
    code, out, err = run.run("connect", "--ca", str(pki / "ca.pem"), "--cert",
                             str(pki / "client.pem"), "--key", str(pki / "client.key"),
                             f"tls://localhost:{port}", input=b"known\n", timeout=WAIT + 5)
    assert code == 0 and out == b"known\n", err


def test_serve_shutdown_with_tls_clients(run, pki):
    srv = run.sockit("serve", "--grace", "1", *cert_opts(pki), "echo", "tls://127.0.0.1:0")
    port = table_port(srv, "echo")
    idle = s_client(run, pki, port)
    idle.err.wait_for(rb"verify return:1")
    idle.write(b"ping\n")
    idle.out.expect(b"ping\n")
    stalled = tcp_connect("127.0.0.1", port)         # in its handshake at the stop
    start = time.monotonic()
    srv.signal(signal.SIGTERM)
    srv.expect_exit(0, timeout=WAIT)
    assert time.monotonic() - start < 3.0
    assert recv_to_eof(stalled, timeout=WAIT) == b""
    stalled.close()


# ---- usage --------------------------------------------------------------------------------

@pytest.mark.parametrize("argv,msg", [
    (["serve", "echo", "tls://127.0.0.1:0"],
     "a tls:// endpoint needs a certificate: --cert FILE --key FILE, or --self-signed"),
    (["serve", "--self-signed", "echo", "tcp://127.0.0.1:0"], "TLS options need a tls:// endpoint"),
    (["serve", "--self-signed", "--pin", "sha256:" + "00" * 32, "echo", "tls://127.0.0.1:0"],
     "--ca, --pin and --insecure are for clients"),
    (["serve", "--self-signed", "--cert", "x.pem", "echo", "tls://127.0.0.1:0"],
     "--cert and --self-signed contradict each other"),
    (["chat", "serve", "tls://127.0.0.1:0"], "a tls:// endpoint needs a certificate"),
    (["chat", "serve", "tcp://127.0.0.1:0", "--self-signed"], "TLS options need a tls:// endpoint"),
    (["chat", "tls://127.0.0.1:1", "--self-signed"], "are for 'chat serve'"),
    (["chat", "tcp://127.0.0.1:1", "--pin", "sha256:" + "00" * 32],
     "TLS options need a tls:// endpoint"),
])
def test_tls_usage_errors(run, argv, msg):
    code, out, err = run.run(*argv)
    assert code == 2 and msg in err, err


def test_config_tls_line_without_certificate(run, tmp_path):
    """A tls:// endpoint in a config file (a service's, a relay's or a drop
    box's) needs the global --cert/--key or --self-signed."""
    for line in ("echo tcp://127.0.0.1:0 tls://127.0.0.1:0",
                 "relay tls://127.0.0.1:0 tcp://127.0.0.1:9",
                 f"xfer tls://127.0.0.1:0 --dir={tmp_path / 'drop'}"):
        conf = tmp_path / "serve.conf"
        conf.write_text(line + "\n")
        code, out, err = run.run("serve", "--config", str(conf))
        assert code == 2 and "a tls:// endpoint needs a certificate" in err, (line, err)


def test_config_relay_terminates_tls(run, pki, tmp_path):
    echo = run.sockit("serve", "echo", "tcp://127.0.0.1:0", name="sockit serve echo")
    eport = table_port(echo, "echo", "tcp")
    conf = tmp_path / "serve.conf"
    conf.write_text(f"relay tls://127.0.0.1:0 tcp://127.0.0.1:{eport}\n")
    srv = run.sockit("serve", *cert_opts(pki), "--config", str(conf))
    port = table_port(srv, "relay")
    code, out, err = run.run("connect", "--ca", str(pki / "ca.pem"), f"tls://localhost:{port}",
                             input=b"through the relay\n", timeout=WAIT + 5)
    assert code == 0 and out == b"through the relay\n", err


def test_bad_certificate_file_is_said(run, tmp_path):
    code, out, err = run.run("serve", "--cert", str(tmp_path / "missing.pem"), "echo",
                             "tls://127.0.0.1:0")
    assert code == 1 and "missing.pem: cannot read a PEM certificate" in err, err


# ---- the chat's web side over https and wss --------------------------------------------------

def _https(pki, port):
    import ssl
    ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    raw = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    return ctx.wrap_socket(raw, server_hostname="localhost")


def _read_head(s):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        assert chunk, data
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    return head.decode(), rest


def _ws_text(s, rest):
    """The first server frame's text (unmasked, 7-bit length here)."""
    while len(rest) < 2 or len(rest) < 2 + (rest[1] & 0x7F):
        chunk = s.recv(4096)
        assert chunk
        rest += chunk
    assert rest[0] == 0x81 and rest[1] < 126, rest[:2]
    return rest[2:2 + rest[1]].decode(), rest[2 + rest[1]:]


def _masked(text):
    data, mask = text.encode(), os.urandom(4)
    return bytes([0x81, 0x80 | len(data)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data))


class _Lines:
    """A line client of the chat over plain TCP, reading with a deadline."""

    def __init__(self, port):
        self.s = tcp_connect("127.0.0.1", port)
        self.buf = b""

    def wait_for(self, pattern):
        deadline = time.monotonic() + WAIT
        while True:
            while b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                if re.match(pattern, line):
                    return line
            assert time.monotonic() < deadline, pattern
            chunk = self.s.recv(4096)
            assert chunk, pattern
            self.buf += chunk


def test_chat_page_over_https_and_chat_over_wss(run, pki):
    p = run.sockit("chat", "serve", "tcp://127.0.0.1:0", "--web", "tls://127.0.0.1:0",
                   *cert_opts(pki), "--no-bot", "--quiet", name="sockit chat serve")
    line_port = p.port()
    m = p.err.wait_for(rb"^sockit: chat page: https://127\.0\.0\.1:(\d+)/$")
    web_port = int(m.group(1))
    # the page over https, certificate verified against the test CA
    s = _https(pki, web_port)
    s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    head, body = _read_head(s)
    assert head.startswith("HTTP/1.1 200 OK") and "text/html" in head
    s.close()
    # the chat over wss, meeting a plain line client in #lobby
    nc = _Lines(line_port)
    nc.wait_for(rb"^HELLO ")
    s = _https(pki, web_port)
    s.sendall(b"GET /ws HTTP/1.1\r\nHost: localhost:%d\r\nUpgrade: websocket\r\n"
              b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
              b"Sec-WebSocket-Version: 13\r\nOrigin: https://localhost:%d\r\n\r\n"
              % (web_port, web_port))
    head, rest = _read_head(s)
    assert head.startswith("HTTP/1.1 101 ") and "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head, head
    text, rest = _ws_text(s, rest)
    assert text.startswith("HELLO 1 guest")
    s.sendall(_masked("/nick secure") + _masked("hello over wss"))
    nc.wait_for(rb"^MSG #lobby secure hello over wss$")
    nc.s.sendall(b"hello back\n")
    for _ in range(10):
        text, rest = _ws_text(s, rest)
        if text.startswith("MSG "):
            break
    assert re.match(r"^MSG #lobby guest\d+ hello back$", text), text
    s.close()
    nc.s.close()


def test_web_on_tls_needs_a_certificate(run):
    code, out, err = run.run("chat", "serve", "tcp://127.0.0.1:0", "--web", "tls://127.0.0.1:0")
    assert code == 2 and "--cert" in err, err
