"""`sockit connect` as nc users type it, on the library's connector: HOST
PORT shorthand, -u, -4/-6, service names, -z scans, -w, and --proxy through
real proxies (Debian's dante-server for SOCKS5, tinyproxy for HTTP CONNECT),
with usage mistakes caught before any network activity (exit 2)."""

import os
import shutil
import socket
import subprocess
import time

import pytest

from conftest import WAIT, Server, free_port_holder
from test_relay import free_port


def echo_once(conn):
    data = conn.recv(100)
    conn.sendall(b"echo:" + data)
    return data


def test_host_port_shorthand(run):
    srv = Server(socket.AF_INET, socket.SOCK_STREAM, echo_once)
    code, out, err = run.run("connect", "127.0.0.1", str(srv.port), input=b"hi\n")
    assert (code, out) == (0, b"echo:hi\n"), err
    assert srv.join() == b"hi\n"


def test_ipv6_shorthand_and_udp(run):
    srv = Server(socket.AF_INET6, socket.SOCK_STREAM, echo_once)
    code, out, err = run.run("connect", "::1", str(srv.port), input=b"six\n")
    assert (code, out) == (0, b"echo:six\n"), err

    def udp(sock):
        data, peer = sock.recvfrom(100)
        sock.sendto(b"u:" + data, peer)
        return data
    srv = Server(socket.AF_INET, socket.SOCK_DGRAM, udp)
    code, out, err = run.run("connect", "-u", "127.0.0.1", str(srv.port), input=b"dgram\n")
    assert (code, out) == (0, b"u:dgram\n"), err
    assert srv.join() == b"dgram\n"


def test_family_restriction(run):
    srv = Server(socket.AF_INET, socket.SOCK_STREAM, echo_once)
    code, out, err = run.run("connect", "-6", "127.0.0.1", str(srv.port))
    assert code == 1 and "no IPv6 address (-6)" in err, err
    code, out, err = run.run("connect", "-4", "::1", str(srv.port))
    assert code == 1 and "no IPv4 address (-4)" in err, err
    code, out, err = run.run("connect", "-4", "127.0.0.1", str(srv.port), input=b"x\n")
    assert (code, out) == (0, b"echo:x\n"), err
    code, out, err = run.run("connect", "-4", "-6", "127.0.0.1", "1")
    assert code == 2 and "contradict" in err


@pytest.mark.parametrize("argv,msg", [
    (["connect", "127.0.0.1", "nosuchservice"], "bad port 'nosuchservice'"),
    (["connect", "127.0.0.1", "70000"], "bad port '70000'"),
    (["connect", "-u", "udp://127.0.0.1:7"], "-u is for the HOST PORT form"),
    (["connect", "--proxy", "ftp://h:1", "127.0.0.1", "1"], "the scheme must be socks5"),
    (["connect", "--proxy", "socks5://127.0.0.1:1", "udp://127.0.0.1:1"],
     "--proxy carries tcp and tls endpoints only"),
    (["connect", "--self-signed", "tls://127.0.0.1:1"], "unknown option '--self-signed'"),
    (["connect", "--pin", "sha256:zz", "tls://127.0.0.1:1"], "bad pin"),
    (["connect", "-z", "127.0.0.1", "9-1"], "bad port or range '9-1'"),
    (["connect", "-q", "127.0.0.1", "1"], "unknown option '-q'"),
])
def test_usage_mistakes_exit_2_before_connecting(run, argv, msg):
    code, out, err = run.run(*argv)
    assert code == 2 and msg in err, err
    assert "Try 'sockit connect --help'" in err


def test_service_name_as_port(run):
    # tcpmux is port 1 in /etc/services; nothing listens there on loopback.
    code, out, err = run.run("connect", "-zv", "127.0.0.1", "tcpmux")
    assert code == 1 and "port 1 (tcp) failed: Connection refused" in err, err


def test_zero_io_scan(run):
    accepted = []

    def quiet(conn):
        accepted.append(conn.recv(10))  # the scan sends nothing and closes
    a = Server(socket.AF_INET, socket.SOCK_STREAM, quiet)
    b = Server(socket.AF_INET, socket.SOCK_STREAM, quiet)
    hole = free_port_holder()
    shut = hole.getsockname()[1]
    code, out, err = run.run("connect", "-zv", "127.0.0.1", str(a.port), str(shut),
                             str(b.port))
    assert code == 0 and out == b"", err
    lines = [l for l in err.splitlines() if l.startswith("sockit: connect 127.0.0.1")]
    assert lines[0].startswith(f"sockit: connect 127.0.0.1 port {a.port} (tcp") and \
        lines[0].endswith(") open"), lines
    assert lines[1] == f"sockit: connect 127.0.0.1 port {shut} (tcp) failed: " \
                       "Connection refused", lines
    assert lines[2].endswith(") open") and f"port {b.port} " in lines[2], lines
    a.join()
    b.join()
    assert accepted == [b"", b""]
    # Nothing open: exit 1, and without -v nothing is printed.
    code, out, err = run.run("connect", "-z", "127.0.0.1", str(shut))
    assert (code, out, err) == (1, b"", "")
    hole.close()


def test_scan_range_reports_every_port_in_order(run):
    hole = free_port_holder()
    first = min(hole.getsockname()[1], 65535 - 40)
    code, out, err = run.run("connect", "-zv", "127.0.0.1", f"{first}-{first + 39}",
                             timeout=WAIT * 4)
    ports = [int(l.split(" port ")[1].split()[0]) for l in err.splitlines() if " port " in l]
    assert ports == list(range(first, first + 40)), err[-500:]
    assert f"port {hole.getsockname()[1]} (tcp) failed: Connection refused" in err
    hole.close()


