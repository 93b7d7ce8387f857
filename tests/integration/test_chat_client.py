"""`sockit chat ENDPOINT`: the terminal chat client (docs/chat.md, "The
terminal client") against the real server, with nc and raw sockets as the
other peers.

  * plain mode (stdin and stdout pipes): the exact rendered lines, rooms,
    private messages, errors, history, /quit at end of input;
  * terminal mode, driven in tmux (send-keys, capture-pane): a message
    arrives while a half-typed line is on screen and the line survives;
    line editing and history;
  * reconnecting: the server is killed and started again on the same port;
    the client says so, comes back with its nick and rooms, and talks.

Every wait is bounded: pane captures are polled with a deadline."""

import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
import uuid

import pytest

from conftest import SANITIZER_MARKS, WAIT
from test_chat import Client

TMUX = shutil.which("tmux")


def start_server(run, port=0):
    p = run.sockit("chat", "serve", f"tcp://127.0.0.1:{port}", name="sockit chat serve")
    return p, p.port()


def client(run, port, *args, name="sockit chat"):
    """The client in plain mode: stdin and stdout are pipes."""
    return run.sockit("chat", f"tcp://127.0.0.1:{port}", *args, name=name)


# ---- plain mode ---------------------------------------------------------------------------------

def test_plain_mode_two_clients_and_nc_in_rooms_and_private(run):
    srv, port = start_server(run)
    alice = client(run, port, "--nick", "alice", name="alice")
    alice.out.wait_for(rb"^\* guest\d+ is now alice$")
    bob = client(run, port, "--nick", "bob", name="bob")
    bob.out.wait_for(rb"^\* guest\d+ is now bob$")
    alice.out.wait_for(rb"^\* guest\d+ is now bob$")
    nc = run.spawn(["nc", "127.0.0.1", str(port)], name="nc")
    nc.out.wait_for(rb"^JOIN #lobby guest\d+$")
    nc.write(b"/nick carol\r\n/join #dev\r\n")
    nc.out.wait_for(rb"^JOIN #dev carol$")
    alice.out.wait_for(rb"^\* guest\d+ is now carol$")

    alice.write(b"/join #dev\n")
    alice.out.wait_for(rb"^\* alice joined #dev$")
    bob.write(b"/join dev\n")
    bob.out.wait_for(rb"^\* bob joined #dev$")
    alice.out.wait_for(rb"^\* bob joined #dev$")

    alice.write(b"hi dev\n")                      # to the current room, #dev
    bob.out.wait_for(rb"^\[#dev\] alice: hi dev$")
    nc.out.wait_for(rb"^MSG #dev alice hi dev$")
    nc.write(b"hello from nc\r\n")
    alice.out.wait_for(rb"^\[#dev\] carol: hello from nc$")
    bob.out.wait_for(rb"^\[#dev\] carol: hello from nc$")
    bob.write(b"/me waves\n")
    alice.out.wait_for(rb"^\[#dev\] \* bob waves$")
    nc.out.wait_for(rb"^ACT #dev bob waves$")
    nc.write(b"/msg #lobby still here\r\n")
    alice.out.wait_for(rb"^\[#lobby\] carol: still here$")

    # private messages, both ways
    nc.write(b"/msg alice psst\r\n")
    alice.out.wait_for(rb"^\[private\] carol: psst$")
    alice.write(b"/msg bob secret\n")
    bob.out.wait_for(rb"^\[private\] alice: secret$")
    assert b"secret" not in nc.out.value()

    # commands come back as people-readable lines; ESC never passes
    alice.write(b"/who\n")
    alice.out.wait_for(rb"^\* in #dev \(4\): carol alice bob bot$")  # in join order
    alice.write(b"/join #b@d\n")
    alice.out.wait_for(rb"^! .+ \(bad-room\)$")
    bob.write(b"esc \x1b[31mred\n")
    alice.out.wait_for("^\\[#dev\\] bob: esc \ufffd\\[31mred$".encode())
    assert b"\x1b" not in alice.out.value() and b"\x1b" not in bob.out.value()

    # a late joiner gets the history, with its time
    dave = client(run, port, "--nick", "dave", name="dave")
    dave.out.wait_for(rb"^\* guest\d+ is now dave$")
    dave.write(b"/join #dev\n")
    dave.out.wait_for(rb"^\[\d\d:\d\d:\d\dZ\] \[#dev\] alice: hi dev$")
    dave.out.wait_for(rb"^\[\d\d:\d\d:\d\dZ\] \[#dev\] carol: hello from nc$")

    # end of input: /quit, the server's goodbye, exit 0
    alice.close_stdin()
    alice.expect_exit(0)
    assert alice.out.value().endswith(b"* the server says goodbye: goodbye\n")
    bob.out.wait_for(rb"^\* alice quit #dev \(quit\)$")
    nc.out.wait_for(rb"^QUIT #lobby alice quit$")
    # plain mode: no colour, no cursor movement
    for p in (alice, bob, dave):
        assert b"\x1b" not in p.out.value()
    bob.write(b"/quit see you\n")
    bob.expect_exit(0)
    nc.out.wait_for(rb"^QUIT #dev bob see you$")


