"""`sockit chat serve`: the chat server (seed 002, tasks 1 and 4) against real
clients - nc, `sockit connect`, raw Python sockets - over tcp (v4, v6) and
unix: rooms, private messages, nicks, history, the operator on standard
input, the bot and its rules file (reloaded by SIGHUP), and hostile peers:
lines cut in pieces, 500 connects at once, a client that never reads,
floods, over-long lines, escape sequences and invalid UTF-8.

The protocol is docs/chat.md; every assertion here is on exact lines."""

import os
import re
import selectors
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import QUIET, WAIT, wait_signal_taken

FFFD = "\ufffd".encode()


def start(run, *args, endpoints=("tcp://127.0.0.1:0",)):
    """Starts `sockit chat serve` and returns (process, port of the first
    endpoint). Its stdin is a pipe: the operator's console."""
    p = run.sockit("chat", "serve", *endpoints, *args, name="sockit chat")
    return p, p.port()


class Client:
    """A chat client on a raw socket: reads lines with a deadline and keeps
    every line it read in `seen`."""

    def __init__(self, port=None, nick=None, sock=None, rcvbuf=None):
        if sock is None:
            sock = socket.socket()
            if rcvbuf:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.settimeout(WAIT)
            sock.connect(("127.0.0.1", port))
        self.s = sock
        self.buf = bytearray()
        self.seen = []
        hello = self.next()
        m = re.match(rb"HELLO 1 (\S+) (#\S+) ", hello)
        assert m, hello
        self.nick, self.room = m.group(1).decode(), m.group(2).decode()
        assert self.next() == f"JOIN {self.room} {self.nick}".encode()
        if nick:
            self.rename(nick)

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        if not data.endswith(b"\n"):
            data += b"\n"
        self.s.sendall(data)

    def _line(self, deadline):
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.s.settimeout(left)
            try:
                chunk = self.s.recv(65536)
            except socket.timeout:
                return None
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                raise EOFError(bytes(self.buf))
            self.buf += chunk
        line, _, rest = bytes(self.buf).partition(b"\n")
        self.buf = bytearray(rest)
        self.seen.append(line)
        return line

    def next(self, timeout=None):
        """The next line (without LF); fails on timeout or EOF."""
        deadline = time.monotonic() + (WAIT if timeout is None else timeout)
        try:
            line = self._line(deadline)
        except EOFError as e:
            raise AssertionError(f"{self.nick}: EOF; partial {e.args[0][:200]!r}")
        assert line is not None, f"{self.nick}: no line within the deadline; seen {self.seen[-5:]}"
        return line

    def wait(self, want, timeout=None):
        """Reads lines until one equals `want` (str) or matches it (a
        compiled bytes regex); returns it."""
        deadline = time.monotonic() + (WAIT if timeout is None else timeout)
        skipped = []
        while True:
            try:
                line = self._line(deadline)
            except EOFError as e:
                raise AssertionError(f"{self.nick}: EOF waiting for {want!r}; skipped "
                                     f"{skipped[-8:]}, partial {e.args[0][:100]!r}")
            if line is None:
                raise AssertionError(f"{self.nick}: no {want!r} within the deadline; "
                                     f"skipped {skipped[-8:]}")
            if (line == want.encode()) if isinstance(want, str) else want.search(line):
                return line
            skipped.append(line)

    def quiet(self, duration=QUIET, ignore=None):
        """No line (but those matching `ignore`) arrives for `duration`."""
        deadline = time.monotonic() + duration
        while True:
            line = self._line(deadline)
            if line is None:
                return
            assert ignore and ignore.search(line), f"{self.nick}: unexpected {line!r}"

    def until_eof(self, timeout=None):
        """Lines until the server closes; fails if it does not in time."""
        deadline = time.monotonic() + (WAIT if timeout is None else timeout)
        lines = []
        while True:
            try:
                line = self._line(deadline)
            except EOFError:
                return lines
            assert line is not None, f"{self.nick}: still open; got {lines[-5:]}"
            lines.append(line)

    def rename(self, nick):
        old = self.nick
        self.send(f"/nick {nick}")
        self.wait(f"NICK {self.room} {old} {nick}")
        self.nick = nick

    def close(self):
        self.s.close()


@pytest.fixture
def clients():
    made = []
    yield made
    for c in made:
        c.close()


def connect(clients, port, nick=None, **kw):
    c = Client(port, nick, **kw)
    clients.append(c)
    return c


