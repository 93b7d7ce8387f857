#!/usr/bin/env python3
"""bench/seed_threading_server.py - an echo server the way the Python
socket tutorials write it (socketserver.ThreadingTCPServer, a handler that
loops on recv(1024) and sendall), as a peer in the benchmarks: what a
typical hand-written server does, one thread per connection.

    seed_threading_server.py [PORT]      (default 0: any free port)

Listens on 127.0.0.1:PORT, prints the bound port on a line of its own,
and serves until SIGTERM or SIGINT.
"""

import signal
import socketserver
import sys


class Handler(socketserver.BaseRequestHandler):
    """Echoes every chunk back until the client closes."""

    def handle(self):
        while True:
            data = self.request.recv(1024)
            if not data:
                break
            self.request.sendall(data)


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    # The tutorials keep socketserver's default backlog of 5; with bursts of
    # connects that measures SYN retransmission timers, not the server.
    request_queue_size = 128


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    server = Server(("127.0.0.1", port), Handler)
    # SIGTERM ends the process like Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
