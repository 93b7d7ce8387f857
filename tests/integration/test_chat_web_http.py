"""The HTTP side of the chat's web endpoint (`sockit chat serve --web`,
src/services/web.c over the parser of include/sockit/http.h): the page's
files, their headers, conditional requests, and a strict parser's answers
to malformed, over-long and slow requests, pipelining and keep-alive.

Requests are written byte for byte on raw sockets, so each test knows
exactly what the server saw; every response is read in full (status line,
fields, Content-Length bytes of body), and a test that expects the server
to close checks that nothing but EOF follows."""

import hashlib
import os
import re
import socket
import threading
import time

import pytest

from conftest import REPO, WAIT

WEB_DIR = os.path.join(REPO, "web")
BODY_MAX = 16 * 1024      # WEB_BODY_MAX (src/services/web.h)
KEEPALIVE_REQUESTS = 100  # WEB_KEEPALIVE_REQUESTS
HEAD_MAX = 8192           # SK_HTTP_HEAD_MAX (sockit/http.h)
TARGET_MAX = 2048         # SK_HTTP_TARGET_MAX
HEADERS_MAX = 32          # SK_HTTP_HEADERS_MAX

# Content types by extension, as cmake/embed_web.cmake assigns them.
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".mjs": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
         ".svg": "image/svg+xml", ".png": "image/png", ".ico": "image/x-icon",
         ".json": "application/json", ".txt": "text/plain; charset=utf-8"}

DATE = re.compile(r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|"
                  r"Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d GMT$")


def web_files():
    """Paths ("/app.js") and bytes of the files under web/ the build
    embeds (hidden files and editor leftovers are not part of the page)."""
    files = {}
    for root, dirs, names in os.walk(WEB_DIR):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in names:
            if name.startswith(".") or name.endswith("~"):
                continue
            full = os.path.join(root, name)
            with open(full, "rb") as f:
                files["/" + os.path.relpath(full, WEB_DIR).replace(os.sep, "/")] = f.read()
    return files


def etag_of(data):
    return '"%s"' % hashlib.sha256(data).hexdigest()[:20]


class Response:
    def __init__(self, status_line, fields, body):
        self.status_line = status_line
        version, code, reason = status_line.split(" ", 2)
        self.version, self.status, self.reason = version, int(code), reason
        self.fields = fields  # lower-case name -> [values]
        self.body = body

    def __getitem__(self, name):
        values = self.fields.get(name.lower(), [])
        assert len(values) == 1, f"{name}: {values} in {self.status_line} {self.fields}"
        return values[0]

    def has(self, name):
        return name.lower() in self.fields

    def __repr__(self):
        return f"<{self.status_line} {self.fields} {self.body[:80]!r}>"


class HTTP:
    """A client connection: requests are raw bytes, responses are read in
    full with a deadline."""

    def __init__(self, port, rcvbuf=None):
        self.port = port
        self.s = socket.socket()
        if rcvbuf:  # a small window: the server's output queue fills sooner
            self.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.s.settimeout(WAIT)
        self.s.connect(("127.0.0.1", port))
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.eof = False

    def send(self, data):
        self.s.sendall(data)

    def _fill(self, deadline):
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

    def response(self, body=True, timeout=None):
        """The next response; body=False for one that has none (HEAD, 304)."""
        deadline = time.monotonic() + (WAIT if timeout is None else timeout)
        while b"\r\n\r\n" not in self.buf:
            if not self._fill(deadline):
                raise AssertionError(f"no response head: {bytes(self.buf)[:300]!r} "
                                     f"({'EOF' if self.eof else 'timeout'})")
        end = self.buf.index(b"\r\n\r\n")
        head = bytes(self.buf[:end]).decode("latin-1")
        del self.buf[:end + 4]
        lines = head.split("\r\n")
        fields = {}
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            assert colon and name == name.strip(), f"malformed response field {line!r}"
            fields.setdefault(name.lower(), []).append(value.strip())
        r = Response(lines[0], fields, b"")
        if body:
            n = int(r["Content-Length"])
            while len(self.buf) < n:
                if not self._fill(deadline):
                    raise AssertionError(f"body of {n} bytes: have {len(self.buf)} ({r!r})")
            r.body = bytes(self.buf[:n])
            del self.buf[:n]
        return r

    def ask(self, data, body=True):
        self.send(data)
        return self.response(body)

    def expect_eof(self, timeout=None):
        """The server closes the connection and sends nothing more."""
        deadline = time.monotonic() + (WAIT if timeout is None else timeout)
        while not self.eof:
            if not self._fill(deadline) and not self.eof:
                raise AssertionError(f"connection still open; unread {bytes(self.buf)[:200]!r}")
        assert not self.buf, f"unexpected bytes before EOF: {bytes(self.buf)[:300]!r}"

    def still_open(self):
        """The connection is open: a further request is answered."""
        r = self.ask(get("/index.html", self.port))
        assert r.status == 200, r

    def close(self):
        self.s.close()


