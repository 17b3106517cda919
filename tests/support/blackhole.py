"""A loopback TCP proxy that can make its open connections go silent without closing them.

`BlackHoleProxy(target_port)` forwards every connection on `.port` to 127.0.0.1:target_port (TLS passes
through untouched, so the client verifies the real server's certificate). `black_hole()` freezes every
connection open at that moment: from then on the bytes of either side are read and dropped, and a close by the
server is not passed on, so the client sees a stream that stays open and delivers nothing, as behind a NAT or
load balancer that lost its state. Connections made later pass normally.

`lose_replies()` lets open connections still carry the client's bytes to the server but drops the server's
answers; `cut()` then closes them: the client saw its request go out and the connection break, while the server
did the work (a reply lost on the way back). `target_port` may be changed at any time: later connections go to
the new port (a service that moved); a port nobody listens on makes every connection close at once.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator


class _Pair:
    def __init__(self, client: socket.socket, server: socket.socket) -> None:
        self.client = client
        self.server = server
        self.frozen = False
        self.replies_lost = False

    def pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                if not self.frozen and not (self.replies_lost and source is self.server):
                    sink.sendall(data)
        except OSError:
            pass
        if source is self.server and self.frozen:
            return  # the client must not learn that the server closed
        self.close()

    def close(self) -> None:
        for sock in (self.client, self.server):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


class BlackHoleProxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.pairs: list[_Pair] = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._accept, name="blackhole-accept", daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            pair = _Pair(client, server)
            with self.lock:
                self.pairs.append(pair)
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=pair.pump, args=(source, sink), daemon=True).start()

    def black_hole(self) -> int:
        """Freeze every connection open now; how many there were."""
        with self.lock:
            live = [pair for pair in self.pairs if not pair.frozen]
            for pair in live:
                pair.frozen = True
        return len(live)

    def lose_replies(self) -> int:
        """From now on drop what the server sends on every connection open now; how many there were."""
        with self.lock:
            live = [pair for pair in self.pairs if not pair.frozen and not pair.replies_lost]
            for pair in live:
                pair.replies_lost = True
        return len(live)

    def cut(self) -> None:
        """Close every connection whose replies are lost."""
        with self.lock:
            for pair in self.pairs:
                if pair.replies_lost:
                    pair.close()

    def close(self) -> None:
        # shutdown() wakes the thread blocked in accept(); close() alone leaves it blocked for good.
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        with self.lock:
            for pair in self.pairs:
                pair.close()


@contextlib.contextmanager
def black_hole_proxy(target_port: int) -> Iterator[BlackHoleProxy]:
    proxy = BlackHoleProxy(target_port)
    try:
        yield proxy
    finally:
        proxy.close()