# ---- talking ------------------------------------------------------------------------------

def test_nc_sockit_connect_and_socket_clients_talk(run, clients):
    p, port = start(run)
    alice = connect(clients, port, "alice")
    nc = run.spawn(["nc", "127.0.0.1", str(port)], name="nc")
    nc.out.wait_for(rb"^JOIN #lobby (guest\d+)$")
    nc.write(b"/nick bob\r\nhello from nc\r\n")
    alice.wait("MSG #lobby bob hello from nc")
    sk = run.sockit("connect", f"tcp://127.0.0.1:{port}", name="sockit connect")
    sk.out.wait_for(rb"^JOIN #lobby guest\d+$")
    sk.write(b"/nick carol\nhi, I am sockit's own client\n")
    alice.wait("MSG #lobby carol hi, I am sockit's own client")
    nc.out.wait_for(rb"^MSG #lobby carol hi, I am sockit's own client$")
    alice.send("welcome both")
    nc.out.wait_for(rb"^MSG #lobby alice welcome both$")
    sk.out.wait_for(rb"^MSG #lobby alice welcome both$")
    # the sender does not get its own line back (unless /echo on)
    alice.send("/echo on")
    alice.wait("NOTICE echo is on")
    alice.send("now echoed")
    alice.wait("MSG #lobby alice now echoed")
    # the operator sees every room event on the server's standard output
    p.out.wait_for(rb"^MSG #lobby bob hello from nc\n(.*\n)*MSG #lobby carol hi, I am sockit's own "
                   rb"client\n(.*\n)*MSG #lobby alice welcome both$")


def test_rooms_join_part_who_rooms(run, clients):
    p, port = start(run)
    alice, bob, carol = (connect(clients, port, n) for n in ("alice", "bob", "carol"))
    alice.send("/join #dev")
    alice.wait("JOIN #dev alice")
    carol.send("/join dev")  # the '#' may be left out
    carol.wait("JOIN #dev carol")
    alice.wait("JOIN #dev carol")
    alice.send("in dev")  # the current room is the last joined
    carol.wait("MSG #dev alice in dev")
    alice.send("/msg #lobby in the lobby")
    bob.wait("MSG #lobby alice in the lobby")
    carol.wait("MSG #lobby alice in the lobby")
    bob.send("/who #dev")
    bob.wait("WHO #dev 3 alice carol bot")
    bob.send("/rooms")
    assert bob.wait(re.compile(rb"^ROOM #dev ")) == b"ROOM #dev 2"
    assert bob.next() == b"ROOM #lobby 3"
    assert bob.next() == b"NOTICE 2 rooms"
    bob.send("/msg #dev sneaking in")
    bob.wait("ERR not-in-room you are not in #dev")
    carol.send("/part #dev see you")
    alice.wait("PART #dev carol see you")
    assert carol.wait(re.compile(rb"^PART #dev")) == b"PART #dev carol see you"
    assert carol.next() == b"NOTICE you are talking in #lobby now"
    carol.send("/part")
    carol.wait("PART #lobby carol")
    assert carol.next() == b"NOTICE you are in no room now: /join #room to talk"
    carol.send("anyone?")
    carol.wait("ERR not-in-room you are in no room: /join #room to talk")
    alice.send("/part")
    alice.wait("PART #dev alice")
    bob.send("/rooms")  # #dev is gone with its last member; #lobby stays
    assert bob.wait(re.compile(rb"^ROOM ")) == b"ROOM #lobby 2"
    assert bob.next() == b"NOTICE 1 room"
    for bad, shown in ((b"/join #bad!name", b"#bad!name"), (b"/join #" + b"x" * 40, b"#" + b"x" * 40),
                       (b"/join #\x1b[1m", b"#" + FFFD + b"[1m")):
        bob.send(bad)
        assert bob.wait(re.compile(rb"^ERR bad-room ")).startswith(
            b"ERR bad-room '" + shown + b"' is not a valid room")
    bob.send("/join")
    bob.wait("ERR bad-args usage: /join #room")