def get(path, port, *fields, method="GET", version="HTTP/1.1"):
    """The bytes of a request with Host and the given "Name: value" fields."""
    head = f"{method} {path} {version}\r\nHost: 127.0.0.1:{port}\r\n"
    return (head + "".join(f + "\r\n" for f in fields) + "\r\n").encode()


class Web:
    """`sockit chat serve` with a web endpoint."""

    def __init__(self, run, *args):
        self.run = run
        self.p = run.sockit("chat", "serve", "tcp://127.0.0.1:0", "--web", "tcp://127.0.0.1:0",
                            "--no-bot", *args, name="sockit chat")
        m = self.p.err.wait_for(rb"^sockit: chat page: http://127\.0\.0\.1:(\d+)/$")
        self.port = int(m.group(1))

    def conn(self, rcvbuf=None):
        c = HTTP(self.port, rcvbuf)
        self.run.track(c.s)
        return c

    def req(self, path, *fields, **kw):
        return get(path, self.port, *fields, **kw)


@pytest.fixture
def web(run):
    return Web(run)


def check_common(r):
    """What every answer carries (src/services/web.h)."""
    assert r.version == "HTTP/1.1", r
    assert DATE.match(r["Date"]), r["Date"]
    assert r["Server"] == "sockit"
    assert r.has("Content-Type") and r.has("Cache-Control"), r
    csp = r["Content-Security-Policy"]
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, csp
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp, csp
    assert r["X-Content-Type-Options"] == "nosniff"
    assert r["X-Frame-Options"] == "DENY"
    assert r["Referrer-Policy"] == "no-referrer"


def refused_and_closed(c, status, reason):
    r = c.response()
    assert r.status_line == f"HTTP/1.1 {status} {reason}", r
    assert r.body == f"{status} {reason}\n".encode(), r
    assert r["Content-Type"] == "text/plain; charset=utf-8"
    assert r["Cache-Control"] == "no-store"
    assert r["Connection"] == "close"
    check_common(r)
    c.expect_eof()
    return r


# ---------------------------------------------------------------------------
# The page's files
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/", "/index.html", "/?from=link", "/index.html?x=1#y"])
def test_get_the_page(web, path):
    page = web_files()["/index.html"]
    c = web.conn()
    r = c.ask(web.req(path))
    assert r.status_line == "HTTP/1.1 200 OK", r
    assert r["Content-Type"] == "text/html; charset=utf-8"
    assert r["Content-Length"] == str(len(page)) and r.body == page
    assert r["ETag"] == etag_of(page)
    assert r["Cache-Control"] == "no-cache"
    assert r["Connection"] == "keep-alive"
    check_common(r)
    c.still_open()