def test_usage_and_refused_connection(run, sockit_bin):
    code, out, err = run.run("chat", "tcp://127.0.0.1:6667", "--frob")
    assert code == 2 and "unknown option '--frob'" in err
    code, out, err = run.run("chat", "tcp://127.0.0.1:6667", "--pin", "sha256:" + "00" * 32)
    assert code == 2 and "TLS options need a tls:// endpoint" in err, err
    # nothing listens: the first connect fails at once, exit 1
    s = __import__("socket").socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    code, out, err = run.run("chat", f"tcp://127.0.0.1:{port}")
    assert code == 1 and f"connect tcp://127.0.0.1:{port}" in err and "refused" in err, err


# ---- reconnecting -------------------------------------------------------------------------------

def test_reconnects_with_backoff_and_restores_nick_and_rooms(run):
    srv, port = start_server(run)
    dave = client(run, port, "--nick", "dave", name="dave")
    dave.out.wait_for(rb"^\* guest\d+ is now dave$")
    dave.write(b"/join #dev\n")
    dave.out.wait_for(rb"^\* dave joined #dev$")

    srv.p.kill()                                  # a crash: no BYE
    srv.wait()
    dave.out.wait_for(rb"^\* disconnected, reconnecting in 0\.5s$")
    # while the port is closed the attempts fail and the wait doubles
    dave.out.wait_for(rb"^\* connect tcp://127\.0\.0\.1:\d+: Connection refused; "
                      rb"retrying in 1s$")
    srv2, port2 = start_server(run, port)
    assert port2 == port
    dave.out.wait_for(rb"^\* reconnected to tcp://127\.0\.0\.1:%d$" % port, timeout=WAIT + 2)
    dave.out.wait_for(rb"^\* guest\d+ is now dave$(.|\n)*^\* dave joined #dev$")

    eve = Client(port, "eve")
    try:
        eve.send("/join #dev")
        eve.wait("JOIN #dev eve")
        eve.send("/who")
        who = eve.wait(re.compile(rb"^WHO #dev 3 "))
        assert sorted(who.split()[3:]) == [b"bot", b"dave", b"eve"], who
        eve.send("welcome back")
        dave.out.wait_for(rb"^\[#dev\] eve: welcome back$")
        dave.write(b"thanks\n")                   # #dev is the current room again
        eve.wait("MSG #dev dave thanks")
        # a server that says goodbye (shutting down) is reconnected to as well
        srv2.signal(signal.SIGTERM)
        dave.out.wait_for(rb"^\* the server says goodbye: the server is shutting down$")
        dave.out.wait_for(rb"(?s)shutting down$.*^\* disconnected, reconnecting in 0\.5s$")
    finally:
        eve.close()
    assert srv2.wait() == 0
    # piped input while offline waits, and goes once the nick and rooms are back
    dave.write(b"written while offline\n")
    srv3, _ = start_server(run, port)
    srv3.out.wait_for(rb"^NICK #lobby guest\d+ dave\n(.*\n)*JOIN #dev dave\n(.*\n)*"
                      rb"MSG #dev dave written while offline$", timeout=WAIT + 2)
    dave.close_stdin()
    dave.expect_exit(0)
    srv3.out.wait_for(rb"^QUIT #dev dave quit$")
    srv3.signal(signal.SIGTERM)
    assert srv3.wait() == 0

    # offline with nothing waiting: end of input ends the client at once
    srv4, _ = start_server(run, port)
    frank = client(run, port, "--nick", "frank", name="frank")
    frank.out.wait_for(rb"^\* guest\d+ is now frank$")
    srv4.p.kill()
    srv4.wait()
    frank.out.wait_for(rb"^\* disconnected, reconnecting in 0\.5s$")
    frank.close_stdin()
    frank.expect_exit(0)


