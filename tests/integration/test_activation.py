"""Socket activation: `systemd-socket-activate` (Debian's systemd package, no
running systemd needed) binds the sockets and starts sockit on the first
connection with LISTEN_FDS; sockit must take the passed sockets over instead
of binding its own (which would fail: the address is held without
SO_REUSEPORT). TCP, unix and TLS endpoints, a privileged port served by an
unprivileged process inside a private network namespace, and a passed
socket that no endpoint asked for."""

import os
import shutil
import socket
import ssl
import subprocess
import time

import pytest

from conftest import WAIT, expect_recv
from test_relay import free_port

ACTIVATE = shutil.which("systemd-socket-activate")


@pytest.fixture(autouse=True)
def need_activate():
    if not ACTIVATE:
        pytest.fail("systemd-socket-activate missing: scripts/install-deps installs systemd")


def connect_retry(addr, family=socket.AF_INET):
    """systemd-socket-activate listens a moment after it starts."""
    deadline = time.monotonic() + WAIT
    while True:
        s = socket.socket(family, socket.SOCK_STREAM)
        s.settimeout(WAIT)
        try:
            s.connect(addr)
            return s
        except OSError:
            s.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def activated(run, listen, *sockit_args, name="activate"):
    argv = [ACTIVATE]
    for l in listen:
        argv += ["-l", l]
    return run.spawn(argv + [run.bin, *sockit_args], name=name)


def test_tcp_socket_is_taken_over(run):
    port = free_port()
    p = activated(run, [f"127.0.0.1:{port}"], "serve", "echo", f"tcp://127.0.0.1:{port}")
    s = connect_retry(("127.0.0.1", port))     # sockit starts on this connection
    s.sendall(b"first\n")
    expect_recv(s, b"first\n")
    s2 = connect_retry(("127.0.0.1", port))
    s2.sendall(b"second\n")
    expect_recv(s2, b"second\n")
    s.close(), s2.close()
    p.out.wait_for(rb"echo +tcp://127\.0\.0\.1:%d" % port)
    assert b"Address already in use" not in p.err.value()


def test_workers_share_the_passed_socket(run):
    port = free_port()
    activated(run, [f"127.0.0.1:{port}"], "serve", "--workers", "2", "echo",
              f"tcp://127.0.0.1:{port}")
    socks = [connect_retry(("127.0.0.1", port)) for _ in range(8)]
    for i, s in enumerate(socks):
        s.sendall(b"w%d\n" % i)
        expect_recv(s, b"w%d\n" % i)
        s.close()
    port = free_port()
    activated(run, [f"127.0.0.1:{port}"], "relay", "--workers", "2",
              f"tcp://127.0.0.1:{port}", "tcp://127.0.0.1:1")
    s = connect_retry(("127.0.0.1", port))   # the relay took the socket: no bind error
    s.close()


def test_unix_socket_is_taken_over_and_left_in_place(run, tmp_path):
    path = str(tmp_path / "echo.sock")
    p = activated(run, [path], "serve", "echo", f"unix:{path}")
    s = connect_retry(path, socket.AF_UNIX)
    s.sendall(b"over unix\n")
    expect_recv(s, b"over unix\n")
    s.close()
    p.signal(15)
    p.wait(timeout=WAIT)
    # The socket file is systemd's: sockit must not remove it at exit.
    assert os.path.exists(path)


def test_tls_endpoint_on_a_passed_socket(run, tmp_path):
    port = free_port()
    activated(run, [f"127.0.0.1:{port}"], "serve", "--self-signed", "--state-dir",
              str(tmp_path), "echo", f"tls://127.0.0.1:{port}")
    raw = connect_retry(("127.0.0.1", port))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
        s.sendall(b"secret\n")
        assert s.recv(100) == b"secret\n"


def test_privileged_port_without_privilege(run):
    """In a private network namespace, port 80 is bound by the activator
    (as root) and served by sockit running as nobody."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root to make a network namespace")
    script = (f"ip link set lo up && exec {ACTIVATE} -l 127.0.0.1:80 "
              f"setpriv --reuid=65534 --regid=65534 --clear-groups "
              f"{run.bin} serve echo tcp://127.0.0.1:80")
    p = run.spawn(["unshare", "-n", "sh", "-c", script], name="unshare")
    client = ("import socket\n"
              "s = socket.create_connection(('127.0.0.1', 80), timeout=5)\n"
              "s.sendall(b'low port\\n'); print(s.recv(100).decode(), end='')\n")
    # Once it listens, the activator is inside its own namespace.
    p.err.wait_for(rb"Listening on 127\.0\.0\.1:80 as 3\.")
    r = subprocess.run(["nsenter", f"--net=/proc/{p.p.pid}/ns/net", "/usr/bin/python3", "-c",
                        client], capture_output=True, text=True, timeout=WAIT * 2)
    assert r.stdout == "low port\n", (r.stderr, p.err.value())
    # And the serving process is not root.
    pids = subprocess.run(["pgrep", "-f", "serve echo tcp://127.0.0.1:80"],
                          capture_output=True, text=True).stdout.split()
    uids = [open(f"/proc/{pid}/status").read().split("Uid:")[1].split()[0] for pid in pids
            if os.path.exists(f"/proc/{pid}/status")]
    assert "65534" in uids, uids


def test_unclaimed_socket_is_reported(run):
    a, b = free_port(), free_port()
    p = activated(run, [f"127.0.0.1:{a}", f"127.0.0.1:{b}"], "listen", f"tcp://127.0.0.1:{a}")
    s = connect_retry(("127.0.0.1", a))
    p.err.wait_for(rb"systemd passed a socket that no endpoint asked for \(fd 4, "
                   rb"127\.0\.0\.1:%d\); left unused" % b)
    s.sendall(b"to listen\n")
    p.out.wait_for(rb"to listen")
    s.close()
