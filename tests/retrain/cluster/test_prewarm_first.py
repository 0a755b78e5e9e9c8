"""The prewarm's order on a node: the first worker imports alone, the others after it, side by
side (a file lock; threads stand in for the workers' processes)."""

import threading
import time
import uuid

from retrain.cluster.prewarm import _first_alone


def test_the_first_imports_alone_then_the_others_side_by_side() -> None:
    token = uuid.uuid4().hex
    spans: dict[str, tuple[float, float]] = {}

    def worker(name: str, start_after: float, body: float) -> None:
        time.sleep(start_after)
        with _first_alone(token):
            began = time.monotonic()
            time.sleep(body)
            spans[name] = (began, time.monotonic())

    threads = [
        threading.Thread(target=worker, args=("first", 0.0, 0.4)),
        threading.Thread(target=worker, args=("second", 0.1, 0.3)),
        threading.Thread(target=worker, args=("third", 0.1, 0.3)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    # Whichever took the lock first (on a loaded machine "first" may start late).
    first, second, third = sorted(spans.values())
    assert second[0] >= first[1] and third[0] >= first[1]  # waited for the first one
    assert second[0] < third[1] and third[0] < second[1]  # then side by side


def test_without_a_token_nothing_waits() -> None:
    with _first_alone(None):
        pass