# ---- terminal mode, in tmux ---------------------------------------------------------------------

class Tmux:
    """One private tmux server (-L) with one 120x30 window running argv."""

    def __init__(self, argv, env=None):
        self.sock = "sockit-test-" + uuid.uuid4().hex[:10]
        self.env = dict(os.environ, **(env or {}))
        self.env.pop("TMUX", None)
        self.tmux("-f", "/dev/null", "new-session", "-d", "-x", "120", "-y", "30",
                  "-s", "t", " ".join(_quote(a) for a in argv))

    def tmux(self, *args):
        r = subprocess.run(["tmux", "-L", self.sock, *args], env=self.env,
                           capture_output=True, timeout=WAIT)
        assert r.returncode == 0, f"tmux {args}: {r.stderr!r}"
        return r.stdout.decode("utf-8", "replace")

    def keys(self, *keys, literal=False):
        self.tmux("send-keys", "-t", "t", *(["-l"] if literal else []), *keys)

    def screen(self, colors=False):
        lines = self.tmux("capture-pane", "-p", *(["-e"] if colors else []), "-t", "t").split("\n")
        while lines and not lines[-1].strip():
            lines.pop()
        return lines

    def cursor(self):
        x, y = self.tmux("display-message", "-p", "-t", "t", "#{cursor_x} #{cursor_y}").split()
        return int(x), int(y)

    def wait(self, pred, what):
        """Polls the screen until pred(lines) holds; fails with the screen."""
        deadline = time.monotonic() + WAIT
        while True:
            lines = self.screen()
            if pred(lines):
                return lines
            if time.monotonic() > deadline:
                raise AssertionError(f"screen never showed {what}:\n" + "\n".join(lines))
            time.sleep(0.02)

    def kill(self):
        subprocess.run(["tmux", "-L", self.sock, "kill-server"], env=self.env,
                       capture_output=True, timeout=WAIT)
        # the server leaves its socket file behind
        tmpdir = self.env.get("TMUX_TMPDIR") or "/tmp"
        try:
            os.unlink(os.path.join(tmpdir, f"tmux-{os.getuid()}", self.sock))
        except OSError:
            pass


def _quote(a):
    return "'" + str(a).replace("'", "'\\''") + "'"


@pytest.fixture
def tty_client(run, sockit_bin, tmp_path):
    """Starts `sockit chat` in a tmux pane; stderr goes to a file that is
    checked for sanitizer reports once the client has exited."""
    if not TMUX:
        pytest.skip("tmux is not installed (scripts/install-deps)")
    made = []

    def start(port, *args, env=None, host="127.0.0.1", prefix=()):
        err = tmp_path / f"client{len(made)}.err"
        t = Tmux([*prefix, "sh", "-c", 'exec "$0" "$@" 2>"$ERRFILE"; ', sockit_bin, "chat",
                  f"tcp://{host}:{port}", *args],
                 env=dict(env or {}, ERRFILE=str(err)))
        made.append((t, err))
        return t

    yield start
    for t, err in made:
        t.kill()
        data = err.read_bytes() if err.exists() else b""
        assert not any(m in data for m in SANITIZER_MARKS), data[-3000:]