def test_private_messages(run, clients):
    p, port = start(run)
    alice, bob, carol = (connect(clients, port, n) for n in ("alice", "bob", "carol"))
    alice.send("/msg BOB psst, just you")  # nicks match without regard to case
    bob.wait("MSG bob alice psst, just you")
    alice.send("/msg nobody hello?")
    alice.wait("ERR no-such-nick nobody: nobody by that nick")
    alice.send("/msg bob")
    alice.wait("ERR bad-args usage: /msg NICK TEXT or /msg #room TEXT")
    alice.send("/echo on")
    alice.wait("NOTICE echo is on")
    alice.send("/msg bob second")
    bob.wait("MSG bob alice second")
    alice.wait("MSG bob alice second")
    carol.quiet()  # carol heard nothing of it
    assert not any(b"psst" in l or b"second" in l for l in carol.seen)
    assert b"psst" not in p.out.value()  # nor did the operator's console


def test_nicks_clash_validation_and_rename_notices(run, clients):
    p, port = start(run)
    alice, bob = connect(clients, port, "alice"), connect(clients, port, "bob")
    alice.send("/nick BOB")
    alice.wait("ERR nick-taken BOB is already in use")
    alice.send("/nick bot")  # the bot's nick is taken while the bot runs
    alice.wait("ERR nick-taken bot is already in use")
    alice.send("/nick 1alice")
    assert alice.wait(re.compile(rb"^ERR bad-nick ")).startswith(
        b"ERR bad-nick '1alice' is not a valid nick: 1 to 24 of")
    alice.send("/nick " + "a" * 25)
    alice.wait(re.compile(rb"^ERR bad-nick 'a{25}'"))
    alice.send("/nick alice")
    alice.wait("NOTICE you are alice already")
    alice.send("/nick Alice")  # a change of case is a rename
    bob.wait("NICK #lobby alice Alice")
    alice.wait("NICK #lobby alice Alice")
    alice.send("/nick alicia")
    bob.wait("NICK #lobby Alice alicia")
    bob.send("/nick alice")  # the old nick is free again
    bob.wait("NICK #lobby bob alice")
    alice.wait("NICK #lobby bob alice")
    alice.send("/nick")
    alice.wait("ERR bad-args usage: /nick NAME")
    # guests get fresh names; a guest name taken by hand is skipped
    alice.send("/nick guest3")
    bob.wait("NICK #lobby alicia guest3")
    carol = connect(clients, port)
    assert carol.nick == "guest4"


def test_history_replayed_on_join(run, clients):
    p, port = start(run, "--history", "3")
    alice = connect(clients, port, "alice")
    for i in range(5):
        alice.send(f"message {i}")
    alice.send("/me waves")
    p.out.wait_for(rb"^ACT #lobby alice waves$")
    bob = Client(port)
    clients.append(bob)
    stamp = rb"HIST \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ "
    got = [bob.next() for _ in range(3)]
    for line, want in zip(got, [b"MSG #lobby alice message 3", b"MSG #lobby alice message 4",
                                b"ACT #lobby alice waves"]):
        assert re.fullmatch(stamp + re.escape(want), line), line
    bob.quiet()
    # each room has its own history
    alice.send("/join #dev")
    alice.wait("JOIN #dev alice")
    alice.send("dev talk")
    p.out.wait_for(rb"^MSG #dev alice dev talk$")
    bob.send("/join #dev")
    bob.wait("JOIN #dev guest2")
    assert re.fullmatch(stamp + rb"MSG #dev alice dev talk", bob.next())
    # --history 0: nothing is replayed
    p0, port0 = start(run, "--history", "0")
    a0 = connect(clients, port0, "a0")
    a0.send("gone with the wind")
    p0.out.wait_for(rb"^MSG #lobby a0 gone with the wind$")
    b0 = connect(clients, port0)
    b0.quiet()


# ---- the operator ----------------------------------------------------------------------------

def test_operator_console(run, clients):
    p, port = start(run)
    alice, bob = connect(clients, port, "alice"), connect(clients, port, "bob")
    bob.send("/join #dev")
    bob.wait("JOIN #dev bob")
    p.write(b"hello everyone, this is the server\n")
    alice.wait("MSG * @server hello everyone, this is the server")
    bob.wait("MSG * @server hello everyone, this is the server")
    p.write(b"/say #dev dev only\n")
    bob.wait("MSG #dev @server dev only")
    alice.quiet()
    p.write(b"/say #nowhere x\n")
    p.out.wait_for(rb"^ERR no-such-room #nowhere: no such room$")
    p.write(b"/who\n")
    p.out.wait_for(rb"^WHO #lobby 3 (alice bob|bob alice) bot$")
    p.write(b"/rooms\n")
    p.out.wait_for(rb"^ROOM #dev 1\nROOM #lobby 2\nNOTICE 2 rooms$")
    p.write(b"/kick bob spamming\n")
    p.out.wait_for(rb"^NOTICE bob kicked$")
    lines = bob.until_eof()
    assert lines[-1] == b"BYE kicked by the operator: spamming", lines
    alice.wait("QUIT #lobby bob kicked by the operator: spamming")
    p.write(b"/kick bob\n")
    p.out.wait_for(rb"^ERR no-such-nick bob: nobody by that nick$")
    p.write(b"/frob\n")
    p.out.wait_for(rb"^ERR unknown-command /frob: try /help$")
    # users cannot use operator commands
    alice.send("/kick alice")
    alice.wait("ERR no-permission /kick is for the server's operator")
    # the console ends (EOF); the chat goes on
    p.close_stdin()
    carol = connect(clients, port, "carol")
    carol.send("still here")
    alice.wait("MSG #lobby carol still here")


