"""The chat's WebSocket (/ws of `sockit chat serve --web`, src/services/web.c)
against RFC 6455, with a raw client written here that can send anything:
any header bits, any length form, masked or not, a frame cut into single
bytes, fragments with pings between them.

The battery follows the categories of the Autobahn|Testsuite:
  1 framing, 2 ping/pong, 3 reserved bits, 4 opcodes, 5 fragmentation,
  6 UTF-8, 7 close handling, 9 limits;
then the opening handshake (status codes, Sec-WebSocket-Accept, Origin),
the keep-alive pings (--web-ping), and the chat over WebSocket: each server
text message is one chat event line (no LF), each client text message one
or more lines the user typed (docs/chat.md).

Every expectation is exact: the frames that come back, their opcode and
payload, the close code, and that the server then closes the TCP
connection (RFC 6455 section 7.1.1: the server closes first)."""

import base64
import hashlib
import os
import re
import signal
import socket
import struct
import threading
import time
from typing import NamedTuple

import pytest

from conftest import QUIET, WAIT

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3
MESSAGE_MAX = 16 * 1024   # WEB_WS_MESSAGE_MAX (src/services/web.h)
LINE_MAX = 1024           # SK_CHAT_LINE_MAX: a line, CR LF included
CONTROL_MAX = 125         # longest control frame payload

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


# ---------------------------------------------------------------------------
# A raw WebSocket client
# ---------------------------------------------------------------------------

def accept_for(key):
    """Sec-WebSocket-Accept for a key, by the formula of RFC 6455 4.2.2."""
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def new_key():
    return base64.b64encode(os.urandom(16)).decode()


