"""``BatchChannel``: the consumer's end of ``iter_batches``, lending batch slots to the files' sinks and queueing
what they fill.

Each file's ``BatchSink`` (in the file's worker) connects to the channel's unix socket (authenticated with a
key that only this run's stages carry) and asks for a slot of the bytes its next batch needs; the channel
lends one from a ``BufferPool`` of that slot size that it owns, and the sink writes its rows straight into it
and sends back only the batch's row count and per-frame columns. The pixels never cross a pipe.

Backpressure: a sink is lent a slot only while fewer than ``prefetch`` filled batches wait for the consumer,
so a slow consumer stops the workers (their files' actors wait) and memory stays at most ``prefetch`` +
two per file in flight + what the consumer holds, whatever the inputs' length. A slot is the consumer's until
it asks for the next batch (``FrameBatch.release``) or keeps it. A sink's process that dies gives back what it
was lent (its connection closes). A sink says first which file it is for, and is told how many rows of it were
given already: a file's second attempt (its worker died and the executor runs it again) skips them, so that no
frame is given twice and none is lost (the earlier attempt's connection is read to its end first). A batch
slot's pool of a size no longer asked for is closed once nothing in it is held (files of another frame size).
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import threading
from collections import deque
from dataclasses import dataclass
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Connection, Listener, answer_challenge, deliver_challenge
from typing import Any

import numpy as np

from ..dataplane.buffers import BufferPool, FrameRef, SlotLease

__all__ = ["BatchChannel", "Filled", "connect"]

HELLO, WANT, FILLED, GIVE_BACK = "hello", "want", "filled", "give_back"  # a sink's messages


@dataclass(slots=True)
class Filled:
    """A batch a sink filled: its slot, how many rows, each frame's shape, and the per-frame columns."""

    lease: SlotLease
    rows: int
    frame_shape: tuple[int, ...]  # one row's: (clip_length, *frame) for clips
    dtype: str
    pixel_format: str | None
    file: str
    columns: dict[str, Any]


def connect(address: str, authkey: bytes) -> Connection:
    """A sink's connection to the consumer's channel."""
    return Client(address, family="AF_UNIX", authkey=authkey)


