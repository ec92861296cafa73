"""Decryption beside decompression: a stream read ahead, in bounded pieces, by a thread.

On the way back an encrypted object is read, authenticated and decrypted (OpenSSL, outside the
GIL) and decompressed (zstd, outside the GIL). In one thread these wait for each other; with
the decryption a piece or two ahead in its own thread they overlap, and the encrypted download
costs about what the plain one does.
"""

from __future__ import annotations

import queue
import threading

from pitr.domain.streams import Readable

PIECE = 1 << 20
#: Pieces read ahead at most. On a busy machine the two threads are not scheduled together:
#: 8 MiB of slack let the decompressor go on while the decrypting thread waits for a core
#: (a 128 MB download on a loaded 2-core machine: 1.50-1.59 s with 8, 1.75-2.02 s with 2).
DEPTH = 8


class ReadAhead:
    """``source`` read by a thread up to ``depth`` pieces ahead; ``close()`` stops it. An
    error the source raises is raised by ``read`` in the reader's thread, in order."""

    def __init__(self, source: Readable, depth: int = DEPTH) -> None:
        self._source = source
        self._queue: queue.Queue[bytes | BaseException] = queue.Queue(depth)
        self._stop = threading.Event()
        self._buf = b""
        self._pos = 0
        self._eof = False
        self._thread = threading.Thread(target=self._run, name="read-ahead", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                data = self._source.read(PIECE)
                self._put(data)
                if not data:
                    return
        except BaseException as exc:  # handed to the reader, who raises it
            self._put(exc)

    def _put(self, item: bytes | BaseException) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def read(self, n: int = -1, /) -> bytes:
        while self._pos >= len(self._buf) and not self._eof:
            item = self._queue.get()
            if isinstance(item, BaseException):
                self._eof = True
                raise item
            self._eof = not item
            self._buf, self._pos = item, 0
        data = self._buf[self._pos : self._pos + (n if n > 0 else PIECE)]
        self._pos += len(data)
        return data

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