def apply_mask(data, key):
    """data XOR the 4-byte key repeated (masking and unmasking alike)."""
    if not data:
        return b""
    k = (key * (len(data) // 4 + 1))[:len(data)]
    return (int.from_bytes(data, "big") ^ int.from_bytes(k, "big")).to_bytes(len(data), "big")


def header(opcode, length, fin=True, rsv=0, key=None, form=None):
    """A frame header. rsv: the three RSV bits as a number (4 = RSV1);
    key: the 4-byte masking key, None for an unmasked frame; form: 7, 16
    or 64, the length encoding (the shortest when None), so a length can be
    written in a longer form than it needs."""
    if form is None:
        form = 7 if length < 126 else 16 if length <= 0xFFFF else 64
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    mbit = 0x80 if key is not None else 0
    if form == 7:
        h = bytes([b0, mbit | length])
    elif form == 16:
        h = bytes([b0, mbit | 126]) + struct.pack("!H", length)
    else:
        h = bytes([b0, mbit | 127]) + struct.pack("!Q", length)
    return h + (key or b"")


def frame(opcode, payload=b"", fin=True, rsv=0, mask=True, form=None):
    """A whole client frame, masked with a fresh random key unless
    mask=False."""
    if isinstance(payload, str):
        payload = payload.encode()
    key = os.urandom(4) if mask else None
    body = apply_mask(payload, key) if mask else payload
    return header(opcode, len(payload), fin, rsv, key, form) + body


def close_payload(code, reason=b""):
    return struct.pack("!H", code) + reason


class Frame(NamedTuple):
    fin: bool
    rsv: int
    opcode: int
    payload: bytes

    @property
    def close_code(self):
        return struct.unpack("!H", self.payload[:2])[0] if len(self.payload) >= 2 else None


def handshake_request(port, key, path="/ws", headers=None, version="HTTP/1.1"):
    """The bytes of an opening handshake. headers: (name, value) pairs
    that replace the defaults of the same name (value None drops one); a
    list of several pairs with one name sends that field several times."""
    fields = [("Host", f"127.0.0.1:{port}"), ("Upgrade", "websocket"),
              ("Connection", "Upgrade"), ("Sec-WebSocket-Key", key),
              ("Sec-WebSocket-Version", "13")]
    extra = list(headers or [])
    names = {n.lower() for n, _ in extra}
    fields = [(n, v) for n, v in fields if n.lower() not in names]
    fields += [(n, v) for n, v in extra if v is not None]
    head = f"GET {path} {version}\r\n" + "".join(f"{n}: {v}\r\n" for n, v in fields) + "\r\n"
    return head.encode()


class Conn:
    """A TCP connection with an input buffer read with deadlines."""

    def __init__(self, port, rcvbuf=None):
        self.s = socket.socket()
        if rcvbuf:  # a small window: the server's output queue fills sooner
            self.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.s.settimeout(WAIT)
        self.s.connect(("127.0.0.1", port))
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.local_port = self.s.getsockname()[1]
        self.buf = bytearray()
        self.eof = False

    def _fill(self, deadline):
        """Reads once more; False on timeout. EOF and reset set self.eof."""
        left = deadline - time.monotonic()
        if left <= 0 or self.eof:
            return False
        self.s.settimeout(left)
        try:
            chunk = self.s.recv(65536)
        except socket.timeout:
            return False
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def need(self, n, deadline, what):
        while len(self.buf) < n:
            if not self._fill(deadline):
                raise AssertionError(f"{what}: wanted {n} bytes, have {bytes(self.buf)[:200]!r} "
                                     f"({'EOF' if self.eof else 'timeout'})")

    def take(self, n):
        got = bytes(self.buf[:n])
        del self.buf[:n]
        return got

    def read_head(self, timeout=None):
        """An HTTP response head: (status line, {lower name: [values]})."""
        deadline = time.monotonic() + (WAIT if timeout is None else timeout)
        while b"\r\n\r\n" not in self.buf:
            if not self._fill(deadline):
                raise AssertionError(f"no response head: {bytes(self.buf)[:300]!r} "
                                     f"({'EOF' if self.eof else 'timeout'})")
        head = self.take(self.buf.index(b"\r\n\r\n") + 4).decode("latin-1")
        lines = head.split("\r\n")[:-2]
        fields = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            fields.setdefault(name.lower(), []).append(value.strip())
        return lines[0], fields

    def expect_eof(self, timeout=None, close=True):
        """The server closes the connection and sends nothing more; then
        the client closes its side too (close=False keeps it open)."""
        deadline = time.monotonic() + (WAIT if timeout is None else timeout)
        while not self.eof:
            if not self._fill(deadline) and not self.eof:
                raise AssertionError(f"connection still open; unread {bytes(self.buf)[:200]!r}")
        assert not self.buf, f"unexpected bytes before EOF: {bytes(self.buf)[:200]!r}"
        if close:
            self.s.close()

    def close(self):
        self.s.close()


class WS(Conn):
    """A raw WebSocket client of the chat. With welcome=True (the default)
    it reads the HELLO and JOIN lines every new chat user gets first."""

    def __init__(self, port, headers=None, path="/ws", welcome=True, key=None, after=b"",
                 rcvbuf=None):
        super().__init__(port, rcvbuf)
        key = key or new_key()
        # `after`: frames sent in the same write as the handshake.
        self.s.sendall(handshake_request(port, key, path, headers) + after)
        status, fields = self.read_head()
        assert status == "HTTP/1.1 101 Switching Protocols", (status, fields)
        assert fields.get("upgrade") == ["websocket"], fields
        assert fields.get("connection") == ["Upgrade"], fields
        assert fields.get("sec-websocket-accept") == [accept_for(key)], fields
        self.nick = None
        if welcome:
            hello = self.next_text()
            m = re.match(r"HELLO 1 (\S+) (#\S+) ", hello)
            assert m, hello
            self.nick, self.room = m.group(1), m.group(2)
            self.expect_text(f"JOIN {self.room} {self.nick}")

    # -- sending --
    def send(self, opcode, payload=b"", **kw):
        self.s.sendall(frame(opcode, payload, **kw))

    def send_raw(self, data):
        self.s.sendall(data)

    def say(self, text):
        self.send(TEXT, text)

    def echo_on(self):
        self.say("/echo on")
        self.expect_text("NOTICE echo is on")

    # -- receiving --
    def next_frame(self, timeout=None):
        deadline = time.monotonic() + (WAIT if timeout is None else timeout)
        self.need(2, deadline, "frame header")
        b0, b1 = self.buf[0], self.buf[1]
        assert not b1 & 0x80, f"the server masked a frame (RFC 6455 5.1): {bytes(self.buf[:16])!r}"
        n, hl = b1 & 0x7F, 2
        if n == 126:
            self.need(4, deadline, "16-bit length")
            n, hl = struct.unpack("!H", self.buf[2:4])[0], 4
        elif n == 127:
            self.need(10, deadline, "64-bit length")
            n, hl = struct.unpack("!Q", self.buf[2:10])[0], 10
        self.need(hl + n, deadline, "frame payload")
        data = self.take(hl + n)
        return Frame(bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0x0F, data[hl:])

    def next_text(self, timeout=None):
        f = self.next_frame(timeout)
        assert (f.opcode, f.fin, f.rsv) == (TEXT, True, 0), f
        text = f.payload.decode("utf-8")
        assert "\n" not in text, f"a text message holds more than one line: {text!r}"
        return text

    def expect_text(self, want, timeout=None):
        got = self.next_text(timeout)
        assert got == want, f"expected {want!r}, got {got!r}"

    def expect_frame(self, opcode, payload, timeout=None):
        f = self.next_frame(timeout)
        assert f == Frame(True, 0, opcode, payload), f

    def expect_close(self, code, timeout=None, close=True):
        """The next frame is a close with `code` (None: an empty payload),
        then the server closes the TCP connection, and the client its side
        (unless close=False). Returns the reason."""
        f = self.next_frame(timeout)
        assert (f.opcode, f.fin, f.rsv) == (CLOSE, True, 0), f"expected close {code}, got {f}"
        if code is None:
            assert f.payload == b"", f
            reason = b""
        else:
            assert f.close_code == code, f"close code {f.close_code}, expected {code}: {f}"
            reason = f.payload[2:]
        reason.decode("utf-8")  # a close reason is UTF-8 (RFC 6455 5.5.1)
        self.expect_eof(close=close)
        return reason

    def sync(self):
        """Nothing is pending: a ping's pong is the very next frame (the
        server answers in order, so anything owed would come first)."""
        token = os.urandom(8).hex().encode()
        self.send(PING, token)
        self.expect_frame(PONG, token)

    def quiet(self, duration=QUIET):
        """No frame arrives for `duration`, and the connection stays open."""
        deadline = time.monotonic() + duration
        while self._fill(deadline):
            pass
        assert not self.buf and not self.eof, \
            f"unexpected {bytes(self.buf)[:200]!r} (eof={self.eof})"


class LineClient(Conn):
    """A plain line client of the chat (what nc is)."""

    def __init__(self, port):
        super().__init__(port)
        hello = self.line()
        m = re.match(r"HELLO 1 (\S+) (#\S+) ", hello)
        assert m, hello
        self.nick, self.room = m.group(1), m.group(2)
        assert self.line() == f"JOIN {self.room} {self.nick}"

    def send(self, text):
        self.s.sendall(text.encode() + b"\n")

    def line(self, timeout=None):
        deadline = time.monotonic() + (WAIT if timeout is None else timeout)
        while b"\n" not in self.buf:
            if not self._fill(deadline):
                raise AssertionError(f"no line: have {bytes(self.buf)[:200]!r} "
                                     f"({'EOF' if self.eof else 'timeout'})")
        return self.take(self.buf.index(b"\n") + 1)[:-1].decode()

    def expect(self, want, timeout=None):
        got = self.line(timeout)
        assert got == want, f"expected {want!r}, got {got!r}"

    def sync(self):
        """No chat line is pending for this client: the answer to a command
        is the very next line (a client gets its lines in order)."""
        self.send("/echo off")
        self.expect("NOTICE echo is off")


class Chat:
    """`sockit chat serve` with a line endpoint and a web endpoint, no bot
    and no flood control (a test sends bursts on purpose)."""

    def __init__(self, run, *args):
        self.run = run
        self.p = run.sockit("chat", "serve", "tcp://127.0.0.1:0", "--web", "tcp://127.0.0.1:0",
                            "--no-bot", "--flood-rate", "0", *args, name="sockit chat")
        self.line_port = self.p.port()
        m = self.p.err.wait_for(rb"^sockit: chat page: http://127\.0\.0\.1:(\d+)/$")
        self.web_port = int(m.group(1))

    def ws(self, **kw):
        c = WS(self.web_port, **kw)
        self.run.track(c.s)
        return c

    def conn(self):
        c = Conn(self.web_port)
        self.run.track(c.s)
        return c

    def line(self):
        c = LineClient(self.line_port)
        self.run.track(c.s)
        return c

    def logged(self, client, pattern):
        """Waits for a log line about `client` (by its port) on stderr."""
        rx = rb"^sockit: chat: web 127\.0\.0\.1:%d: " % client.local_port + pattern
        return self.p.err.wait_for(rx)


@pytest.fixture
def chat(run):
    return Chat(run)


@pytest.fixture
def ws(chat):
    """A WebSocket chat user that gets its own messages back (/echo on)."""
    c = chat.ws()
    c.echo_on()
    return c


def said(ws, text):
    """The line a user with /echo on gets back for saying `text`."""
    return f"MSG {ws.room} {ws.nick} {text}"


def lines_of(n, width=1000):
    """A text of exactly n bytes made of lines of at most `width` bytes
    (each a valid chat line) separated by LF; returns (text, lines)."""
    lines, left, i = [], n, 0
    while left > 0:
        w = min(width, left)
        line = (f"L{i:03d}-" + "abcdefghijklmnopqrstuvwxyz" * 40)[:w]
        lines.append(line)
        left -= w + 1  # the LF after it
        i += 1
    text = "\n".join(lines)
    if len(text) < n:  # the last LF was not needed: lengthen the last line
        lines[-1] += "z" * (n - len(text))
        text = "\n".join(lines)
    assert len(text) == n
    return text, lines


# ---------------------------------------------------------------------------
# 1 Framing
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 125, 126, 127, 1000, 1022])
def test_1_text_of_each_length_comes_back_as_one_line(ws, n):
    # 125 is the longest 7-bit length; 126 and 127, the 7-bit field's two
    # markers, are lengths that need the 16-bit form.
    text = ("0123456789abcdefghij" * 60)[:n]
    ws.say(text)
    ws.expect_text(said(ws, text))