def test_every_file_under_web_is_served_with_its_type(web):
    files = web_files()
    assert "/index.html" in files
    c = web.conn()
    for path, data in sorted(files.items()):
        r = c.ask(web.req(path))
        assert r.status == 200, (path, r)
        ext = os.path.splitext(path)[1].lower()
        assert r["Content-Type"] == TYPES.get(ext, "application/octet-stream"), (path, r)
        assert r.body == data, f"{path}: served bytes differ from web/ (stale build?)"
        assert r["ETag"] == etag_of(data)
        check_common(r)


def test_script_and_style_of_the_page_have_their_types(web):
    page = web_files()["/index.html"].decode()
    scripts = re.findall(r'<script[^>]*\ssrc="([^"]+)"', page)
    styles = re.findall(r'<link[^>]*rel="stylesheet"[^>]*href="([^"]+)"', page)
    assert scripts and styles, "the page names no script or stylesheet"
    c = web.conn()
    for ref, ctype in [(s, "text/javascript; charset=utf-8") for s in scripts] + \
                      [(s, "text/css; charset=utf-8") for s in styles]:
        r = c.ask(web.req("/" + ref.lstrip("/")))
        assert r.status == 200, (ref, r)
        assert r["Content-Type"] == ctype, (ref, r)


def test_everything_the_page_refers_to_is_there(web):
    page = web_files()["/index.html"].decode()
    refs = {u for u in re.findall(r'\s(?:src|href)="([^"#:]+)"', page)}
    c = web.conn()
    for ref in sorted(refs):
        r = c.ask(web.req("/" + ref.lstrip("/")))
        assert r.status == 200, (ref, r)


def test_page_has_no_inline_script(web):
    # The policy forbids inline script: the page must not need any.
    page = web_files()["/index.html"].decode()
    for m in re.finditer(r"<script([^>]*)>(.*?)</script>", page, re.S):
        assert "src=" in m.group(1) and not m.group(2).strip(), m.group(0)[:200]
    assert not re.search(r"\son[a-z]+=", page), "inline event handler in the page"


def test_head_has_the_headers_of_get_and_no_body(web):
    c = web.conn()
    g = c.ask(web.req("/"))
    c.send(web.req("/", method="HEAD") + web.req("/nope"))
    h = c.response(body=False)
    assert h.status_line == "HTTP/1.1 200 OK"
    for name in ("Content-Type", "Content-Length", "ETag", "Cache-Control",
                 "Content-Security-Policy", "X-Content-Type-Options", "Connection"):
        assert h[name] == g[name], name
    # No body: the next bytes are the next response.
    assert c.response().status == 404


def test_head_of_a_missing_file_is_404_without_body(web):
    c = web.conn()
    c.send(web.req("/nope", method="HEAD") + web.req("/"))
    r = c.response(body=False)
    assert r.status_line == "HTTP/1.1 404 Not Found" and r["Content-Length"] == "14"
    assert c.response().status == 200


# ---------------------------------------------------------------------------
# Conditional requests
# ---------------------------------------------------------------------------

def test_if_none_match_gives_304_without_body(web):
    page = web_files()["/index.html"]
    tag = etag_of(page)
    c = web.conn()
    c.send(web.req("/", f"If-None-Match: {tag}") + web.req("/nope"))
    r = c.response(body=False)
    assert r.status_line == "HTTP/1.1 304 Not Modified", r
    assert r["ETag"] == tag
    # RFC 9110 8.6: a 304 may carry Content-Length only as a 200 would have.
    assert r["Content-Length"] == str(len(page))
    assert r["Cache-Control"] == "no-cache"
    assert c.response().status == 404  # no body came between


def test_if_none_match_in_a_list(web):
    tag = etag_of(web_files()["/index.html"])
    c = web.conn()
    c.send(web.req("/index.html", f'If-None-Match: "0000", {tag}, "1111"'))
    assert c.response(body=False).status == 304


def test_if_none_match_of_another_tag_gives_200(web):
    c = web.conn()
    r = c.ask(web.req("/", 'If-None-Match: "00000000000000000000"'))
    assert r.status == 200 and r.body == web_files()["/index.html"]