def prompt_line(lines):
    return lines[-1] if lines else ""


def test_tty_message_arrives_while_typing_and_the_line_survives(run, tty_client):
    srv, port = start_server(run)
    t = tty_client(port, "--nick", "alice")
    t.wait(lambda ls: prompt_line(ls) == "alice #lobby>", "alice's prompt")
    bob = Client(port, "bob")
    try:
        t.keys("hello wor", literal=True)
        t.wait(lambda ls: prompt_line(ls) == "alice #lobby> hello wor", "the half line")
        bob.send("are you there?")
        lines = t.wait(lambda ls: "[#lobby] bob: are you there?" in ls, "bob's message")
        # the message is above the prompt, the half line is still there and
        # the cursor is right after it
        assert lines[-2:] == ["[#lobby] bob: are you there?", "alice #lobby> hello wor"], lines
        assert t.cursor() == (len("alice #lobby> hello wor"), len(lines) - 1)
        # a burst of lines does not disturb it either
        for i in range(5):
            bob.send(f"line {i}")
        lines = t.wait(lambda ls: "[#lobby] bob: line 4" in ls, "the burst")
        assert prompt_line(lines) == "alice #lobby> hello wor"
        t.keys("ld", literal=True)
        t.keys("Enter")
        bob.wait("MSG #lobby alice hello world")
        lines = t.wait(lambda ls: prompt_line(ls) == "alice #lobby>", "an empty prompt")
        assert lines[-2] == "[#lobby] alice: hello world"
        # on a terminal nicks are coloured (SGR), and only there
        colored = "\n".join(t.screen(colors=True))
        assert re.search(r"\x1b\[\d+mbob\x1b\[(0|39)?m", colored), colored
        # ctrl-D on an empty line: /quit, and the terminal is given back
        t.keys("C-d")
        bob.wait("QUIT #lobby alice quit")
    finally:
        bob.close()


def test_tty_line_editing_and_history(run, tty_client):
    srv, port = start_server(run)
    t = tty_client(port, "--nick", "ed", env={"NO_COLOR": "1"})
    t.wait(lambda ls: prompt_line(ls) == "ed #lobby>", "the prompt")
    bob = Client(port, "bob")
    try:
        # insert at the start, delete at the end, word and line kills
        t.keys("world", literal=True)
        t.keys("C-a")
        t.keys("hello ", literal=True)
        t.keys("End", "BSpace", "d", "Left", "Left", "Delete")
        t.wait(lambda ls: prompt_line(ls) == "ed #lobby> hello word", "edits")
        assert t.cursor()[0] == len("ed #lobby> hello wor")
        t.keys("C-e", "C-w")
        t.wait(lambda ls: prompt_line(ls) == "ed #lobby> hello", "ctrl-W")
        t.keys("there, ünïX", literal=True)
        t.keys("Left", "BSpace")               # a two-byte character goes as one
        t.wait(lambda ls: prompt_line(ls) == "ed #lobby> hello there, ünX", "utf-8 backspace")
        assert t.cursor()[0] == len("ed #lobby> hello there, ün")
        t.keys("Enter")
        bob.wait("MSG #lobby ed hello there, ünX")
        t.keys("second", literal=True)
        t.keys("C-u")
        t.keys("two", literal=True)
        t.keys("Enter")
        bob.wait("MSG #lobby ed two")
        # history: up twice gives the first line back, down the second
        t.keys("Up", "Up")
        t.wait(lambda ls: prompt_line(ls) == "ed #lobby> hello there, ünX", "history")
        t.keys("Down")
        t.wait(lambda ls: prompt_line(ls) == "ed #lobby> two", "history down")
        t.keys("C-a", "C-k", "again", "Enter")
        bob.wait("MSG #lobby ed again")
        # NO_COLOR: no SGR on the screen
        assert "\x1b[3" not in "\n".join(t.screen(colors=True))
        t.keys("/quit bye", "Enter")
        bob.wait("QUIT #lobby ed bye")
    finally:
        bob.close()