# ---- the bot -----------------------------------------------------------------------------------

def test_bot_builtin_behaviours(run, clients):
    p, port = start(run)
    alice, bob = connect(clients, port, "alice"), connect(clients, port, "bob")

    def ask(question):
        alice.send(question)
        line = bob.wait(re.compile(rb"^MSG #lobby bot "))
        assert alice.wait(re.compile(rb"^MSG #lobby bot ")) == line  # the asker gets it too
        return line[len(b"MSG #lobby bot "):].decode()

    assert ask("bot: hello") == "Hello alice! Welcome to #lobby."
    assert ask("Bot, Bonjour!") == "Hello alice! Welcome to #lobby."
    assert re.fullmatch(r"It is \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4} here\.",
                        ask("bot: what time is it?"))
    assert ask("@bot help").startswith("Ask me: hello, time, who, echo TEXT, joke, quote, help.")
    assert ask("bot: who is here") in ("In #lobby: alice, bob (2 people, and me).",
                                       "In #lobby: bob, alice (2 people, and me).")
    assert ask("bot: echo Hello,   World") == "Hello,   World"
    assert ask("bot: tell me a joke") == "I'd tell you a UDP joke, but you might not get it."
    assert ask("bot: another joke").startswith("Hi, I'd like to hear a TCP joke.")
    assert ask("bot: a quote please") == ("Be conservative in what you send, be liberal in "
                                          "what you accept. - Jon Postel")
    assert ask("bot: frobnicate the widgets") == ("Sorry alice, I don't understand that. "
                                                 "Try 'bot: help'.")
    # not addressed: no answer
    alice.send("the bot is nice")
    bob.wait("MSG #lobby alice the bot is nice")
    bob.quiet()
    # privately: the answer comes privately
    alice.send("/msg bot hi")
    alice.wait("MSG alice bot Hello alice!")
    bob.quiet()


def test_no_bot(run, clients):
    p, port = start(run, "--no-bot")
    alice, bob = connect(clients, port, "alice"), connect(clients, port, "bob")
    alice.send("bot: hello")
    bob.wait("MSG #lobby alice bot: hello")
    bob.quiet()
    alice.send("/nick bot")  # free without the bot
    bob.wait("NICK #lobby alice bot")
    bob.send("/who")
    bob.wait(re.compile(rb"^WHO #lobby 2 (bot bob|bob bot)$"))


def test_bot_rules_file_and_sighup_reload(run, clients, tmp_path):
    rules = tmp_path / "bot.rules"
    rules.write_text("# the lab's bot\n"
                     "ping => pong {nick}\n"
                     "what is * => {1} is a thing, {nick}; ask in {room}\n"
                     "*weather* => Sunny in {room}, says {bot}\n"
                     "hello => rules win over built-ins\n")
    p, port = start(run, "--rules", str(rules))
    p.err.wait_for(rb"^sockit: chat: bot 'bot': 4 rules from ")
    alice, bob = connect(clients, port, "alice"), connect(clients, port, "bob")

    def ask(q):
        alice.send(q)
        return bob.wait(re.compile(rb"^MSG #lobby bot "))[len(b"MSG #lobby bot "):]

    assert ask("bot: PING") == b"pong alice"
    assert ask("bot: what is   TCP? ") == b"TCP? is a thing, alice; ask in #lobby"
    assert ask("bot: how is the weather today") == b"Sunny in #lobby, says bot"
    assert ask("bot: hello") == b"rules win over built-ins"
    assert ask("bot: joke") == b"I'd tell you a UDP joke, but you might not get it."

    rules.write_text("ping => PONG v2 \x1b[31m\n")
    wait_signal_taken(p.pid, signal.SIGHUP)
    p.signal(signal.SIGHUP)
    p.err.wait_for(rb"sockit: chat: bot: 1 rules loaded")
    assert ask("bot: ping") == b"PONG v2 " + FFFD + b"[31m"  # replies are sanitized too
    assert ask("bot: hello") == b"Hello alice! Welcome to #lobby."  # back to the built-in

    rules.write_text("ping => v3\nthis line has no arrow\n")
    p.signal(signal.SIGHUP)
    p.err.wait_for(rb"sockit: chat: bot: rules \S+:2: expected 'PATTERN => REPLY' "
                   rb"\(the old rules stay\)")
    assert ask("bot: ping") == b"PONG v2 " + FFFD + b"[31m"
    # the operator can reload too
    rules.write_text("ping => v4\n")
    p.write(b"/reload\n")
    p.out.wait_for(rb"^NOTICE bot: 1 rules loaded$")
    assert ask("bot: ping") == b"v4"