@pytest.mark.parametrize("value", ["W/{tag}", '"0000", W/{tag}', "*", ' W/"1" ,{tag} '])
def test_if_none_match_compares_weakly_and_star_matches(web, value):
    # RFC 9110 13.1.2: If-None-Match uses the weak comparison (a W/ prefix
    # does not matter) and "*" matches any current representation.
    tag = etag_of(web_files()["/index.html"])
    c = web.conn()
    c.send(web.req("/", "If-None-Match: " + value.format(tag=tag)) + web.req("/nope"))
    r = c.response(body=False)
    assert r.status == 304 and r["ETag"] == tag, r
    assert c.response().status == 404


@pytest.mark.parametrize("value", ["W/\"0000\"", "{upper}", "{bare}", "**"])
def test_if_none_match_of_no_matching_tag_gives_200(web, value):
    tag = etag_of(web_files()["/index.html"])
    c = web.conn()
    value = value.format(upper=tag.upper(), bare=tag.strip('"'))
    r = c.ask(web.req("/", "If-None-Match: " + value))
    assert r.status == 200 and r.body == web_files()["/index.html"], (value, r)


# ---------------------------------------------------------------------------
# Not found, methods
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/nope", "/index.html/", "/INDEX.HTML", "/../index.html",
                                  "/%69ndex.html", "//index.html", "/ws/", "/web/index.html"])
def test_404_for_anything_else_and_the_connection_stays(web, path):
    c = web.conn()
    r = c.ask(web.req(path))
    assert r.status_line == "HTTP/1.1 404 Not Found", r
    assert r.body == b"404 Not Found\n"
    assert r["Connection"] == "keep-alive"
    check_common(r)
    c.still_open()


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "get", "Head", "BREW"])
def test_other_methods_are_405_with_allow(web, method):
    c = web.conn()
    r = c.ask(web.req("/", "Content-Length: 0", method=method))
    assert r.status_line == "HTTP/1.1 405 Method Not Allowed", r
    assert r["Allow"] == "GET, HEAD"
    assert r.body == b"405 Method Not Allowed\n"
    check_common(r)
    c.still_open()


def test_post_body_is_read_and_dropped(web):
    c = web.conn()
    c.send(web.req("/", "Content-Length: 11", method="POST") + b"hello")
    c.send(b" world" + web.req("/nope"))  # the rest of the body, then a request
    assert c.response().status == 405
    assert c.response().status == 404


def test_options_star_is_405(web):
    c = web.conn()
    assert c.ask(web.req("*", method="OPTIONS")).status == 405


# ---------------------------------------------------------------------------
# Malformed requests: 400 and the connection closes
# ---------------------------------------------------------------------------