def test_1_empty_text_message_is_an_empty_line_ignored(ws):
    ws.send(TEXT, b"")
    ws.send(PING, b"after")
    ws.expect_frame(PONG, b"after")
    ws.sync()


@pytest.mark.parametrize("form", [7, 16, 64])
def test_1_length_in_any_form_even_longer_than_needed(ws, form):
    # Senders must use the shortest form; sockit/ws.h accepts the others.
    ws.send(TEXT, "long form", form=form)
    ws.expect_text(said(ws, "long form"))


@pytest.mark.parametrize("form", [16, 64])
def test_1_message_of_exactly_the_limit_is_accepted(ws, form):
    text, lines = lines_of(MESSAGE_MAX)
    ws.send(TEXT, text, form=form)
    for line in lines:
        ws.expect_text(said(ws, line))
    ws.sync()


def test_1_frame_written_one_byte_at_a_time(ws):
    text = "cut into single bytes " + "x" * 200  # a 16-bit length
    for b in frame(TEXT, text):
        ws.send_raw(bytes([b]))
    ws.expect_text(said(ws, text))


def test_1_many_frames_in_one_write(ws):
    ws.send_raw(b"".join(frame(TEXT, f"burst {i}") for i in range(50)))
    for i in range(50):
        ws.expect_text(said(ws, f"burst {i}"))


def test_1_frames_cut_anywhere_across_writes(ws):
    data = b"".join(frame(TEXT, f"piece {i} " + "y" * (i * 37)) for i in range(12))
    for off in range(0, len(data), 97):
        ws.send_raw(data[off:off + 97])
    for i in range(12):
        ws.expect_text(said(ws, f"piece {i} " + "y" * (i * 37)))


@pytest.mark.parametrize("n,form", [(0, 7), (125, 7), (126, 16), (127, 16), (5, 64),
                                    (MESSAGE_MAX, 16)])
def test_1_binary_message_is_closed_with_1003(chat, n, form):
    c = chat.ws()
    c.send(BINARY, os.urandom(n), form=form)
    assert c.expect_close(1003) == b"binary messages are not part of the chat"


# ---------------------------------------------------------------------------
# 2 Ping and pong
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("payload", [b"", b"hello", bytes(range(256))[:125],
                                     b"\x00\xff binary \xfe"])
def test_2_ping_gets_pong_with_same_payload(ws, payload):
    ws.send(PING, payload)
    ws.expect_frame(PONG, payload)
    ws.sync()


def test_2_ping_of_126_bytes_is_1002(chat):
    c = chat.ws()
    c.send(PING, b"p" * 126)
    assert c.expect_close(1002) == b"protocol error"


def test_2_ping_of_125_bytes_in_16_bit_form_is_answered(ws):
    # The length counts, not its form: sockit/ws.h accepts lengths written
    # in more bytes than needed, control frames included.
    ws.send(PING, b"p" * 125, form=16)
    ws.expect_frame(PONG, b"p" * 125)


def test_2_fragmented_ping_is_1002(chat):
    c = chat.ws()
    c.send(PING, b"frag", fin=False)
    c.expect_close(1002)


def test_2_unsolicited_pong_is_ignored(ws):
    ws.send(PONG, b"nobody asked")
    ws.send(PONG, b"")
    ws.send(PING, b"now")
    ws.expect_frame(PONG, b"now")
    ws.say("still here")
    ws.expect_text(said(ws, "still here"))


def test_2_ten_pings_in_a_row_get_ten_pongs_in_order(ws):
    ws.send_raw(b"".join(frame(PING, f"ping {i}") for i in range(10)))
    for i in range(10):
        ws.expect_frame(PONG, f"ping {i}".encode())
    ws.sync()


def test_2_ping_flood_from_a_client_not_reading_is_answered_in_full(chat):
    # 3000 pings of 125 bytes: more pongs than the server's output queue
    # and the socket buffers hold while the client does not read. The
    # server stops reading (backpressure), and answers the rest once the
    # client reads: every pong, in order, nothing lost, nothing stalled.
    c = chat.ws(rcvbuf=4096)
    n = 3000
    data = b"".join(frame(PING, b"%05d" % i + b"." * 120) for i in range(n))
    writer = threading.Thread(target=c.send_raw, args=(data,), daemon=True)
    writer.start()
    writer.join(0.5)  # let the queue fill while nothing is read
    for i in range(n):
        c.expect_frame(PONG, b"%05d" % i + b"." * 120)
    writer.join(WAIT)
    assert not writer.is_alive()
    c.sync()


def test_2_pong_answers_a_ping_cut_byte_by_byte(ws):
    for b in frame(PING, b"slowly"):
        ws.send_raw(bytes([b]))
    ws.expect_frame(PONG, b"slowly")


