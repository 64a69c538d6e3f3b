"""The disk cache's hits kept in memory until a flush writes them, so that a read writes nothing to the index.

They go to the index's ``usage`` table (last access for LRU, an aged hit count
for LFU) in one transaction per flush; the other policies need neither.
"""

from __future__ import annotations

import math
from typing import Final

from .config import EvictionPolicy
from .index import Txn

__all__ = ["PendingHits"]

_TOUCHED_MAX: Final = 1 << 17  # rows remembered as touched; forgotten all at once past this


class PendingHits:
    """This handle's hits not yet written to the index, by entry seq.

    Under LRU a row's access is recorded at most once per ``touch_interval``
    seconds (as memcached bumps an item at most once a minute): a hot key read
    in a loop costs no index writes. LFU counts every hit.
    """

    __slots__ = ("policy", "touch_interval", "_pending", "_touched")

    def __init__(self, policy: EvictionPolicy, touch_interval: float) -> None:
        self.policy = policy
        self.touch_interval = touch_interval
        self._pending: dict[int, list[float]] = {}  # seq -> [last access, hits] not yet flushed
        self._touched: dict[int, float] = {}  # seq -> access time this handle last wrote (LRU)

    def __len__(self) -> int:
        """Rows with hits waiting to be written."""
        return len(self._pending)

    def note(self, seq: int, now: float) -> bool:
        """Remember a hit on row ``seq`` at ``now``; return False when LRU's ``touch_interval`` skips it."""
        if self.policy is EvictionPolicy.LRU:
            if now - self._touched.get(seq, -math.inf) < self.touch_interval:
                return False
            self.touched(seq, now)
        seen = self._pending.get(seq)
        if seen is not None:
            seen[0] = now
            seen[1] += 1.0
        else:
            self._pending[seq] = [now, 1.0]
        return True

    def touched(self, seq: int, now: float) -> None:
        """Row ``seq`` has access time ``now`` in the index (just written by this handle)."""
        if self.policy is not EvictionPolicy.LRU:
            return
        if len(self._touched) >= _TOUCHED_MAX:
            self._touched.clear()
        self._touched[seq] = now

    def write_into(self, txn: Txn) -> None:
        """Write the pending hits in ``txn`` and forget them (LFU counts are aged on the way)."""
        if not self._pending:
            return
        batch = sorted((t, n, seq) for seq, (t, n) in self._pending.items())
        self._pending.clear()
        txn.conn.executemany(
            "UPDATE usage SET accessed = max(accessed, ?), hits = hits + ? WHERE seq = ?", batch)
        if self.policy is EvictionPolicy.LFU:
            _age(txn, sum(n for _, n, _ in batch))

    def drop(self) -> None:
        """Forget the pending hits (they belong to a connection or an index that is gone)."""
        self._pending.clear()

    def forget_all(self) -> None:
        """Forget everything, touches too: a new index file restarts its seqs."""
        self._pending.clear()
        self._touched.clear()


def _age(txn: Txn, hits: float) -> None:
    """Halve every LFU count once ~8 hits per entry have been flushed since the last halving."""
    (ticks,) = txn.conn.execute("UPDATE meta SET ticks = ticks + ? WHERE id = 0 RETURNING ticks",
                                (hits,)).fetchone()
    if ticks > 8 * max(txn.entries, 64):
        txn.conn.execute("UPDATE usage SET hits = hits * 0.5")
        txn.conn.execute("UPDATE meta SET ticks = 0 WHERE id = 0")