def test_bad_rules_file_at_start(run, tmp_path):
    bad = tmp_path / "bad.rules"
    bad.write_text("ok => fine\n => no pattern\n")
    code, out, err = run.run("chat", "serve", "tcp://127.0.0.1:0", "--rules", str(bad))
    assert code == 2 and "bad.rules:2: PATTERN is empty" in err, err
    code, out, err = run.run("chat", "serve", "tcp://127.0.0.1:0", "--rules", str(tmp_path / "no"))
    assert code == 2 and "No such file or directory" in err, err


# ---- framing and hostile peers -----------------------------------------------------------------

def test_line_in_three_pieces_arrives_as_one(run, clients):
    p, port = start(run)
    alice, bob = connect(clients, port, "alice"), connect(clients, port, "bob")
    alice.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for piece in (b"one li", b"ne in thr"):
        alice.s.sendall(piece)
        bob.quiet(0.2)  # nothing is delivered before the LF
    alice.s.sendall(b"ee pieces\r\n")
    assert bob.next() == b"MSG #lobby alice one line in three pieces"
    # many lines in one write come out as many lines, in order
    alice.s.sendall(b"a\nb\r\nc\n")
    assert [bob.next() for _ in range(3)] == [b"MSG #lobby alice a", b"MSG #lobby alice b",
                                              b"MSG #lobby alice c"]
    # a last line without LF counts when the client shuts its side
    alice.s.sendall(b"no newline at the end")
    alice.s.shutdown(socket.SHUT_WR)
    assert bob.next() == b"MSG #lobby alice no newline at the end"
    assert bob.next() == b"QUIT #lobby alice connection closed"


def test_long_lines_are_refused_and_the_connection_stays(run, clients):
    p, port = start(run)
    alice, bob = connect(clients, port, "alice"), connect(clients, port, "bob")
    alice.send(b"x" * 5000 + b"\nshort after\n")
    alice.wait("ERR line-too-long lines are limited to 1024 bytes; that one was dropped")
    assert bob.next() == b"MSG #lobby alice short after"
    # exactly at the limit: 1023 bytes and LF, or 1022 and CR LF
    alice.send(b"y" * 1023 + b"\n")
    assert bob.next() == b"MSG #lobby alice " + b"y" * 1023
    alice.send(b"z" * 1022 + b"\r\n")
    assert bob.next() == b"MSG #lobby alice " + b"z" * 1022
    alice.send(b"w" * 1023 + b"\r\n")
    alice.wait(re.compile(rb"^ERR line-too-long "))
    alice.send("still connected")
    assert bob.next() == b"MSG #lobby alice still connected"