class BatchChannel:
    """The consumer's side: a socket the sinks connect to, the pools of batch slots, the queue of what came."""

    def __init__(self, prefetch: int = 2) -> None:
        if prefetch < 1:
            raise ValueError(f"prefetch must be at least 1, not {prefetch}")
        self.prefetch = prefetch
        self.authkey = secrets.token_bytes(32)
        self._folder = tempfile.mkdtemp(prefix="framepipe-batches-")
        self.address = os.path.join(self._folder, "channel")
        # Each sink is authenticated in its own thread (_serve), not in accept(): one that connects and hangs
        # (its process stopped mid-handshake) holds up no other, and close() can always wake accept().
        self._listener = Listener(self.address, family="AF_UNIX")
        self._cond = threading.Condition()
        self._queue: deque[Any] = deque()  # Filled batches and whatever else is posted (results, the end)
        self._waiting = 0  # Filled batches in the queue
        self._pools: dict[int, BufferPool] = {}  # by slot size
        self._given: dict[str, int] = {}  # rows given (queued) per file
        self._sinks: dict[str, threading.Thread] = {}  # the thread reading each file's latest sink
        self._readers: list[threading.Thread] = []
        self._closed = False
        self.peak_slots = 0
        self._accepter = threading.Thread(target=self._accept, name="framepipe batch channel", daemon=True)
        self._accepter.start()

    # The sinks' side (threads of the channel) --------------------------------------------------

    def _accept(self) -> None:
        while True:
            try:
                conn = self._listener.accept()
            except OSError:
                if self._closed:
                    return
                continue
            if self._closed:
                conn.close()
                return
            reader = threading.Thread(target=self._serve, args=(conn,), name="framepipe batch sink", daemon=True)
            with self._cond:  # started before settle() can see it (joining a thread not started raises)
                self._readers = [r for r in self._readers if r.is_alive()]
                reader.start()
                self._readers.append(reader)

    def _serve(self, conn: Connection) -> None:
        """One sink's requests, until it hangs up; what it was lent and did not fill goes back to the pool."""
        lent: dict[tuple[str, int, int], SlotLease] = {}
        try:
            deliver_challenge(conn, self.authkey)
            answer_challenge(conn, self.authkey)
            while True:
                message = conn.recv()
                if message[0] == HELLO:
                    with self._cond:
                        earlier = self._sinks.get(message[1])
                        self._sinks[message[1]] = threading.current_thread()
                    if earlier is not None:
                        earlier.join(30.0)  # its process died: what it sent before is read, then its EOF
                    with self._cond:
                        given = self._given.get(message[1], 0)
                    conn.send(given)
                elif message[0] == WANT:
                    try:
                        lease = self._lend(message[1])
                    except Exception as exc:  # no memory for it (/dev/shm full): the sink's file fails saying so
                        conn.send(f"no shared memory for a batch of {message[1]} bytes: {exc}")
                        return
                    if lease is None:
                        return  # the consumer is gone: hanging up tells the sink
                    ref = lease.ref((message[1],))
                    lent[_key(ref)] = lease
                    conn.send(ref)
                elif message[0] == FILLED:
                    ref, rows, shape, dtype, pixel_format, file, columns = message[1:]
                    with self._cond:
                        self._given[file] = self._given.get(file, 0) + rows
                    self._post_batch(Filled(lent.pop(_key(ref)), rows, shape, dtype, pixel_format, file, columns))
                elif message[0] == GIVE_BACK:
                    lent.pop(_key(message[1])).release()
        except (EOFError, ConnectionError, AuthenticationError):
            pass  # the sink hung up (its file is done), its process died, or it was not this run's
        finally:
            for lease in lent.values():
                lease.release()
            conn.close()

    def _lend(self, nbytes: int) -> SlotLease | None:
        with self._cond:
            while self._waiting >= self.prefetch and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            pool = self._pools.get(nbytes)
            if pool is None:
                for size, idle in list(self._pools.items()):  # another frame size: free what the last held
                    if idle.leased_slots == 0:
                        idle.close()
                        del self._pools[size]
                pool = self._pools[nbytes] = BufferPool(nbytes, 1, name="batches", prefault=False)
            lease = pool.try_acquire()
            if lease is None:
                pool.expand(1)
                lease = pool.acquire(0)
            self.peak_slots = max(self.peak_slots, sum(p.leased_slots for p in self._pools.values()))
            return lease

    def _post_batch(self, batch: Filled) -> None:
        with self._cond:
            self._queue.append(batch)
            self._waiting += 1
            self._cond.notify_all()

    # The consumer's side ----------------------------------------------------------------

    def post(self, item: Any) -> None:
        """Queue something other than a batch for the consumer (a file's result, the run's end)."""
        with self._cond:
            self._queue.append(item)
            self._cond.notify_all()

    def take(self) -> Any:
        """The next thing queued (a ``Filled`` batch or what was posted), waiting for one; None once the channel
        is closed and nothing is left."""
        with self._cond:
            while not self._queue:
                if self._closed:
                    return None
                self._cond.wait()
            item = self._queue.popleft()
            if isinstance(item, Filled):
                self._waiting -= 1
                self._cond.notify_all()  # a sink waiting for a slot may have one now
            return item

    def settle(self, timeout: float = 30.0) -> None:
        """Wait until every sink has hung up, so that each batch they sent is queued (the run has ended: its
        workers are done or gone). A sink still connected past ``timeout`` is left to ``close``."""
        with self._cond:
            readers = list(self._readers)
        for reader in readers:
            reader.join(timeout)

    def leased_slots(self) -> int:
        """Batch slots lent or held now (the consumer's included)."""
        with self._cond:
            return sum(p.leased_slots for p in self._pools.values())

    def stop_lending(self) -> None:
        """Lend no more slots: a sink waiting for one is hung up on (the consumer is gone)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def close(self) -> None:
        """Stop lending, hang up on every sink, unlink every slot's memory (views the consumer kept stay mapped)."""
        self.stop_lending()
        with self._cond:
            pending = [item for item in self._queue if isinstance(item, Filled)]
            self._queue.clear()
            self._waiting = 0
        for batch in pending:
            batch.lease.release()
        try:
            Client(self.address, family="AF_UNIX").close()  # wakes the accepting thread
        except OSError:
            pass
        self._listener.close()
        self._accepter.join()
        self.settle(timeout=5.0)
        for pool in self._pools.values():
            pool.close()
        shutil.rmtree(self._folder, ignore_errors=True)


def _key(ref: FrameRef) -> tuple[str, int, int]:
    return ref.pool_id, ref.slot, ref.generation


def frames_view(batch: Filled) -> tuple[np.ndarray, np.ndarray]:
    """The batch's slot as bytes (a new array each call: the root that every view of it keeps alive, whatever
    numpy collapses views to) and its frames over them: rows x frame shape, no copy."""
    dtype = np.dtype(batch.dtype)
    n = int(np.prod((batch.rows, *batch.frame_shape), dtype=np.int64)) * dtype.itemsize
    root = np.frombuffer(batch.lease.buffer(), np.uint8, count=n)
    return root, root.view(dtype).reshape((batch.rows, *batch.frame_shape))