def test_tty_reconnect_notice_keeps_the_half_line(run, tty_client):
    srv, port = start_server(run)
    t = tty_client(port, "--nick", "rita")
    t.wait(lambda ls: prompt_line(ls) == "rita #lobby>", "the prompt")
    t.keys("not yet sent", literal=True)
    srv.p.kill()
    srv.wait()
    lines = t.wait(lambda ls: "* disconnected, reconnecting in 0.5s" in ls, "the notice")
    assert prompt_line(lines) in ("(offline) #lobby> not yet sent", "(offline) - > not yet sent")
    lines = back_and_send(run, t, port, "rita", "not yet sent")
    assert f"* reconnected to tcp://127.0.0.1:{port}" in lines


def back_and_send(run, t, port, nick, text):
    """Starts the server again on port; once the client is back with the
    half line text still on its prompt, Enter sends it (checked by a second
    client). Returns the screen seen after the reconnect."""
    start_server(run, port)
    lines = t.wait(lambda ls: prompt_line(ls) == f"{nick} #lobby> {text}", "the reconnect")
    bob = Client(port, "bob")
    try:
        t.keys("Enter")
        bob.wait(f"MSG #lobby {nick} {text}")
    finally:
        bob.close()
    return lines


def unanswering_listener(port):
    """Takes port with a full accept queue (backlog 0, one connection
    queued and never accepted): the kernel drops further SYNs, so a connect
    there waits for its own deadline, as with a host that went silent.
    Returns the sockets to close."""
    lst = socket.socket()
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lst.bind(("127.0.0.1", port))
    lst.listen(0)
    socks = [lst]
    for _ in range(2):
        f = socket.socket()
        f.setblocking(False)
        f.connect_ex(("127.0.0.1", port))
        socks.append(f)
    probe = socket.socket()
    probe.settimeout(0.5)
    try:
        with pytest.raises(socket.timeout):
            probe.connect(("127.0.0.1", port))
    finally:
        probe.close()
    return socks


def test_tty_typing_goes_on_while_a_reconnect_waits(run, tty_client):
    """The reconnect connects on the event loop: while a connect waits on a
    server that does not answer (up to 3 s), keys are echoed at once; the
    attempt then times out, and the client comes back when the server does."""
    srv, port = start_server(run)
    t = tty_client(port, "--nick", "uma")
    t.wait(lambda ls: prompt_line(ls) == "uma #lobby>", "the prompt")
    srv.p.kill()
    srv.wait()
    socks = unanswering_listener(port)
    try:
        t.wait(lambda ls: "* disconnected, reconnecting in 0.5s" in ls, "the notice")
        time.sleep(1.0)  # the attempt began 0.5 s after the notice and waits 3 s
        typed = time.monotonic()
        t.keys("typed while waiting", literal=True)
        t.wait(lambda ls: prompt_line(ls).endswith("> typed while waiting"), "the echo")
        echoed = time.monotonic() - typed
        lines = t.wait(lambda ls: any(re.fullmatch(
            r"\* connect tcp://127\.0\.0\.1:%d: Connection timed out; retrying in 1s" % port, ln)
            for ln in ls), "the timed-out attempt")
        # a blocked loop would echo only when the connect gave up (>= 2.5 s)
        assert echoed < 1.5, f"keys echoed {echoed:.2f} s after typing"
        assert prompt_line(lines) == "(offline) #lobby> typed while waiting", lines
    finally:
        for s in socks:
            s.close()
    back_and_send(run, t, port, "uma", "typed while waiting")