def blackhole():
    """A listener whose one backlog slot is taken: further SYNs are dropped."""
    l = socket.socket()
    l.bind(("127.0.0.1", 0))
    l.listen(0)
    filler = socket.create_connection(l.getsockname())
    return l, filler


def test_wait_bounds_connecting_and_idle(run):
    l, filler = blackhole()
    code, out, err = run.run("connect", "-w", "0.3", "127.0.0.1", str(l.getsockname()[1]))
    assert code == 1 and "no connection within 300 ms" in err, err
    l.close()
    filler.close()
    # Connected to a peer that never talks: -w is also the idle bound.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)
    p = run.sockit("connect", "-w", "0.3", "127.0.0.1", str(silent.getsockname()[1]))
    assert p.wait(timeout=WAIT) == 1
    assert b"idle" in p.err.value(), p.err.value()
    silent.close()


# ---- proxies -------------------------------------------------------------------------------

def start_proxy(run, argv_for_port):
    """Starts a proxy that takes its port in a config file; tries another
    port if it could not bind (a free port is free only for a moment)."""
    for _ in range(5):
        port = free_port()
        argv = argv_for_port(port)
        p = run.spawn(argv, name=os.path.basename(argv[0]))
        if poll_port(port, p):
            return port
        p.stop()
    pytest.fail(f"{argv[0]} did not start")


def poll_port(port, proc):
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline and proc.alive():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


@pytest.fixture
def dante(run, tmp_path):
    exe = shutil.which("danted") or "/usr/sbin/danted"
    if not os.path.exists(exe):
        pytest.fail("danted missing: scripts/install-deps installs dante-server")

    def argv(port):
        conf = tmp_path / f"sockd-{port}.conf"
        conf.write_text(f"""logoutput: stderr
internal: 127.0.0.1 port = {port}
external: 127.0.0.1
clientmethod: none
socksmethod: none
user.privileged: root
user.unprivileged: nobody
client pass {{ from: 127.0.0.0/8 to: 0.0.0.0/0 }}
socks pass {{ from: 127.0.0.0/8 to: 0.0.0.0/0 protocol: tcp }}
""")
        return [exe, "-f", str(conf), "-N", "1"]
    return start_proxy(run, argv)


@pytest.fixture
def tinyproxy(run, tmp_path):
    exe = shutil.which("tinyproxy")
    if not exe:
        pytest.fail("tinyproxy missing: scripts/install-deps installs it")

    def argv(port):
        conf = tmp_path / f"tinyproxy-{port}.conf"
        conf.write_text(f"Port {port}\nListen 127.0.0.1\nTimeout 30\nAllow 127.0.0.1\n"
                        "BasicAuth alice s3cret\nMaxClients 20\n")
        return [exe, "-d", "-c", str(conf)]
    return start_proxy(run, argv)


def talk_through(run, argv, payload=b"hello\n"):
    """Runs sockit connect, sends payload, waits for the echo, then ends
    input: a proxy that does not carry half-closes still delivers it."""
    p = run.sockit("connect", "-v", *argv)
    p.write(payload)
    got = p.out.read_exact(len(b"echo:" + payload), timeout=WAIT)
    p.close_stdin()
    p.wait(timeout=WAIT)
    return got, p.err.value().decode()


def test_socks5_through_dante(run, dante):
    srv = Server(socket.AF_INET, socket.SOCK_STREAM, echo_once)
    got, err = talk_through(run, ["--proxy", f"socks5://127.0.0.1:{dante}", "127.0.0.1",
                                  str(srv.port)])
    assert got == b"echo:hello\n", err
    assert f"through proxy 127.0.0.1:{dante}" in err
    # The name goes to the proxy, which resolves it (socks5h semantics).
    srv = Server(socket.AF_INET, socket.SOCK_STREAM, echo_once)
    got, err = talk_through(run, ["--proxy", f"socks5h://127.0.0.1:{dante}",
                                  f"tcp://localhost:{srv.port}"])
    assert got == b"echo:hello\n", err
    # A refused target comes back in words, with the proxy named.
    hole = free_port_holder()
    code, out, err = run.run("connect", "--proxy", f"socks5://127.0.0.1:{dante}", "127.0.0.1",
                             str(hole.getsockname()[1]))
    assert code == 1 and f"proxy socks5 127.0.0.1:{dante}: " in err, err
    assert f"(to 127.0.0.1:{hole.getsockname()[1]})" in err
    hole.close()


def test_http_connect_through_tinyproxy(run, tinyproxy):
    srv = Server(socket.AF_INET, socket.SOCK_STREAM, echo_once)
    got, err = talk_through(run, ["--proxy", f"http://alice:s3cret@127.0.0.1:{tinyproxy}",
                                  "127.0.0.1", str(srv.port)])
    assert got == b"echo:hello\n", err
    code, out, err = run.run("connect", "--proxy", f"http://alice:wrong@127.0.0.1:{tinyproxy}",
                             "127.0.0.1", str(srv.port))
    assert code == 1 and f"proxy http 127.0.0.1:{tinyproxy}: HTTP 401" in err, err
    srv.close()


def test_proxy_that_is_down(run):
    hole = free_port_holder()
    port = hole.getsockname()[1]
    code, out, err = run.run("connect", "--proxy", f"socks5://127.0.0.1:{port}", "example.test",
                             "80")
    assert code == 1 and err.strip() == \
        f"sockit: connect tcp://127.0.0.1:{port}: Connection refused", err
    hole.close()
