"""What the service and the coordinator have to tell each other, as plain data.

The service's thread hands submissions in and takes news out without waiting; a courier
thread (``retrain.cluster.client``) moves them to and from the actor when Ray answers. Submissions
coalesce per series, so the outbox holds at most one entry per series however long Ray is
away. News is kept until the driver acknowledges it; acknowledgements of news read from an
actor that was since replaced are dropped (its sequence numbers mean nothing to the new one).
"""

from typing import Any

from retrain.cluster.queue import merged_reason

__all__ = ["Mailbox"]

# (store, item, priority, stored events or None: an operator's force, which lifts poison,
# why it is due: "sales", "plan", "drift", "forced", the model version of its last served
# forecast or None: the floor of its next one)
Submission = tuple[str, str, float, int | None, str, int | None]


class Mailbox:
    """Outbox of submissions, inbox of news; not thread-safe (the caller holds a lock)."""

    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit
        self._out: dict[tuple[str, str], Submission] = {}
        self._version = -1
        self._news: list[dict[str, Any]] = []
        self._epoch = 0
        self._read_epoch = 0
        self._acked = 0
        self._ack_to_send = 0

    # service side ---------------------------------------------------------------------------

    def submit(self, due: list[tuple[Any, ...]], version: int) -> None:
        """Queue for sending; a series already waiting keeps its highest priority and data
        (a force, None, stays one), and new data outranks a plan change as its reason."""
        for store, item, priority, data, *rest in due:
            reason = str(rest[0]) if rest and rest[0] else "sales"
            served = int(rest[1]) if len(rest) > 1 and rest[1] is not None else None
            old = self._out.get((store, item))
            if old is not None:
                priority = max(priority, old[2])
                data = None if data is None or old[3] is None else max(data, old[3])
                reason = merged_reason(old[4], reason)
                served = max(served or 0, old[5] or 0) or None
            self._out[(store, item)] = (store, item, priority, data, reason, served)
        self._version = max(self._version, version)

    def news(self) -> list[dict[str, Any]]:
        """The news not yet acknowledged, oldest first."""
        self._read_epoch = self._epoch
        return [u for u in self._news if u["seq"] > self._acked][: self.limit]

    def ack(self, seq: int) -> None:
        """The news up to ``seq`` (as last read) is stored: forget it, and tell the actor."""
        if self._read_epoch != self._epoch:
            return  # read from an actor since replaced: the new one's news is kept
        self._acked = max(self._acked, seq)
        self._ack_to_send = self._acked
        self._news = [u for u in self._news if u["seq"] > self._acked]

    @property
    def pending(self) -> int:
        """Series waiting to be sent."""
        return len(self._out)

    # courier side ---------------------------------------------------------------------------

    def take_submissions(self) -> tuple[list[Submission], int] | None:
        """Everything waiting, to send now; ``restore`` it if the send fails."""
        if not self._out:
            return None
        out, version = list(self._out.values()), self._version
        self._out, self._version = {}, -1
        return out, version

    def restore(self, taken: tuple[list[Submission], int]) -> None:
        """Put back what could not be sent (merged with anything submitted meanwhile)."""
        self.submit(*taken)

    def take_ack(self) -> int | None:
        """The acknowledgement to send, if any."""
        seq, self._ack_to_send = self._ack_to_send, 0
        return seq or None

    @property
    def after(self) -> int:
        """The newest sequence number held or acknowledged: fetch only news after it."""
        last = int(self._news[-1]["seq"]) if self._news else 0
        return max(self._acked, last)

    @property
    def room(self) -> int:
        """How many more updates the inbox takes."""
        return max(0, self.limit - len(self._news))

    def receive(self, updates: list[dict[str, Any]]) -> None:
        """News read from the actor (after ``after``)."""
        after = self.after
        self._news.extend(u for u in updates if u["seq"] > after)

    def replaced(self) -> None:
        """The actor was (or may have been) replaced: its news is read afresh from the start."""
        self._epoch += 1
        self._news, self._acked, self._ack_to_send = [], 0, 0