def test_escapes_controls_and_invalid_utf8_are_neutralised(run, clients):
    p, port = start(run)
    alice, bob = connect(clients, port, "alice"), connect(clients, port, "bob")
    alice.send(b"/nick \x1b[2Jevil")
    err = alice.wait(re.compile(rb"^ERR bad-nick "))
    assert err.startswith(b"ERR bad-nick '" + FFFD + b"[2Jevil' is not a valid nick")
    alice.send(b"red \x1b[31mRED\x1b[0m bell\x07 nul\x00 cr\rx del\x7f tab\tx")
    assert bob.next() == (b"MSG #lobby alice red " + FFFD + b"[31mRED" + FFFD + b"[0m bell" +
                          FFFD + b" nul" + FFFD + b" cr" + FFFD + b"x del" + FFFD + b" tab x")
    alice.send(b"bad utf8 \xff\xfe \xc0\xaf \xed\xa0\x80 \xe6\x97 ok \xc3\xa9 \xe4\xbd\xa0")
    assert bob.next() == (b"MSG #lobby alice bad utf8 " + FFFD * 2 + b" " + FFFD * 2 + b" " +
                          FFFD * 3 + b" " + FFFD + b" ok \xc3\xa9 \xe4\xbd\xa0")
    alice.send(b"c1 \xc2\x9b2J bidi \xe2\x80\xaeexe.txt")
    assert bob.next() == b"MSG #lobby alice c1 " + FFFD + b"2J bidi " + FFFD + b"exe.txt"
    alice.send(b"/me \x1b]0;owned\x07")
    assert bob.next() == b"ACT #lobby alice " + FFFD + b"]0;owned" + FFFD
    alice.send(b"/quit \x1b[H\x1b[J")
    assert bob.next() == b"QUIT #lobby alice " + FFFD + b"[H" + FFFD + b"[J"
    for line in bob.seen:
        assert not any(b < 0x20 or b == 0x7F for b in line), line


def test_flood_control(run, clients):
    p, port = start(run, "--flood-burst", "10", "--flood-rate", "1")
    alice = Client(port)  # no /nick: every line below counts against the burst
    bob = connect(clients, port, "bob")
    clients.append(alice)
    alice.send("".join(f"line {i}\n" for i in range(15)))
    for i in range(10):
        assert bob.next() == f"MSG #lobby {alice.nick} line {i}".encode()
    bob.quiet()
    alice.quiet(ignore=re.compile(rb"^(ERR flood|JOIN|NICK) "))
    flood = [l for l in alice.seen if l.startswith(b"ERR flood")]
    assert flood == [b"ERR flood too many lines: at most 10 at once and 1 a second; lines are "
                     b"dropped until you slow down"], alice.seen
    time.sleep(1.1)  # the bucket refills one line a second: this is the rule under test
    alice.send("after a pause")
    assert bob.next() == f"MSG #lobby {alice.nick} after a pause".encode()


def test_500_simultaneous_connects_all_get_in_and_get_a_broadcast(run):
    p, port = start(run)
    n = 500
    socks = []
    sel = selectors.DefaultSelector()
    try:
        for i in range(n):  # every connect started before any is read
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            socks.append(s)
        bufs = {s: bytearray() for s in socks}
        for s in socks:
            sel.register(s, selectors.EVENT_READ)

        def read_until(pred, what):
            deadline = time.monotonic() + 4 * WAIT
            waiting = {s for s in socks if not pred(bufs[s])}
            while waiting:
                left = deadline - time.monotonic()
                assert left > 0, f"{len(waiting)} of {n} clients never got {what}"
                for key, _ in sel.select(min(left, 1)):
                    data = key.fileobj.recv(65536)
                    assert data, f"a client was closed waiting for {what}"
                    bufs[key.fileobj] += data
                    if pred(bufs[key.fileobj]):
                        waiting.discard(key.fileobj)

        read_until(lambda b: re.search(rb"^HELLO 1 guest\d+ #lobby .*\nJOIN #lobby guest\d+\n",
                                       b, re.M), "HELLO")
        nicks = {re.search(rb"^HELLO 1 (guest\d+)", bufs[s], re.M).group(1) for s in socks}
        assert len(nicks) == n
        p.write(b"/who\n")
        p.out.wait_for(rb"^WHO #lobby %d " % (n + 1))  # everyone, and the bot
        p.write(b"everyone got in\n")
        read_until(lambda b: b"\nMSG * @server everyone got in\n" in b, "the broadcast")
    finally:
        sel.close()
        for s in socks:
            s.close()