# ---------------------------------------------------------------------------
# 3 Reserved bits
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("opcode", [TEXT, BINARY, PING, CLOSE, CONT])
@pytest.mark.parametrize("rsv", [4, 2, 1, 7])
def test_3_reserved_bit_is_1002(chat, rsv, opcode):
    c = chat.ws()
    payload = close_payload(1000) if opcode == CLOSE else b"rsv"
    c.send(opcode, payload, rsv=rsv)
    c.expect_close(1002)


def test_3_message_before_the_bad_frame_is_delivered_and_nothing_after(chat):
    c = chat.ws()
    c.echo_on()
    c.send_raw(frame(TEXT, "good") + frame(TEXT, "bad", rsv=4) + frame(PING, b"late"))
    c.expect_text(said(c, "good"))
    c.expect_close(1002)


# ---------------------------------------------------------------------------
# 4 Opcodes
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_4_reserved_opcode_is_1002(chat, opcode):
    c = chat.ws()
    c.echo_on()
    c.send_raw(frame(TEXT, "first") + frame(opcode, b"what is this") + frame(PING, b"late"))
    c.expect_text(said(c, "first"))
    c.expect_close(1002)


@pytest.mark.parametrize("opcode", [3, 0xB])
def test_4_reserved_opcode_is_refused_from_its_first_byte(chat, opcode):
    # Judged from the header: the rest of the frame need not come.
    c = chat.ws()
    c.send_raw(bytes([0x80 | opcode]))
    c.expect_close(1002)


# ---------------------------------------------------------------------------
# 5 Fragmentation
# ---------------------------------------------------------------------------

def test_5_text_in_two_fragments_is_one_line(ws):
    ws.send(TEXT, "Hello, ", fin=False)
    ws.send(CONT, "fragments")
    ws.expect_text(said(ws, "Hello, fragments"))


@pytest.mark.parametrize("n", [3, 10, 40])
def test_5_text_in_n_fragments_is_one_line(ws, n):
    text = ("fragmented message " * 4)[:n * 2]
    pieces = [text[i * 2:i * 2 + 2] for i in range(n)]
    ws.send(TEXT, pieces[0], fin=False)
    for p in pieces[1:-1]:
        ws.send(CONT, p, fin=False)
    ws.send(CONT, pieces[-1])
    ws.expect_text(said(ws, text))
    ws.sync()


def test_5_empty_fragments_are_allowed(ws):
    ws.send_raw(frame(TEXT, b"", fin=False) + frame(CONT, "middle", fin=False) +
                frame(CONT, b"", fin=False) + frame(CONT, b""))
    ws.expect_text(said(ws, "middle"))


def test_5_ping_between_fragments_is_answered_first(ws):
    ws.send_raw(frame(TEXT, "one ", fin=False) + frame(PING, b"between") +
                frame(CONT, "two ", fin=False) + frame(PONG, b"unasked") +
                frame(PING, b"again") + frame(CONT, "three"))
    ws.expect_frame(PONG, b"between")
    ws.expect_frame(PONG, b"again")
    ws.expect_text(said(ws, "one two three"))


def test_5_fragments_with_a_ping_sent_byte_by_byte(ws):
    data = frame(TEXT, "slow ", fin=False) + frame(PING, b"p") + frame(CONT, "fragments")
    for b in data:
        ws.send_raw(bytes([b]))
    ws.expect_frame(PONG, b"p")
    ws.expect_text(said(ws, "slow fragments"))


def test_5_multiline_message_across_fragments(ws):
    ws.send(TEXT, "first li", fin=False)
    ws.send(CONT, "ne\nsecond", fin=False)
    ws.send(CONT, " line")
    ws.expect_text(said(ws, "first line"))
    ws.expect_text(said(ws, "second line"))


@pytest.mark.parametrize("fin", [True, False])
def test_5_continuation_without_a_start_is_1002(chat, fin):
    c = chat.ws()
    c.send(CONT, "orphan", fin=fin)
    c.expect_close(1002)


def test_5_continuation_after_a_finished_message_is_1002(chat):
    c = chat.ws()
    c.echo_on()
    c.send_raw(frame(TEXT, "done") + frame(CONT, "more"))
    c.expect_text(said(c, "done"))
    c.expect_close(1002)


@pytest.mark.parametrize("opcode", [TEXT, BINARY])
def test_5_new_data_frame_inside_an_unfinished_message_is_1002(chat, opcode):
    c = chat.ws()
    c.send(TEXT, "unfinished", fin=False)
    c.send(opcode, "intruder")
    c.expect_close(1002)


@pytest.mark.parametrize("opcode", [CLOSE, PONG])
def test_5_fragmented_control_frame_is_1002(chat, opcode):
    c = chat.ws()
    c.send(opcode, close_payload(1000) if opcode == CLOSE else b"x", fin=False)
    c.expect_close(1002)


def test_5_fragmented_binary_is_1003_at_its_first_fragment(chat):
    c = chat.ws()
    c.send(BINARY, b"\x00\x01", fin=False)
    c.expect_close(1003)


def test_5_close_between_fragments_is_answered(chat):
    line = chat.line()
    c = chat.ws()
    line.expect(f"JOIN #lobby {c.nick}")
    c.send_raw(frame(TEXT, "never ", fin=False) + frame(CLOSE, close_payload(1000)))
    c.expect_close(1000)
    line.expect(f"QUIT #lobby {c.nick} connection closed")
    line.sync()


# ---------------------------------------------------------------------------
# 6 UTF-8
# ---------------------------------------------------------------------------

VALID_TEXTS = ["κόσμε", "Grüße, €5 – “quoted”", "日本語のテキスト", "emoji \U0001F600 clef \U0001D11E",
               "edges \u00a0\u07ff\u0800\uffef\U00010000\U0010FFFF"]


@pytest.mark.parametrize("text", VALID_TEXTS)
def test_6_valid_multibyte_text_comes_back_unchanged(ws, text):
    ws.say(text)
    ws.expect_text(said(ws, text))


INVALID = {
    "byte ff": b"\xff",
    "byte fe": b"\xfe",
    "stray continuation": b"\x80",
    "lead then ascii": b"\xc3A",
    "overlong slash 2": b"\xc0\xaf",
    "overlong slash 3": b"\xe0\x80\xaf",
    "overlong slash 4": b"\xf0\x80\x80\xaf",
    "overlong max 2": b"\xc1\xbf",
    "surrogate d800": b"\xed\xa0\x80",
    "surrogate dfff": b"\xed\xbf\xbf",
    "above 10ffff": b"\xf4\x90\x80\x80",
    "f5 lead": b"\xf5\x80\x80\x80",
    "5-byte form": b"\xf8\x88\x80\x80\x80",
    "truncated at end": b"\xe2\x82",
}