MALFORMED = {
    "no version": b"GET /\r\nHost: x\r\n\r\n",
    "no target": b"GET HTTP/1.1\r\nHost: x\r\n\r\n",
    "two spaces": b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n",
    "bad method token": b"GE(T / HTTP/1.1\r\nHost: x\r\n\r\n",
    "method with slash": b"GET/ / HTTP/1.1\r\nHost: x\r\n\r\n",
    "lowercase version": b"GET / http/1.1\r\nHost: x\r\n\r\n",
    "version HTTP/1": b"GET / HTTP/1\r\nHost: x\r\n\r\n",
    "version HTTP/1.10": b"GET / HTTP/1.10\r\nHost: x\r\n\r\n",
    "junk after version": b"GET / HTTP/1.1 x\r\nHost: x\r\n\r\n",
    "bare LF line ends": b"GET / HTTP/1.1\nHost: x\n\n",
    "bare LF after a field": b"GET / HTTP/1.1\r\nHost: x\n\r\n",
    "bare CR in a value": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n",
    "obs-fold": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n",
    "obs-fold with tab": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n\tb\r\n\r\n",
    "space before colon": b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
    "no colon": b"GET / HTTP/1.1\r\nHost x\r\n\r\n",
    "empty field name": b"GET / HTTP/1.1\r\nHost: x\r\n: v\r\n\r\n",
    "NUL in a value": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
    "NUL in the target": b"GET /a\x00b HTTP/1.1\r\nHost: x\r\n\r\n",
    "control in a value": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n",
    "ESC in a value": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: \x1b[31m\r\n\r\n",
    "DEL in a value": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x7fb\r\n\r\n",
    "control in the target": b"GET /a\x01 HTTP/1.1\r\nHost: x\r\n\r\n",
    "byte over 0x7e in the target": b"GET /\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n",
    "tab in the target": b"GET /a\tb HTTP/1.1\r\nHost: x\r\n\r\n",
    "star target for GET": b"GET * HTTP/1.1\r\nHost: x\r\n\r\n",
    "authority form": b"GET 127.0.0.1:80 HTTP/1.1\r\nHost: x\r\n\r\n",
    "NUL before the request": b"\x00GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "TLS hello": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(32) + b"\r\n\r\n",
}


@pytest.mark.parametrize("request_bytes", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_request_is_400_and_closes(web, request_bytes):
    c = web.conn()
    c.send(request_bytes)
    refused_and_closed(c, 400, "Bad Request")
    web.p.err.wait_for(rb"^sockit: chat: web 127\.0\.0\.1:%d: malformed request: 400 Bad Request$"
                       % c.s.getsockname()[1])


def test_malformed_request_refused_at_its_first_bad_byte(web):
    # No need to wait for the end of the head: the method already is bad.
    c = web.conn()
    c.send(b"G\x00")
    refused_and_closed(c, 400, "Bad Request")


def test_malformed_request_after_a_good_one(web):
    c = web.conn()
    c.send(web.req("/") + b"GET / HTTP/1.1\r\nHost : x\r\n\r\n" + web.req("/"))
    assert c.response().status == 200
    refused_and_closed(c, 400, "Bad Request")


def test_empty_lines_before_the_request_line_are_skipped(web):
    # RFC 9112 section 2.2: a server should ignore at least one empty line.
    c = web.conn()
    assert c.ask(b"\r\n\r\n" + web.req("/")).status == 200


def test_absolute_form_target_is_served_by_its_path(web):
    # RFC 9112 section 3.2.2: a server must accept the absolute-form.
    c = web.conn()
    c.send(b"GET http://127.0.0.1/index.html?x=1 HTTP/1.1\r\nHost: x\r\n\r\n"
           b"GET http://127.0.0.1 HTTP/1.1\r\nHost: x\r\n\r\n"
           b"GET http://127.0.0.1/nothing HTTP/1.1\r\nHost: x\r\n\r\n")
    assert [c.response().status for _ in range(3)] == [200, 200, 404]


@pytest.mark.parametrize("version", ["HTTP/2.0", "HTTP/3.0", "HTTP/1.2", "HTTP/0.9", "HTTP/9.9"])
def test_other_http_versions_are_505(web, version):
    c = web.conn()
    c.send(web.req("/", version=version))
    refused_and_closed(c, 505, "HTTP Version Not Supported")


def test_h2_preface_is_400(web):
    # "PRI * HTTP/2.0": a "*" target is for OPTIONS only, so the line is
    # refused before its version is read.
    c = web.conn()
    c.send(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    refused_and_closed(c, 400, "Bad Request")


# ---------------------------------------------------------------------------
# Limits: target, head, fields, body
# ---------------------------------------------------------------------------

def test_target_of_the_limit_is_served_one_more_is_414(web):
    c = web.conn()
    longest = "/" + "a" * (TARGET_MAX - 1)
    r = c.ask(web.req(longest))
    assert r.status == 404, r  # parsed, just not there
    c.send(web.req(longest + "a"))
    refused_and_closed(c, 414, "URI Too Long")


def test_target_far_over_the_limit_is_414_before_the_line_ends(web):
    c = web.conn()
    c.send(b"GET /" + b"b" * 5000)  # no end of line yet
    refused_and_closed(c, 414, "URI Too Long")


def test_head_of_the_limit_is_served_one_byte_more_is_431(web):
    def head_of(n):
        start = web.req("/", "X-Pad: ")[:-4]  # ends "X-Pad: "
        pad = n - len(start) - 4
        return start + b"p" * pad + b"\r\n\r\n"
    c = web.conn()
    assert len(head_of(HEAD_MAX)) == HEAD_MAX
    assert c.ask(head_of(HEAD_MAX)).status == 200
    c.send(head_of(HEAD_MAX + 1))
    refused_and_closed(c, 431, "Request Header Fields Too Large")


def test_head_over_8k_without_an_end_is_431(web):
    c = web.conn()
    c.send(web.req("/")[:-2] + b"X-Pad: " + b"q" * 9000)
    refused_and_closed(c, 431, "Request Header Fields Too Large")


def test_fields_up_to_the_limit_are_served_one_more_is_431(web):
    c = web.conn()
    ok = [f"X-F{i}: {i}" for i in range(HEADERS_MAX - 1)]  # and Host
    assert c.ask(web.req("/", *ok)).status == 200
    c.send(web.req("/", *ok, "X-One-Too-Many: 1"))
    refused_and_closed(c, 431, "Request Header Fields Too Large")


@pytest.mark.parametrize("n", [1, 5, BODY_MAX])
def test_get_with_a_body_within_limits_is_answered_and_body_skipped(web, n):
    c = web.conn()
    body = bytes(range(256)) * (n // 256) + b"G" * (n % 256)  # looks like nothing
    c.send(web.req("/", f"Content-Length: {n}") + body + web.req("/nope"))
    assert c.response().status == 200
    assert c.response().status == 404  # the body was not taken as a request


def test_body_over_the_limit_is_413(web):
    c = web.conn()
    c.send(web.req("/", f"Content-Length: {BODY_MAX + 1}"))
    refused_and_closed(c, 413, "Content Too Large")


def test_huge_content_length_is_413(web):
    c = web.conn()
    c.send(web.req("/", "Content-Length: 1000000000000"))
    refused_and_closed(c, 413, "Content Too Large")


def test_content_length_past_64_bits_is_400(web):
    c = web.conn()
    c.send(web.req("/", "Content-Length: 18446744073709551616"))
    refused_and_closed(c, 400, "Bad Request")


@pytest.mark.parametrize("value", ["-1", "+5", "5 5", "0x10", "", "1,2", "1.0"])
def test_malformed_content_length_is_400(web, value):
    c = web.conn()
    c.send(web.req("/", f"Content-Length: {value}"))
    refused_and_closed(c, 400, "Bad Request")


def test_conflicting_content_lengths_are_400_identical_ones_fine(web):
    c = web.conn()
    c.send(web.req("/", "Content-Length: 3", "Content-Length: 3") + b"abc")
    assert c.response().status == 200
    c.send(web.req("/", "Content-Length: 3", "Content-Length: 4") + b"abcd")
    refused_and_closed(c, 400, "Bad Request")


@pytest.mark.parametrize("te", ["chunked", "gzip, chunked", "identity"])
def test_transfer_encoding_is_501(web, te):
    c = web.conn()
    c.send(web.req("/", f"Transfer-Encoding: {te}") + b"5\r\nhello\r\n0\r\n\r\n")
    refused_and_closed(c, 501, "Not Implemented")


def test_transfer_encoding_with_content_length_is_501(web):
    # The classic smuggling pair: refused, and the connection closed.
    c = web.conn()
    c.send(web.req("/", "Content-Length: 5", "Transfer-Encoding: chunked") + b"0\r\n\r\n")
    refused_and_closed(c, 501, "Not Implemented")


# ---------------------------------------------------------------------------
# Host
# ---------------------------------------------------------------------------

def test_missing_host_on_http_1_1_is_400(web):
    c = web.conn()
    c.send(b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n")
    refused_and_closed(c, 400, "Bad Request")


def test_duplicate_host_is_400(web):
    c = web.conn()
    c.send(web.req("/", "Host: 127.0.0.1"))
    refused_and_closed(c, 400, "Bad Request")


def test_http_1_0_without_host_is_served_and_closed(web):
    c = web.conn()
    r = c.ask(b"GET / HTTP/1.0\r\n\r\n")
    assert r.status_line == "HTTP/1.1 200 OK", r
    assert r["Connection"] == "close"
    c.expect_eof()


# ---------------------------------------------------------------------------
# Pipelining and keep-alive
# ---------------------------------------------------------------------------

def test_three_pipelined_requests_in_one_write_answered_in_order(web):
    files = web_files()
    c = web.conn()
    c.send(web.req("/") + web.req("/nope") + web.req("/index.html"))
    a, b, d = c.response(), c.response(), c.response()
    assert (a.status, b.status, d.status) == (200, 404, 200)
    assert a.body == d.body == files["/index.html"]
    c.still_open()


def test_pipelined_requests_cut_byte_by_byte(web):
    c = web.conn()
    for b in web.req("/nope") + web.req("/", method="HEAD") + web.req("/"):
        c.send(bytes([b]))
    assert c.response().status == 404
    assert c.response(body=False).status == 200
    assert c.response().status == 200


def test_pipelined_requests_from_a_client_not_reading_are_all_answered(web):
    # 99 requests for the biggest file in one write: far more output than
    # the server queues for one connection. It holds the rest of the input
    # back until the client reads, then answers every request, in order.
    files = web_files()
    path = max(files, key=lambda p: len(files[p]))
    c = web.conn(rcvbuf=4096)
    c.send(b"".join(web.req(path) for _ in range(KEEPALIVE_REQUESTS - 1)))
    c.response(timeout=WAIT)  # the first answer has started; now stop reading
    threading.Event().wait(0.5)
    for i in range(KEEPALIVE_REQUESTS - 2):
        r = c.response()
        assert r.status == 200 and r.body == files[path], i
    c.still_open()


def test_keep_alive_ends_after_100_requests(web):
    c = web.conn()
    # 101 requests in one write: the 100th is answered "Connection: close",
    # the 101st never.
    c.send(b"".join(web.req(f"/nope{i}") for i in range(KEEPALIVE_REQUESTS + 1)))
    for i in range(KEEPALIVE_REQUESTS):
        r = c.response()
        assert r.status == 404, (i, r)
        want = "close" if i == KEEPALIVE_REQUESTS - 1 else "keep-alive"
        assert r["Connection"] == want, (i, r)
    c.expect_eof()


def test_keep_alive_100_requests_one_at_a_time(web):
    c = web.conn()
    for i in range(KEEPALIVE_REQUESTS):
        r = c.ask(web.req("/nope"))
        assert r["Connection"] == ("close" if i == KEEPALIVE_REQUESTS - 1 else "keep-alive")
    c.expect_eof()


def test_connection_close_is_honoured(web):
    c = web.conn()
    c.send(web.req("/", "Connection: close") + web.req("/"))
    r = c.response()
    assert r.status == 200 and r["Connection"] == "close"
    c.expect_eof()


def test_http_1_0_closes_unless_keep_alive(web):
    c = web.conn()
    r = c.ask(b"GET / HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n")
    assert r.status == 200 and r["Connection"] == "keep-alive", r
    r = c.ask(b"GET /nope HTTP/1.0\r\nHost: x\r\nConnection: Keep-Alive\r\n\r\n")
    assert r.status == 404 and r["Connection"] == "keep-alive", r
    r = c.ask(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
    assert r.status == 200 and r["Connection"] == "close", r
    c.expect_eof()


# ---------------------------------------------------------------------------
# Slow requests (--web-head-timeout)
# ---------------------------------------------------------------------------

def trickle(c, data, every, stop):
    """Sends data one byte every `every` seconds until stop is set or the
    server closes."""
    for b in data:
        if stop.wait(every):
            return
        try:
            c.send(bytes([b]))
        except OSError:
            return


def test_slow_request_head_gets_408_and_others_are_served_meanwhile(run):
    web = Web(run, "--web-head-timeout", "2")
    slow, slow_again = web.conn(), web.conn()
    # The second slow client has one request answered first: the deadline
    # starts again with the first byte of its next head.
    assert slow_again.ask(web.req("/nope")).status == 404
    stop = threading.Event()
    t0 = time.monotonic()
    threads = [threading.Thread(target=trickle, args=(c, web.req("/"), 0.3, stop), daemon=True)
               for c in (slow, slow_again)]
    for t in threads:
        t.start()
    try:
        # Meanwhile other clients come and are served at once, again and
        # again, on new connections and on one kept alive.
        fast = web.conn()
        served = 0
        while time.monotonic() - t0 < 1.2:
            once = web.conn()
            assert once.ask(web.req("/", "Connection: close")).status == 200
            once.expect_eof()
            assert fast.ask(web.req("/nope")).status == 404
            served += 1
            stop.wait(0.1)
        assert served >= 3
        for c in (slow, slow_again):
            r = c.response(timeout=WAIT)
            assert r.status_line == "HTTP/1.1 408 Request Timeout", r
            assert r["Connection"] == "close" and r.body == b"408 Request Timeout\n"
            c.expect_eof()
        # A timer never fires early: the head had its two seconds.
        assert time.monotonic() - t0 >= 1.5
        fast.still_open()
    finally:
        stop.set()
        for t in threads:
            t.join(WAIT)
    web.p.err.wait_for(rb"no complete request head within 2000 ms$")


def test_silent_connection_gets_408_after_the_head_deadline(run):
    web = Web(run, "--web-head-timeout", "1")
    c = web.conn()
    r = c.response(timeout=WAIT)
    assert r.status == 408, r
    c.expect_eof()


def test_client_that_never_reads_its_answers_is_dropped(run):
    # Pipelined requests whose answers fill the socket buffers and the
    # output queue, and a client that reads none of them: it may not hold
    # its connection and its queue for ever.
    web = Web(run, "--web-head-timeout", "1")
    c = web.conn(rcvbuf=4096)
    c.send(web.req("/app.js") * 400)
    web.p.err.wait_for(rb"web 127\.0\.0\.1:%d: answers not read within 1000 ms$"
                       % c.s.getsockname()[1])
    web.conn().still_open()  # the server goes on serving others


def test_closing_connection_that_stops_reading_is_dropped(run):
    # An answer that closes (HTTP/1.0 without keep-alive) but is never
    # read: the queued output gets WEB_CLOSE_DRAIN_MS (5 s), then the
    # connection is dropped.
    # About 200 KB of answers: more than the kernel's buffers on both ends
    # (the chat's sockets have a fixed 32 KiB SO_SNDBUF), less than the
    # 256 KiB queue, so all are answered and the close waits on the queue.
    web = Web(run)
    c = web.conn(rcvbuf=4096)
    c.send(web.req("/app.js") * 4 + web.req("/app.js", version="HTTP/1.0"))
    web.p.err.wait_for(rb"web 127\.0\.0\.1:%d: output not taken within 5000 ms of closing$"
                       % c.s.getsockname()[1], timeout=WAIT + 5)


# ---------------------------------------------------------------------------
# The hub
# ---------------------------------------------------------------------------

def test_hub_web_service_serves_the_page(run):
    p = run.sockit("serve", "chat", "tcp://127.0.0.1:0", "web", "tcp://127.0.0.1:0")
    port = int(p.out.wait_for(rb"^web +tcp://127\.0\.0\.1:(\d+)$").group(1))
    c = HTTP(port)
    run.track(c.s)
    r = c.ask(get("/", port))
    assert r.status == 200 and r.body == web_files()["/index.html"]
    c.send(get("/", port, version="HTTP/2.0"))
    assert c.response().status == 505
    c.expect_eof()
