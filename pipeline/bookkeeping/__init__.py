"""Run bookkeeping: what lets a batch resume and never leave half an output.

``ledger`` records the files that finished in an output folder, ``staging``
writes a file's outputs aside and moves them in with its ledger line, and
``memo`` keeps what cacheable stages made so an unchanged file is replayed.
All three are internal to the engine; ``run()`` drives them, so this package
exports nothing (its modules depend on the executors' contract).
"""

__all__: list[str] = []