@pytest.mark.parametrize("bad", INVALID.values(), ids=INVALID.keys())
def test_6_invalid_utf8_in_one_frame_is_1007(chat, bad):
    c = chat.ws()
    c.send(TEXT, b"text " + bad)
    assert c.expect_close(1007) == b"invalid UTF-8"


def test_6_invalid_utf8_split_across_fragments_is_1007(chat):
    c = chat.ws()
    c.send(TEXT, b"half a character \xce", fin=False)
    c.send(CONT, b"A and the rest")
    c.expect_close(1007)


def test_6_invalid_utf8_fails_fast_in_the_first_fragment(chat):
    # The bad byte is refused when it arrives, not when the message ends:
    # the rest of the message is never sent here.
    c = chat.ws()
    c.send(TEXT, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80", fin=False)
    c.expect_close(1007)


def test_6_message_ending_inside_a_character_is_1007(chat):
    c = chat.ws()
    c.send(TEXT, b"ends in \xf0\x9f", fin=False)
    c.send(CONT, b"\x98")  # fin, one byte of U+1F600 still missing
    c.expect_close(1007)


@pytest.mark.parametrize("cut", [[1], [2], [3], [1, 2], [1, 3], [2, 3], [1, 2, 3]])
def test_6_code_point_split_across_fragments_is_accepted(ws, cut):
    data = "clef \U0001D11E!".encode()
    at = [5 + k for k in cut]  # offsets inside the 4-byte character
    bounds = [0] + at + [len(data)]
    pieces = [data[a:b] for a, b in zip(bounds, bounds[1:])]
    ws.send(TEXT, pieces[0], fin=False)
    for p in pieces[1:-1]:
        ws.send(CONT, p, fin=False)
    ws.send(CONT, pieces[-1])
    ws.expect_text(said(ws, "clef \U0001D11E!"))


def test_6_valid_text_with_controls_is_made_safe_by_the_chat(chat):
    # Valid UTF-8 passes the WebSocket; the chat then sanitizes it like any
    # line (docs/chat.md): ESC and C1 controls become U+FFFD.
    line = chat.line()
    c = chat.ws()
    line.expect(f"JOIN #lobby {c.nick}")
    c.say("red \x1b[31malert\u009b bell\x07")
    line.expect(f"MSG #lobby {c.nick} red \ufffd[31malert\ufffd bell\ufffd")


# ---------------------------------------------------------------------------
# 7 Close handling
# ---------------------------------------------------------------------------

def test_7_close_1000_is_echoed_and_server_closes_tcp(chat):
    line = chat.line()
    c = chat.ws()
    line.expect(f"JOIN #lobby {c.nick}")
    c.send(CLOSE, close_payload(1000, b"bye"))
    # The code comes back, without a reason; then the TCP FIN.
    assert c.expect_close(1000) == b""
    line.expect(f"QUIT #lobby {c.nick} connection closed")


def test_7_close_without_payload_is_echoed_without_payload(chat):
    c = chat.ws()
    c.send(CLOSE, b"")
    c.expect_close(None)


def test_7_close_with_one_byte_payload_is_1002(chat):
    c = chat.ws()
    c.send(CLOSE, b"\x03")
    c.expect_close(1002)


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999,
                                  5000, 65535])
def test_7_invalid_close_code_is_1002(chat, code):
    c = chat.ws()
    c.send(CLOSE, close_payload(code))
    c.expect_close(1002)


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011,
                                  3000, 3999, 4000, 4999])
def test_7_valid_close_code_is_echoed(chat, code):
    c = chat.ws()
    c.send(CLOSE, close_payload(code, b"why"))
    assert c.expect_close(code) == b""


def test_7_close_reason_of_123_bytes_is_fine(chat):
    c = chat.ws()
    c.send(CLOSE, close_payload(1000, "é".encode() * 61 + b"x"))
    c.expect_close(1000)


def test_7_close_reason_not_utf8_is_1007(chat):
    c = chat.ws()
    c.send(CLOSE, close_payload(1000, b"bad \xff reason"))
    c.expect_close(1007)


def test_7_client_keeping_tcp_open_after_the_close_is_dropped(chat):
    # The server closes first and waits a little for the client's FIN
    # (lingering close); a client that never closes leaves all the same.
    line = chat.line()
    c = chat.ws()
    line.expect(f"JOIN #lobby {c.nick}")
    c.send(CLOSE, close_payload(1000))
    c.expect_close(1000, close=False)
    line.expect(f"QUIT #lobby {c.nick} connection closed")


def test_7_data_after_close_is_ignored(chat):
    line = chat.line()
    c = chat.ws()
    line.expect(f"JOIN #lobby {c.nick}")
    c.send_raw(frame(CLOSE, close_payload(1000)) + frame(TEXT, "after the close") +
               frame(PING, b"after"))
    c.expect_close(1000)  # no pong, no MSG echo: the close is the last frame
    line.expect(f"QUIT #lobby {c.nick} connection closed")
    line.sync()


def test_7_ws_client_that_just_disconnects_quits_the_chat(chat):
    line = chat.line()
    c = chat.ws()
    line.expect(f"JOIN #lobby {c.nick}")
    c.close()
    line.expect(f"QUIT #lobby {c.nick} connection closed")


# ---------------------------------------------------------------------------
# 9 Limits, masking, binary
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("length,form", [(MESSAGE_MAX + 1, 16), (65535, 16),
                                         (MESSAGE_MAX + 1, 64), (1 << 40, 64), (1 << 62, 64)])
def test_9_message_over_the_limit_is_1009_from_its_header(chat, length, form):
    # Only the header is sent: the server must decide without the payload.
    c = chat.ws()
    c.send_raw(header(TEXT, length, key=os.urandom(4), form=form))
    assert c.expect_close(1009) == b"message too big"
    chat.logged(c, rb"WebSocket closed with 1009: message too big$")


def test_9_length_with_top_bit_set_is_1002(chat):
    c = chat.ws()
    c.send_raw(header(TEXT, 1 << 63, key=os.urandom(4), form=64))
    c.expect_close(1002)


def test_9_fragments_adding_up_over_the_limit_are_1009(chat):
    c = chat.ws()
    c.send(TEXT, "a" * 10000, fin=False)
    c.send_raw(header(CONT, MESSAGE_MAX - 10000 + 1, key=os.urandom(4)))
    c.expect_close(1009)