class SlowDNS:
    """A DNS server on a random 127/8 address, port 53, that holds every
    query until release(): then an A question gets ip, others no answer."""

    def __init__(self, ip):
        self.ip = ip
        self.addr = "127.%d.%d.%d" % tuple(random.randint(2, 250) for _ in range(3))
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((self.addr, 53))
        self.sock.settimeout(0.1)
        self.asked = threading.Event()
        self.released = threading.Event()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _answer(self, q):
        i = 12
        while q[i]:
            i += q[i] + 1
        qtype = struct.unpack("!H", q[i + 1:i + 3])[0]
        question = q[12:i + 5]
        head = q[:2] + b"\x81\x80"                      # a reply, recursion, no error
        if qtype == 1:
            return (head + struct.pack("!HHHH", 1, 1, 0, 0) + question + b"\xc0\x0c" +
                    struct.pack("!HHIH", 1, 1, 60, 4) + socket.inet_aton(self.ip))
        return head + struct.pack("!HHHH", 1, 0, 0, 0) + question

    def _serve(self):
        held = []
        deadline = time.monotonic() + 4 * WAIT
        while not self.done.is_set() and time.monotonic() < deadline:
            try:
                q, peer = self.sock.recvfrom(512)
                held.append((q, peer))
                self.asked.set()
            except socket.timeout:
                pass
            if self.released.is_set():
                for q, peer in held:
                    self.sock.sendto(self._answer(q), peer)
                held = []

    def close(self):
        self.done.set()
        self.thread.join(WAIT)
        self.sock.close()


def test_tty_typing_goes_on_while_the_name_is_looked_up(run, tty_client, tmp_path):
    """The server's name is looked up on a helper thread: while the DNS
    server holds its answer, keys are echoed at once; once it answers, the
    client connects with the half line intact. The client runs in its own
    mount namespace whose /etc/resolv.conf names the test's DNS server."""
    if os.geteuid() != 0 or subprocess.run(["unshare", "-m", "true"],
                                           capture_output=True).returncode != 0:
        pytest.skip("needs root for a mount namespace (unshare -m)")
    hosts = re.search(r"^hosts:(.*)$", open("/etc/nsswitch.conf").read(), re.M)
    if (not hosts or "dns" not in hosts.group(1).split() or "resolve" in hosts.group(1)
            or os.path.exists("/var/run/nscd/socket")):
        pytest.skip("getaddrinfo here does not read /etc/resolv.conf itself (nsswitch, nscd)")
    srv, port = start_server(run)
    dns = SlowDNS("127.0.0.1")
    try:
        rc = tmp_path / "resolv.conf"
        rc.write_text(f"nameserver {dns.addr}\noptions timeout:30 attempts:1\n")
        t = tty_client(port, "--nick", "wes", host="chat.sockit.test",
                       env={"RC": str(rc)},
                       prefix=("unshare", "-m", "sh", "-c",
                               'mount --bind "$RC" /etc/resolv.conf && exec "$@"', "ns"))
        assert dns.asked.wait(WAIT), "the client never asked the DNS server"
        typed = time.monotonic()
        t.keys("typed while looking up", literal=True)
        t.wait(lambda ls: prompt_line(ls).endswith("> typed while looking up"), "the echo")
        echoed = time.monotonic() - typed
        assert not dns.released.is_set()
        assert echoed < 1.5, f"keys echoed {echoed:.2f} s after typing"
        dns.released.set()
        t.wait(lambda ls: prompt_line(ls) == "wes #lobby> typed while looking up", "the connection")
        bob = Client(port, "bob")
        try:
            t.keys("Enter")
            bob.wait("MSG #lobby wes typed while looking up")
        finally:
            bob.close()
    finally:
        dns.close()