def test_never_reading_client_is_cut_off_and_the_others_get_everything(run, clients):
    p, port = start(run, "--out-queue", "16384", "--flood-rate", "0", "--quiet")
    readers = [connect(clients, port, f"reader{i}") for i in range(3)]
    slow = connect(clients, port, "slowpoke", rcvbuf=4096)
    sender = connect(clients, port, "sender")
    for r in readers:
        r.wait(re.compile(rb"^NICK #lobby guest\d+ sender$"))
    pad = "x" * 180
    lines = [f"seq {i:05d} {pad}" for i in range(3000)]
    # Batches of 50 lines (10 KB) that every reader has to see before the
    # next: the readers never have more than a batch queued, while the
    # client that never reads piles up every batch.
    for b in range(0, len(lines), 50):
        sender.send("".join(l + "\n" for l in lines[b:b + 50]))
        for r in readers:
            r.wait(f"MSG #lobby sender {lines[b + 49]}")
    for r in readers:
        got = [l for l in r.seen if l.startswith(b"MSG #lobby sender seq ")]
        assert got == [f"MSG #lobby sender {l}".encode() for l in lines]
        assert b"QUIT #lobby slowpoke send queue full" in r.seen
    p.err.wait_for(rb"sockit: chat: slowpoke \(127\.0\.0\.1:\d+\) disconnected: send queue full")
    # Cut off with a reset: the server's side is gone at once, not left in
    # FIN-WAIT holding what the kernel could not send to a client that does
    # not read.
    held = subprocess.run(["ss", "-Htn", "state", "all", "src", f"127.0.0.1:{port}",
                           "dst", "127.0.0.1:%d" % slow.s.getsockname()[1]],
                          capture_output=True, text=True, timeout=WAIT).stdout
    assert held.strip() == "", held
    # What the slow client did get is the start of the stream, in order,
    # and then the end of the connection.
    got = [l for l in slow.until_eof() if l.startswith(b"MSG #lobby sender seq ")]
    assert 0 < len(got) < len(lines)
    assert got == [f"MSG #lobby sender {l}".encode() for l in lines[:len(got)]]


def test_idle_timeout(run, clients):
    p, port = start(run, "--idle-timeout", "0.5")
    alice = connect(clients, port, "alice")
    bob = connect(clients, port, "bob")
    lines = alice.until_eof(timeout=WAIT)
    assert lines[-1] == b"BYE idle for 0.5 s", lines
    p.err.wait_for(rb"sockit: chat: (alice|bob) \(127\.0\.0\.1:\d+\) disconnected: idle for 0\.5 s")
    bob.until_eof(timeout=WAIT)


def test_quit_and_disconnect_notices(run, clients):
    p, port = start(run)
    alice, bob, carol = (connect(clients, port, n) for n in ("alice", "bob", "carol"))
    bob.send("/quit off to lunch")
    assert bob.until_eof()[-1] == b"BYE goodbye"
    alice.wait("QUIT #lobby bob off to lunch")
    carol.s.shutdown(socket.SHUT_WR)  # a clean end of stream
    alice.wait("QUIT #lobby carol connection closed")
    dave = connect(clients, port, "dave")
    dave.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
    dave.close()  # a reset
    alice.wait("QUIT #lobby dave connection error")
    p.out.wait_for(rb"^QUIT #lobby bob off to lunch\n(.*\n)*QUIT #lobby carol connection closed$")


def test_endpoints_tcp4_tcp6_unix_share_rooms(run, clients, sockdir):
    path = os.path.join(sockdir, "chat.sock")
    spath = os.path.join(sockdir, "chat.seq")
    p = run.sockit("chat", "serve", "tcp://127.0.0.1:0", "tcp://[::1]:0", "unix:" + path,
                   "unix-seqpacket:" + spath)
    v4 = int(p.err.wait_for(rb"listening on tcp://127\.0\.0\.1:(\d+)").group(1))
    v6 = int(p.err.wait_for(rb"listening on tcp://\[::1\]:(\d+)").group(1))
    p.err.wait_for(rb"listening on unix:" + re.escape(path.encode()))
    p.err.wait_for(rb"listening on unix-seqpacket:" + re.escape(spath.encode()))
    a = connect(clients, v4, "four")
    s6 = socket.create_connection(("::1", v6), timeout=WAIT)
    b = Client(sock=s6, nick="six")
    su = socket.socket(socket.AF_UNIX)
    su.settimeout(WAIT)
    su.connect(path)
    c = Client(sock=su, nick="unix")
    clients.extend([b, c])
    a.send("from v4")
    b.wait("MSG #lobby four from v4")
    c.wait("MSG #lobby four from v4")
    c.send("from unix")
    a.wait("MSG #lobby unix from unix")
    b.wait("MSG #lobby unix from unix")
    # seqpacket: each packet is lines, and what follows its last LF is one too
    sq = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sq.settimeout(WAIT)
    sq.connect(spath)
    d = Client(sock=sq, nick="packets")
    clients.append(d)
    sq.send(b"one packet\nand its tail")
    a.wait("MSG #lobby packets one packet")
    a.wait("MSG #lobby packets and its tail")
    p.signal(signal.SIGTERM)
    assert p.wait() == 0
    assert not os.path.exists(path) and not os.path.exists(spath)