def test_9_fragments_adding_up_to_the_limit_are_accepted(ws):
    text, lines = lines_of(MESSAGE_MAX)
    data = text.encode()
    ws.send(TEXT, data[:6000], fin=False)
    ws.send(CONT, data[6000:12000], fin=False)
    ws.send(CONT, data[12000:])
    for line in lines:
        ws.expect_text(said(ws, line))


@pytest.mark.parametrize("opcode", [TEXT, PING, CLOSE])
def test_9_unmasked_client_frame_is_1002(chat, opcode):
    c = chat.ws()
    c.send(opcode, close_payload(1000) if opcode == CLOSE else b"naked", mask=False)
    c.expect_close(1002)
    chat.logged(c, rb"WebSocket closed with 1002: protocol error$")


def test_9_line_over_the_chat_limit_is_refused_by_the_chat(ws):
    # 1022 bytes and CR LF is the longest chat line (docs/chat.md).
    ws.say("k" * (LINE_MAX - 2))
    ws.expect_text(said(ws, "k" * (LINE_MAX - 2)))
    ws.say("k" * (LINE_MAX - 1))
    ws.expect_text("ERR line-too-long lines are limited to 1024 bytes; that one was dropped")
    ws.say("the connection stays")
    ws.expect_text(said(ws, "the connection stays"))


def test_9_error_close_reaches_other_users_as_quit(chat):
    line = chat.line()
    c = chat.ws()
    line.expect(f"JOIN #lobby {c.nick}")
    c.send(BINARY, b"\x00")
    c.expect_close(1003)
    line.expect(f"QUIT #lobby {c.nick} binary messages are not part of the chat")


# ---------------------------------------------------------------------------
# The opening handshake
# ---------------------------------------------------------------------------

def refused(chat, request):
    """Sends a handshake that must fail: (status line, fields, body); the
    server then closes the connection."""
    c = chat.conn()
    c.s.sendall(request)
    status, fields = c.read_head()
    n = int(fields["content-length"][0])
    c.need(n, time.monotonic() + WAIT, "error body")
    body = c.take(n)
    assert fields["connection"] == ["close"], fields
    c.expect_eof()
    return status, fields, body


def test_handshake_accept_of_the_rfc_example_key(chat):
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    assert accept_for(key) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455 section 1.3
    c = chat.ws(key=key)  # checks Sec-WebSocket-Accept
    assert c.nick == "guest1"


def test_handshake_accept_of_random_keys(chat):
    for _ in range(5):
        chat.ws(key=new_key()).close()


@pytest.mark.parametrize("key", [None, "", "abc", "dGhlIHNhbXBsZSBub25jZQ", "dGhlIHNhbXBsZSBub25j",
                                 base64.b64encode(b"x" * 15).decode(),
                                 base64.b64encode(b"x" * 17).decode(),
                                 "dGhlIHNhbXBsZSBub25jZR==", "dGhlIHNhbXBsZSBub25j!Q==",
                                 " dGhlIHNhbXBsZSBub25jZQ== x"],
                         ids=["missing", "empty", "short", "no-padding", "16-chars", "15-bytes",
                              "17-bytes", "non-canonical", "bad-char", "junk"])
def test_handshake_bad_key_is_400(chat, key):
    status, _, body = refused(chat, handshake_request(chat.web_port, new_key(),
                                                      headers=[("Sec-WebSocket-Key", key)]))
    assert status == "HTTP/1.1 400 Bad Request"
    assert body == b"400 Bad Request\n"


def test_handshake_duplicate_key_is_400(chat):
    status, _, _ = refused(chat, handshake_request(
        chat.web_port, new_key(),
        headers=[("Sec-WebSocket-Key", new_key()), ("Sec-WebSocket-Key", new_key())]))
    assert status == "HTTP/1.1 400 Bad Request"


@pytest.mark.parametrize("version", ["8", "12", "14", "13, 8", None])
def test_handshake_other_version_is_426_naming_13(chat, version):
    status, fields, _ = refused(chat, handshake_request(
        chat.web_port, new_key(), headers=[("Sec-WebSocket-Version", version)]))
    assert status == "HTTP/1.1 426 Upgrade Required"
    assert fields["sec-websocket-version"] == ["13"]


@pytest.mark.parametrize("headers", [
    [("Upgrade", None)], [("Upgrade", "h2c")], [("Connection", None)],
    [("Connection", "keep-alive")], [("Host", None)],
    [("Host", "127.0.0.1"), ("Host", "127.0.0.1")]],
    ids=["no-upgrade", "upgrade-h2c", "no-connection", "connection-keep-alive", "no-host",
         "two-hosts"])
def test_handshake_without_what_it_needs_is_400(chat, headers):
    status, _, _ = refused(chat, handshake_request(chat.web_port, new_key(), headers=headers))
    assert status == "HTTP/1.1 400 Bad Request"


def test_handshake_over_http_1_0_is_400(chat):
    status, _, _ = refused(chat, handshake_request(chat.web_port, new_key(), version="HTTP/1.0"))
    assert status == "HTTP/1.1 400 Bad Request"


@pytest.mark.parametrize("headers", [
    [("Connection", "keep-alive, Upgrade")], [("Connection", "upgrade")],
    [("Upgrade", "WebSocket")], [("Connection", "keep-alive"), ("Connection", "Upgrade")]],
    ids=["list", "lowercase", "upgrade-case", "two-fields"])
def test_handshake_token_lists_and_case_are_accepted(chat, headers):
    chat.ws(headers=headers)


def test_handshake_with_query_string(chat):
    chat.ws(path="/ws?room=x&v=1")


def test_handshake_origin_of_another_host_is_403(chat):
    c = chat.conn()
    c.s.sendall(handshake_request(chat.web_port, new_key(),
                                  headers=[("Origin", "http://evil.example")]))
    status, fields = c.read_head()
    assert status == "HTTP/1.1 403 Forbidden"
    c.need(int(fields["content-length"][0]), time.monotonic() + WAIT, "body")
    assert c.take(100) == b"403 Forbidden\n"
    c.expect_eof()
    chat.logged(c, rb"WebSocket handshake refused \(403\): Origin not allowed$")


@pytest.mark.parametrize("origin", ["http://127.0.0.1", "http://127.0.0.1:1",
                                    "http://localhost:{port}", "null", "127.0.0.1:{port}",
                                    "http://127.0.0.1:{port}/path", "http://user@127.0.0.1:{port}"])
