"""A loopback HTTP/1.1 proxy that slows answers down and counts the body bytes it relays.

A phone on loopback downloads a pack in milliseconds, too fast to be killed in the middle;
behind this proxy it gets ``delay_per_kib`` seconds per KiB, so a test can ``kill -9`` it
a third of the way through. Every answer is logged as an :class:`Exchange`: the request
line, its ``Range`` header and the body bytes that really went to the phone (a byte
counter outside the code under test, so "fetched exactly what it lacked" is measured,
not reported by the phone itself).

Only what the fleet server speaks is understood: requests and answers framed by
``Content-Length`` (no chunked encoding; an answer to HEAD, a 204 or a 304 has no body).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from types import TracebackType

CHUNK = 1024


@dataclass(frozen=True)
class Exchange:
    request: str  # "GET /v1/... HTTP/1.1"
    range: str | None
    body_bytes: int  # relayed to the client (less than declared when the link was cut)


def _head(sock: socket.socket, buf: bytearray) -> bytes | None:
    """The next header block (without its blank line) from ``sock``; None at the end."""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            return None
        buf += data
    end = buf.index(b"\r\n\r\n")
    head = bytes(buf[:end])
    del buf[: end + 4]
    return head


def _header(head: bytes, name: bytes) -> str | None:
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip().decode()
    return None


@dataclass
class CountingProxy:
    upstream: tuple[str, int]
    delay_per_kib: float = 0.0
    log: list[Exchange] = field(default_factory=list)
    _listener: socket.socket | None = None
    _threads: list[threading.Thread] = field(default_factory=list)
    _open: list[socket.socket] = field(default_factory=list)
    _live: int = 0
    _lock: threading.Condition = field(default_factory=threading.Condition)

    @property
    def url(self) -> str:
        assert self._listener is not None
        host, port = self._listener.getsockname()
        return f"http://{host}:{port}"

    def __enter__(self) -> CountingProxy:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._spawn(self._accept)
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        assert self._listener is not None
        self._listener.close()
        for s in list(self._open):
            s.close()
        for th in self._threads:
            th.join(10)

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Until every connection so far has ended and logged its last answer (a killed
        phone's cut answer is logged once the proxy notices the cut)."""
        with self._lock:
            assert self._lock.wait_for(lambda: self._live == 0, timeout), "a link stays open"

    def _spawn(self, target: object, *args: object) -> None:
        th = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        th.start()
        self._threads.append(th)

    def _accept(self) -> None:
        assert self._listener is not None
        while True:
            try:
                phone, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            self._open += [phone, server]
            with self._lock:
                self._live += 1
            asked: deque[tuple[str, str | None]] = deque()
            ready = threading.Semaphore(0)
            self._spawn(self._requests, phone, server, asked, ready)
            self._spawn(self._answers, server, phone, asked, ready)

    def _requests(self, phone: socket.socket, server: socket.socket,
                  asked: deque[tuple[str, str | None]], ready: threading.Semaphore) -> None:
        buf = bytearray()
        try:
            while (head := _head(phone, buf)) is not None:
                length = int(_header(head, b"content-length") or 0)
                while len(buf) < length:
                    data = phone.recv(65536)
                    if not data:
                        return
                    buf += data
                body = bytes(buf[:length])
                del buf[:length]
                asked.append((head.split(b"\r\n")[0].decode(), _header(head, b"range")))
                ready.release()
                server.sendall(head + b"\r\n\r\n" + body)
        except OSError:
            return
        finally:
            ready.release()  # (wakes the answer side at the end)
            with contextlib.suppress(OSError):
                server.shutdown(socket.SHUT_WR)  # the phone is gone: so is its request side

    def _answers(self, server: socket.socket, phone: socket.socket,
                 asked: deque[tuple[str, str | None]], ready: threading.Semaphore) -> None:
        buf = bytearray()
        try:
            while (head := _head(server, buf)) is not None:
                ready.acquire()
                request, rng = asked.popleft()
                status = int(head.split(b" ")[1])
                assert _header(head, b"transfer-encoding") is None, "chunked is not understood"
                length = int(_header(head, b"content-length") or 0)
                if request.startswith("HEAD ") or status in (204, 304):
                    length = 0
                phone.sendall(head + b"\r\n\r\n")
                sent = 0
                try:
                    while sent < length:
                        if not buf:
                            data = server.recv(65536)
                            if not data:
                                break
                            buf += data
                        piece = bytes(buf[: min(CHUNK, length - sent)])
                        del buf[: len(piece)]
                        phone.sendall(piece)
                        sent += len(piece)
                        if self.delay_per_kib:
                            time.sleep(self.delay_per_kib * len(piece) / 1024)
                finally:
                    self.log.append(Exchange(request, rng, sent))
        except OSError:
            return
        finally:
            phone.close()
            server.close()
            with self._lock:
                self._live -= 1
                self._lock.notify_all()
