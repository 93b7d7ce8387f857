"""The seeds' programs rewritten with libsockit (examples/): each server
against its seed client and against sockit, each client against its
example server and against `sockit serve`."""

import os
import re
import signal
import socket
import subprocess

import pytest

from conftest import WAIT, expect_recv, recv_to_eof, tcp_connect

CTIME = rb"(Mon|Tue|Wed|Thu|Fri|Sat|Sun) \w{3} [ 1-3]\d \d\d:\d\d:\d\d \d{4}"


@pytest.fixture(scope="module")
def ex():
    build = os.environ.get("SOCKIT_BUILD",
                           os.path.join(os.path.dirname(__file__), "..", "..", "build"))
    d = os.path.join(build, "examples")
    if not os.path.isdir(d):
        pytest.fail(f"no examples in {d}: build first", pytrace=False)
    return lambda name: os.path.join(d, name)


def start_server(run, path, endpoint):
    p = run.spawn([path, endpoint], name=os.path.basename(path))
    m = p.out.wait_for(rb"^listening on (\S+)$")
    addr = m.group(1).decode()
    host, port = addr.rsplit(":", 1)
    return p, host.strip("[]"), int(port)


def serve(run, svc, endpoint):
    p = run.sockit("serve", svc, endpoint)
    m = p.out.wait_for(rb"^%s +\w+://(\S+):(\d+)$" % svc.encode())
    return p, m.group(1).decode().strip("[]"), int(m.group(2))


def test_seed000_tcp_server_and_client(run, ex):
    p, host, port = start_server(run, ex("seed000_tcp_server"), "tcp://127.0.0.1:0")
    r = subprocess.run([ex("seed000_tcp_client"), f"tcp://{host}:{port}"], capture_output=True,
                       timeout=WAIT)
    assert r.returncode == 0 and r.stdout == b"Hi\n", r
    assert p.wait() == 0                       # one client, then it stops by itself
    assert p.out.value().endswith(b"hello!\n")


def test_seed000_tcp_server_with_sockit_connect(run, ex):
    p, host, port = start_server(run, ex("seed000_tcp_server"), "tcp://[::1]:0")
    code, out, err = run.run("connect", f"tcp://[{host}]:{port}", input=b"from sockit")
    assert code == 0 and out == b"Hi", err
    assert p.wait() == 0
    assert b"from sockit" in p.out.value()


def test_seed000_udp_pair_and_sockit(run, ex):
    p, host, port = start_server(run, ex("seed000_udp_server"), "udp://127.0.0.1:0")
    r = subprocess.run([ex("seed000_udp_client"), f"udp://{host}:{port}"], capture_output=True,
                       timeout=WAIT)
    assert r.returncode == 0 and r.stdout == f"Hi {host}:{port}\n".encode(), r
    p.out.wait_for(rb"^hello$")
    code, out, err = run.run("connect", f"udp://{host}:{port}", input=b"x\n")
    assert code == 0 and out == b"Hi", err
    p.signal(signal.SIGTERM)
    assert p.wait() == 0
    # The client against sockit's echo service.
    s, h, pt = serve(run, "echo", "udp://127.0.0.1:0")
    r = subprocess.run([ex("seed000_udp_client"), f"udp://{h}:{pt}"], capture_output=True,
                       timeout=WAIT)
    assert r.stdout == f"hello {h}:{pt}\n".encode()


def test_seed001_time_server_and_interactive_client(run, ex):
    p, host, port = start_server(run, ex("seed001_time_server"), "tcp://127.0.0.1:0")
    r = subprocess.run([ex("seed001_time_client"), f"tcp://{host}:{port}"],
                       input=b"hello python\n\nagain\n", capture_output=True, timeout=WAIT)
    assert r.returncode == 0
    replies = r.stdout.replace(b">>> ", b"").splitlines()
    assert len(replies) == 2
    assert re.match(rb"^\[" + CTIME + rb"\] hello python$", replies[0]), replies
    assert re.match(rb"^\[" + CTIME + rb"\] again$", replies[1]), replies
    # The same client against sockit's time service.
    s, h, pt = serve(run, "time", "tcp://127.0.0.1:0")
    r = subprocess.run([ex("seed001_time_client"), f"tcp://{h}:{pt}"], input=b"hub\n",
                       capture_output=True, timeout=WAIT)
    assert re.match(rb"^\[" + CTIME + rb"\] hub$", r.stdout.replace(b">>> ", b"").strip())
    p.signal(signal.SIGINT)
    assert p.wait() == 0


def test_seed001_threading_server_many_clients_and_stop(run, ex):
    p, host, port = start_server(run, ex("seed001_threading_server"), "tcp://127.0.0.1:0")
    socks = [tcp_connect(host, port) for _ in range(20)]
    for i, s in enumerate(socks):
        s.sendall(b"msg %d" % i)
    for i, s in enumerate(socks):
        got = s.recv(1024)
        assert re.match(CTIME + b" msg %d$" % i, got), got
    for s in socks[:10]:
        s.close()
    # Finished threads are reaped: 20 handlers ran, the count goes back down.
    def threads():
        return len(os.listdir(f"/proc/{p.pid}/task"))
    deadline = __import__("time").monotonic() + WAIT
    while threads() > 11 and __import__("time").monotonic() < deadline:
        __import__("time").sleep(0.02)
    assert threads() == 11, threads()          # main + 10 live handlers
    # Stop with live (idle) clients: ends after the grace period, not never.
    p.signal(signal.SIGTERM)
    assert p.wait(timeout=WAIT) == 0
    for s in socks[10:]:
        assert recv_to_eof(s) == b""
        s.close()


def test_seed002_upper_server_and_client(run, ex):
    p, host, port = start_server(run, ex("seed002_upper_server"), "tcp://127.0.0.1:0")
    r = subprocess.run([ex("seed002_upper_client"), f"tcp://localhost:{port}"],
                       capture_output=True, timeout=WAIT)
    assert r.returncode == 0 and r.stdout == b"HELLO, WORLD\n", r
    code, out, err = run.run("connect", f"tcp://127.0.0.1:{port}", input=b"sockit too")
    assert out == b"SOCKIT TOO"
    s, h, pt = serve(run, "upper", "tcp://127.0.0.1:0")
    r = subprocess.run([ex("seed002_upper_client"), f"tcp://{h}:{pt}"], capture_output=True,
                       timeout=WAIT)
    assert r.stdout == b"HELLO, WORLD\n"
    p.signal(signal.SIGTERM)
    assert p.wait() == 0