def test_handshake_other_origins_are_403(chat, origin):
    status, _, _ = refused(chat, handshake_request(
        chat.web_port, new_key(), headers=[("Origin", origin.format(port=chat.web_port))]))
    assert status == "HTTP/1.1 403 Forbidden"


def test_handshake_two_origins_are_403(chat):
    same = f"http://127.0.0.1:{chat.web_port}"
    status, _, _ = refused(chat, handshake_request(
        chat.web_port, new_key(), headers=[("Origin", same), ("Origin", same)]))
    assert status == "HTTP/1.1 403 Forbidden"


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_handshake_origin_equal_to_host_is_accepted(chat, scheme):
    chat.ws(headers=[("Origin", f"{scheme}://127.0.0.1:{chat.web_port}")])


def test_handshake_without_origin_is_accepted(chat):
    chat.ws(headers=[("Origin", None)])


def test_handshake_web_origin_allows_one_more(run):
    chat = Chat(run, "--web-origin", "chat.example:8443")
    chat.ws(headers=[("Origin", "https://chat.example:8443")])
    chat.ws(headers=[("Origin", "https://CHAT.example:8443")])
    for other in ("https://chat.example", "https://chat.example:8444",
                  "https://other.example:8443"):
        status, _, _ = refused(chat, handshake_request(chat.web_port, new_key(),
                                                       headers=[("Origin", other)]))
        assert status == "HTTP/1.1 403 Forbidden", other
    chat.ws(headers=[("Origin", f"http://127.0.0.1:{chat.web_port}")])  # its own still


@pytest.mark.parametrize("host", ["localhost:{port}", "LocalHost:{port}", "chat.localhost:{port}",
                                  "127.0.0.1:{port}", "127.1.2.3:{port}"])
def test_handshake_loopback_host_names_are_accepted(chat, host):
    """Origin equal to Host, and Host a name of loopback: the page as
    opened by the person at this machine."""
    host = host.format(port=chat.web_port)
    chat.ws(headers=[("Host", host), ("Origin", f"http://{host}")])


@pytest.mark.parametrize("host", ["evil.example:{port}", "evil.example", "localhost.evil.example:{port}",
                                  "10.1.2.3:{port}", "[2001:db8::1]:{port}", "127.0.0.1.evil.example"])
def test_handshake_dns_rebinding_is_403(chat, host):
    """A page of evil.example whose name an attacker re-points at 127.0.0.1
    sends Host and Origin of evil.example, which agree: on a loopback
    connection a name that is not loopback's is refused all the same."""
    host = host.format(port=chat.web_port)
    c = chat.conn()
    c.s.sendall(handshake_request(chat.web_port, new_key(),
                                  headers=[("Host", host), ("Origin", f"http://{host}")]))
    status, fields = c.read_head()
    assert status == "HTTP/1.1 403 Forbidden"
    c.need(int(fields["content-length"][0]), time.monotonic() + WAIT, "body")
    assert c.take(100) == b"403 Forbidden\n"
    c.expect_eof()
    chat.logged(c, rb"WebSocket handshake refused \(403\): Host is not a loopback name on a "
                   rb"loopback connection \(DNS rebinding\?\); allow it with --web-origin$")


def test_handshake_web_origin_allows_a_loopback_alias(run):
    """A name of this machine's own (an /etc/hosts alias, say) is let in
    once it is allowed by name."""
    chat = Chat(run, "--web-origin", "chat.internal")
    chat.ws(headers=[("Host", "chat.internal"), ("Origin", "https://chat.internal")])
    status, _, _ = refused(chat, handshake_request(
        chat.web_port, new_key(), headers=[("Host", "other.internal"),
                                           ("Origin", "https://other.internal")]))
    assert status == "HTTP/1.1 403 Forbidden"


def test_handshake_web_origin_star_allows_any(run):
    chat = Chat(run, "--web-origin", "*")
    chat.ws(headers=[("Origin", "https://anywhere.example")])


def test_frames_pipelined_behind_the_handshake(chat):
    c = chat.ws(after=frame(PING, b"eager") + frame(TEXT, "/nick eager"))
    c.expect_frame(PONG, b"eager")
    c.expect_text(f"NICK #lobby {c.nick} eager")


# ---------------------------------------------------------------------------
# Keep-alive pings (--web-ping)
# ---------------------------------------------------------------------------

def test_keepalive_ping_answered_stays_silent_one_is_dropped(run):
    # Both clients at once: the quiet one that answers and the dead one.
    chat = Chat(run, "--web-ping", "1")
    line = chat.line()
    alive, dead = chat.ws(), chat.ws()
    line.expect(f"JOIN #lobby {alive.nick}")
    line.expect(f"JOIN #lobby {dead.nick}")
    alive.expect_text(f"JOIN #lobby {dead.nick}")
    dead.expect_frame(PING, b"sockit", timeout=3)
    # The dead one: no answer within another period, dropped without close.
    # Meanwhile the quiet one answers two rounds of pings and stays.
    pongs, seen_quit = 0, False
    deadline = time.monotonic() + 6
    while pongs < 2 or not seen_quit:
        f = alive.next_frame(timeout=deadline - time.monotonic())
        if f.opcode == PING:
            assert f.payload == b"sockit", f
            alive.send(PONG, f.payload)
            pongs += 1
        else:
            assert f == Frame(True, 0, TEXT, f"QUIT #lobby {dead.nick} ping timeout".encode()), f
            seen_quit = True
    line.expect(f"QUIT #lobby {dead.nick} ping timeout")
    dead.expect_eof()
    chat.logged(dead, rb"no answer to a ping within 1000 ms$")
    alive.echo_on()
    alive.say("still here")
    alive.expect_text(said(alive, "still here"))


def test_keepalive_any_frame_counts_as_an_answer(run):
    chat = Chat(run, "--web-ping", "1")
    c = chat.ws()
    c.echo_on()
    deadline = time.monotonic() + 1.3
    while time.monotonic() < deadline:  # a talking client is never pinged
        c.say("talk")
        c.expect_text(said(c, "talk"))
        c.quiet(0.25)
    # Once quiet: a ping; a text message instead of a pong is an answer too.
    c.expect_frame(PING, b"sockit", timeout=2)
    c.say("busy")
    c.expect_text(said(c, "busy"))
    c.expect_frame(PING, b"sockit", timeout=3)


