"""Compaction and vacuum in a process of their own, after the service in CPU priority.

``python -m streaming.maintain`` reads one JSON line on stdin (the tables' root, the tables,
the vacuum retention, the storage options: secrets never in argv), maintains those tables
and exits. It also exits as soon as its parent closes the pipe (the service stopped, or died
with kill -9): a compaction cut short leaves files that no commit names, which vacuum removes.

A compaction round of the store-partitioned tables takes minutes at 100,000 series, on
delta-rs' threads. In the service's process they ran at the priority of the micro-batches and
of the console's reads; here they run at nice :data:`NICE`, after those and before the
retrain tasks (Ray's workers run at 15).
"""

import json
import os
import sys
import threading

__all__ = ["NICE", "main"]

NICE = 10


def _end_with_parent() -> None:
    sys.stdin.read()  # returns when the parent closes the pipe or dies
    os._exit(0)


def main() -> None:
    # Before delta-rs starts its threads: each takes its niceness from the thread that made it.
    current = os.nice(0)
    if current < NICE:
        os.nice(NICE - current)
    request = json.loads(sys.stdin.readline())
    threading.Thread(target=_end_with_parent, name="parent-watch", daemon=True).start()

    from streaming.tables import TableStore

    store = TableStore(request["root"], request.get("storage_options"))
    store.maintain_tables(request["names"], request.get("vacuum_hours"))


if __name__ == "__main__":
    main()