def test_sigterm_says_bye_to_everyone(run, clients):
    # A grace period longer than any wait here: the server must not need it.
    p, port = start(run, "--grace", "60")
    alice, bob = connect(clients, port, "alice"), connect(clients, port, "bob")
    wait_signal_taken(p.pid, signal.SIGTERM)
    p.signal(signal.SIGTERM)
    for c in (alice, bob):
        assert c.until_eof()[-1] == b"BYE the server is shutting down"
        c.close()
    assert p.wait() == 0


# ---- the command line and the hub ---------------------------------------------------------------

@pytest.mark.parametrize("args,msg", [
    (["chat"], "expected 'serve ENDPOINT...'"),
    (["chat", "udp://127.0.0.1:6667"], "the chat client needs a tcp:// or unix: endpoint"),
    (["chat", "tcp://127.0.0.1:6667", "--nick", "9bad"], "bad --nick '9bad'"),
    (["chat", "serve"], "chat serve needs at least one ENDPOINT"),
    (["chat", "serve", "udp://127.0.0.1:0"], "a chat needs a stream endpoint"),
    (["chat", "serve", "tcp://127.0.0.1:0", "--history", "1001"], "bad --history"),
    (["chat", "serve", "tcp://127.0.0.1:0", "--room", "lobby"], "bad --room"),
    (["chat", "serve", "tcp://127.0.0.1:0", "--bot-nick", "2bad"], "bad --bot-nick"),
    (["chat", "serve", "tcp://127.0.0.1:0", "--out-queue", "100"], "bad --out-queue"),
    (["chat", "serve", "tcp://127.0.0.1:0", "--no-bot", "--rules", "x"], "--rules needs the bot"),
    (["chat", "serve", "tcp://127.0.0.1:0", "--frob"], "unknown option '--frob'"),
])
def test_usage_errors(run, args, msg):
    code, out, err = run.run(*args)
    assert code == 2 and msg in err, err


def test_help(run):
    code, out, err = run.run("chat", "--help")
    assert code == 0 and b"Usage: sockit chat serve ENDPOINT... [OPTIONS]" in out


def test_custom_room_and_bot_nick(run, clients):
    p, port = start(run, "--room", "#agora", "--bot-nick", "Marvin")
    a = connect(clients, port, "a")
    assert a.room == "#agora"
    a.send("marvin: hello")
    a.wait("MSG #agora Marvin Hello a! Welcome to #agora.")


def test_hub_serves_chat_on_one_loop(run, clients):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", 6667))
        s.listen()
    except OSError:
        pytest.skip("hub port tcp/6667 is taken on this machine")
    finally:
        s.close()
    try:
        p = run.sockit("serve", "--workers", "2", "--grace", "0.2")
        p.out.wait_for(rb"^chat +tcp://127\.0\.0\.1:6667$")
    except AssertionError:
        pytest.skip(f"the hub did not start (a port is taken?): {p.err.text()[-200:]}")
    users = [connect(clients, 6667) for _ in range(20)]
    users[0].send("/who")  # all 20 in one chat, whichever worker accepted them
    users[0].wait(re.compile(rb"^WHO #lobby 21 "))
    users[0].send("bot: hello")
    users[19].wait(f"MSG #lobby bot Hello {users[0].nick}! Welcome to #lobby.")
    p.signal(signal.SIGINT)
    assert p.wait() == 0


def test_chat_on_a_datagram_endpoint_says_it_cannot(run):
    """The datagram is dropped unanswered (an answer could feed a reply loop,
    issue 19) and the operator is told on stderr."""
    p = run.sockit("serve", "chat", "udp://127.0.0.1:0")
    m = p.out.wait_for(rb"^chat +udp://127\.0\.0\.1:(\d+)$")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.sendto(b"hello\n", ("127.0.0.1", int(m.group(1))))
    p.err.wait_for(rb"^sockit: chat: datagram from 127\.0\.0\.1:%d dropped: the chat needs a "
                   rb"stream endpoint \(tcp or unix\)$" % s.getsockname()[1])
    s.setblocking(False)
    with pytest.raises(BlockingIOError):
        s.recv(200)
    s.close()
    p.signal(signal.SIGINT)
    assert p.wait() == 0