def test_sigterm_right_after_a_websocket_user_left_exits_at_once(chat):
    # The upgrade re-arms the connection's timer for pings: no timer of a
    # user that left may remain (it kept the loop alive and fired on freed
    # memory).
    line = chat.line()
    c = chat.ws()
    line.expect(f"JOIN #lobby {c.nick}")
    c.send(CLOSE, close_payload(1000))
    c.expect_close(1000)
    line.expect(f"QUIT #lobby {c.nick} connection closed")
    line.close()
    chat.p.signal(signal.SIGTERM)
    chat.p.expect_exit(0)


def test_a_websocket_user_that_left_leaves_no_timer_behind(run):
    chat = Chat(run, "--web-ping", "1")
    line = chat.line()
    gone = chat.ws()
    line.expect(f"JOIN #lobby {gone.nick}")
    gone.send(CLOSE, close_payload(1000))
    gone.expect_close(1000)
    line.expect(f"QUIT #lobby {gone.nick} connection closed")
    # A ping period after the first user's upgrade its timer would fire;
    # the next user's first ping comes just after that.
    stay = chat.ws()
    stay.expect_frame(PING, b"sockit", timeout=3)
    stay.send(PONG, b"sockit")
    stay.echo_on()
    stay.say("after the timer")
    stay.expect_text(said(stay, "after the timer"))
    chat.p.signal(signal.SIGTERM)
    stay.expect_text("BYE the server is shutting down")
    stay.expect_close(1000)
    chat.p.expect_exit(0)


# ---------------------------------------------------------------------------
# The chat over WebSocket
# ---------------------------------------------------------------------------

def test_chat_hello_first_then_join(chat):
    c = chat.ws()
    assert (c.nick, c.room) == ("guest1", "#lobby")
    c.sync()


def test_chat_nick_and_messages_both_ways(chat):
    line = chat.line()
    c = chat.ws()
    line.expect(f"JOIN #lobby {c.nick}")
    c.say("/nick webby")
    c.expect_text(f"NICK #lobby {c.nick} webby")
    line.expect(f"NICK #lobby {c.nick} webby")
    c.say("hello from the browser")
    line.expect("MSG #lobby webby hello from the browser")
    line.send("hello from nc")
    c.expect_text(f"MSG #lobby {line.nick} hello from nc")
    line.send("/msg webby psst")
    c.expect_text(f"MSG webby {line.nick} psst")
    c.say(f"/msg {line.nick} psst back")
    line.expect(f"MSG {line.nick} webby psst back")
    c.sync()
    line.sync()


def test_chat_multiline_message_is_two_lines(chat):
    line = chat.line()
    c = chat.ws()
    line.expect(f"JOIN #lobby {c.nick}")
    c.say("line one\nline two")
    line.expect(f"MSG #lobby {c.nick} line one")
    line.expect(f"MSG #lobby {c.nick} line two")
    c.say("crlf one\r\ncrlf two\r\n")  # CR LF ends a line too; a last LF adds none
    line.expect(f"MSG #lobby {c.nick} crlf one")
    line.expect(f"MSG #lobby {c.nick} crlf two")
    c.say("\n\nafter empty lines\n")
    line.expect(f"MSG #lobby {c.nick} after empty lines")
    line.sync()


def test_chat_two_websocket_users_and_a_room(chat):
    a, b = chat.ws(), chat.ws()
    a.expect_text(f"JOIN #lobby {b.nick}")
    a.say("/join #web")
    a.expect_text(f"JOIN #web {a.nick}")
    b.say("/join web")
    b.expect_text(f"JOIN #web {b.nick}")
    a.expect_text(f"JOIN #web {b.nick}")
    b.say("in the web room")
    a.expect_text(f"MSG #web {b.nick} in the web room")
    a.say("/who")
    a.expect_text(f"WHO #web 2 {a.nick} {b.nick}")


def test_chat_websocket_user_not_reading_is_dropped_others_go_on(chat):
    # docs/chat.md: a client whose queue overflows is cut off, nobody waits.
    # The talker sends batches of 40 lines of 1 KB; the watcher reads each
    # batch, the WebSocket user never reads.
    talker, watcher = chat.line(), chat.line()
    talker.expect(f"JOIN #lobby {watcher.nick}")
    sleeper = chat.ws(rcvbuf=4096)
    talker.expect(f"JOIN #lobby {sleeper.nick}")
    watcher.expect(f"JOIN #lobby {sleeper.nick}")
    text, dropped, n = "x" * 1000, False, 0
    for batch in range(40):
        talker.s.sendall(b"".join(b"%d %s\n" % (n + i, text.encode()) for i in range(40)))
        for i in range(40):
            got = watcher.line()
            if got == f"QUIT #lobby {sleeper.nick} send queue full":
                dropped = True
                got = watcher.line()
            assert got == f"MSG #lobby {talker.nick} {n + i} {text}", got
        n += 40
        if dropped:
            break
    assert dropped, f"the user that does not read was never dropped ({n} KB sent)"
    chat.p.err.wait_for(rb"\(web\)\) disconnected: send queue full$")
    talker.send("after the drop")
    watcher.expect(f"MSG #lobby {talker.nick} after the drop")


def test_chat_quit_says_bye_then_closes_1000(chat):
    line = chat.line()
    c = chat.ws()
    line.expect(f"JOIN #lobby {c.nick}")
    c.say("/quit off to bed")
    c.expect_text("BYE goodbye")
    c.expect_close(1000)
    line.expect(f"QUIT #lobby {c.nick} off to bed")


def test_chat_server_shutdown_says_bye_then_closes_1000(chat):
    c = chat.ws()
    chat.p.signal(signal.SIGTERM)
    c.expect_text("BYE the server is shutting down")
    c.expect_close(1000)
    chat.p.expect_exit(0)


def test_chat_hub_serves_chat_and_web_together(run):
    p = run.sockit("serve", "chat", "tcp://127.0.0.1:0", "web", "tcp://127.0.0.1:0")
    chat_ep = p.out.wait_for(rb"^chat +tcp://127\.0\.0\.1:(\d+)$")
    web_ep = p.out.wait_for(rb"^web +tcp://127\.0\.0\.1:(\d+)$")
    line = LineClient(int(chat_ep.group(1)))
    run.track(line.s)
    c = WS(int(web_ep.group(1)))
    run.track(c.s)
    line.expect(f"JOIN {line.room} {c.nick}")
    c.say("from the hub's web side")
    line.expect(f"MSG {line.room} {c.nick} from the hub's web side")
    line.send("and back")
    c.expect_text(f"MSG {c.room} {line.nick} and back")
    c.send(CLOSE, close_payload(1001))
    c.expect_close(1001)
