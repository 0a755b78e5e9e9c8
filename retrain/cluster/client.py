"""The Ray edge: join the long-lived cluster and find (or create) the coordinator by name."""

import contextlib
import logging
import os
import socket
import threading
import time
from typing import Any

from contracts.series import series_key
from retrain.cluster.mailbox import Mailbox, Submission
from retrain.cluster.shards import COORDINATOR, coordinator_name, shard_of
from retrain.config import RayConfig, RetrainConfig
from retrain.errors import RetrainError

__all__ = [
    "COORDINATOR",
    "CoordinatorClient",
    "connect",
    "coordinator",
    "coordinators",
    "daily_version",
    "leave_if_lost",
    "loopback_ray_env",
    "running_status",
]

# A coordinator's share of the resource its node advertises (room for 100 of them: shards,
# namespaces).
_RESOURCE_SHARE = 0.01

log = logging.getLogger("shelfcast.cluster")

# One join (or leave) at a time in this process; ``_joins`` counts the clusters left, so a
# handle from an earlier one is never used again.
_join_lock = threading.RLock()
_joins = [0]
# Coordinators made here without ``coordinator_detached``: Ray ends an actor that is not
# detached once its maker drops the handle it was made with, so this process keeps it.
_held: dict[tuple[str, str], Any] = {}


def loopback_ray_env() -> None:
    """Keep a loopback Ray address on loopback; call before ``import ray``.

    Ray rewrites 127.0.0.1 to the machine's outward IP unless this (oddly named) switch is off,
    and the embedded head listens on loopback only. Ray's and MLflow's usage reports are off
    unless the environment turns them on: the processes started from here (the Ray head, its
    workers) inherit it.

    Token authentication is whatever ``RAY_AUTH_MODE`` says, off when it is unset. Left unset,
    Ray turns it on for a head, not for a driver, when ``~/.ray/auth_token`` exists, and any
    plain ``ray.init()`` on the machine writes that file: every later join of the embedded head
    then failed with ``InvalidAuthToken``. ``RAY_AUTH_MODE=token`` (the secure profile) turns
    it on for both.
    """
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def connect(ray_config: RayConfig) -> None:
    """Join the cluster at ``ray_config.address`` in its namespace (once per process)."""
    host = ray_config.address.rpartition(":")[0]
    if host in ("127.0.0.1", "localhost", "::1"):
        loopback_ray_env()
    import ray

    with _join_lock:
        if ray.is_initialized():
            return
        if not _answers(ray_config.address):
            # ray.init would wait minutes on a head that is not there.
            raise RetrainError(
                f"Cannot join the Ray cluster at {ray_config.address}: nothing listens there. "
                "Start the embedded one with 'shelfcast up', or set SHELFCAST_RAY_ADDRESS to "
                "your cluster's head."
            )
        _join(ray_config, host)


def _join(ray_config: RayConfig, host: str) -> None:
    import ray

    nodes = _node_addresses(ray_config.address) if host.startswith("127.") else None
    # A head on a loopback address (127.0.0.2, ...: nodes of one machine with addresses of
    # their own) is this machine's node: join as that node, not as 127.0.0.1. A head started
    # the plain way ('ray start --head --port P') registers under the machine's outward
    # address though, and no node answers to the loopback one: join as Ray does then.
    own: dict[str, Any] = (
        {"_node_ip_address": host}
        if host.startswith("127.") and (not nodes or host in nodes)
        else {}
    )
    try:
        ray.init(
            address=ray_config.address,
            namespace=ray_config.namespace,
            log_to_driver=False,
            logging_level=logging.WARNING,
            **own,
        )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        port = ray_config.address.rpartition(":")[2]
        hint = (
            f" Its nodes are registered under {', '.join(sorted(nodes))}: set "
            f"SHELFCAST_RAY_ADDRESS to {sorted(nodes)[0]}:{port}."
            if nodes and host not in nodes
            else ""
        )
        raise RetrainError(
            f"Cannot join the Ray cluster at {ray_config.address}: {exc}.{hint} Start the "
            "embedded one with 'shelfcast up', or set SHELFCAST_RAY_ADDRESS to your cluster's "
            "head."
        ) from exc


def _answers(address: str, timeout: float = 2.0) -> bool:
    """Whether anything accepts a connection at the head's GCS address."""
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        return True  # not host:port: Ray's to resolve
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return True
    except OSError:
        return False


def leave_if_lost(ray_config: RayConfig) -> bool:
    """Leave the cluster this process joined once it is gone, so that the next call joins
    the head at ``ray_config.address`` again; True when it left.

    A head that died takes the cluster with it: its GCS, its raylet, the coordinator. This
    process's connection never works again, even when a head is started anew at the same
    address (a new cluster). It is left when the GCS does not answer, or answers without this
    process's node among its live ones. A slow coordinator on a live cluster is not a loss.
    """
    import ray

    with _join_lock:
        if not ray.is_initialized() or ray_config.address.startswith("ray://"):
            return False  # Ray Client reconnects by itself
        if _answers(ray_config.address):
            try:
                live = _live_nodes(ray_config.address)
            except (ImportError, AttributeError, TypeError) as exc:  # Ray's private API
                log.debug("cannot tell whether the Ray cluster is lost: %s", exc)
                return False
            except Exception:  # its GCS does not answer: lost
                live = {}
            if ray.get_runtime_context().get_node_id() in live:
                return False
            why = "was started anew"
        else:
            why = "does not answer"
        log.warning(
            "the Ray head at %s %s: leaving its old cluster, to join again when it answers",
            ray_config.address,
            why,
        )
        _held.clear()  # handles of the old cluster's actors
        ray.shutdown()
        _joins[0] += 1
        return True


def _live_nodes(address: str, timeout: float = 10.0) -> dict[str, str]:
    """The cluster's live nodes, asked of its GCS: node id (hex) -> the address it is
    registered under. Raises when the GCS does not answer, or Ray's private client for it
    changed."""
    from ray._raylet import GcsClient  # type: ignore[attr-defined]

    nodes = GcsClient(address=address).get_all_node_info(timeout=timeout)
    return {
        node_id.hex(): str(node.node_manager_address)
        for node_id, node in nodes.items()
        if int(node.state) == 0
    }


def _node_addresses(address: str, timeout: float = 10.0) -> set[str] | None:
    """The addresses the cluster's live nodes are registered under; None when it cannot say
    (not reachable, or Ray's client for it changed)."""
    try:
        return set(_live_nodes(address, timeout).values())
    except Exception as exc:  # a private API of Ray's: joining goes on as before without it
        log.debug("the nodes of the Ray cluster at %s not read: %s", address, exc)
        return None


def _placement(ray_config: RayConfig, name: str) -> dict[str, Any]:
    """Where a new coordinator goes: on a node that advertises ``coordinator_resource``
    (the head, by default), or anywhere when it is empty."""
    import ray

    resource = ray_config.coordinator_resource
    if not resource:
        return {}
    try:
        ray.get_actor(name, namespace=ray_config.namespace)
        return {}  # it exists: placed already
    except ValueError:
        pass
    if not ray.cluster_resources().get(resource):  # type: ignore[no-untyped-call]
        raise RetrainError(
            f"No node of the Ray cluster at {ray_config.address} advertises the resource "
            f"{resource!r} that places the retrain coordinator. Start the Ray head with "
            f"--resources='{{\"{resource}\": 1}}' ('shelfcast up' and docker-compose.yml do), "
            "or set SHELFCAST_RAY_COORDINATOR_RESOURCE to a resource another node advertises, "
            "or to '' to let Ray place it on any node."
        )
    return {"resources": {resource: _RESOURCE_SHARE}}


def coordinator(
    config: RetrainConfig,
    owner: bool = False,
    timeout: float = 60.0,
    shard: int = 0,
    task: Any = None,
) -> Any:
    """The coordinator actor (of ``shard``), created on first use (detached unless
    ``coordinator_detached`` is off); later calls reconnect to it. If it dies (its node is
    lost), Ray starts it again on a node that has the placement resource, and it rebuilds its
    queue from ``series_state``.

    Its configuration belongs to the service (``owner``): the service's replaces what it
    holds. Any other driver must hold the same retrain settings, or is refused: it would
    otherwise point the service's retrains at its own tables and stores. ``task`` replaces
    the retrain task of a coordinator created here (benchmarks).
    """
    connect(config.ray)
    import ray

    from retrain.cluster.coordinator import Coordinator
    from retrain.cluster.identity import differences, retrain_identity

    name = coordinator_name(shard)
    actor = (
        ray.remote(Coordinator)
        .options(
            name=name,
            namespace=config.ray.namespace,
            lifetime="detached" if config.ray.coordinator_detached else None,
            get_if_exists=True,
            num_cpus=0,
            max_concurrency=1000,
            max_restarts=-1,
            **_placement(config.ray, name),
        )
        .remote(config.coordinator, shard, config.shards, task)
    )
    if not config.ray.coordinator_detached:
        # The handle that made it counts, not one found by name: keep the maker's.
        held = _held.get((config.ray.namespace, name))
        if held is None or held != actor:  # handles compare by actor id
            _held[(config.ray.namespace, name)] = actor
    try:
        ray.get(actor.ping.remote(), timeout=timeout)  # type: ignore[attr-defined]
        if owner:
            configure = actor.configure.remote(config.coordinator)  # type: ignore[attr-defined]
            ray.get(configure, timeout=timeout)
            return actor
        identity = actor.identity.remote()  # type: ignore[attr-defined]
        theirs: dict[str, str] = ray.get(identity, timeout=timeout)
    except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError) as exc:
        raise RetrainError(
            f"The retrain coordinator in Ray namespace {config.ray.namespace!r} did not answer "
            f"within {timeout:g} s: {exc}. Check the Ray cluster at SHELFCAST_RAY_ADDRESS "
            "('ray status'), or kill the actor to have it created afresh."
        ) from exc
    differ = differences(theirs, retrain_identity(config.coordinator, config.shards))
    if differ:
        raise RetrainError(
            f"The retrain coordinator in Ray namespace {config.ray.namespace!r} runs with "
            f"other settings than this command: {'; '.join(differ)}. Run it with the service's "
            "settings (its --data-dir and SHELFCAST_* values), or set SHELFCAST_RAY_NAMESPACE "
            "to use a coordinator of its own."
        )
    return actor


def coordinators(config: RetrainConfig, owner: bool = False, timeout: float = 60.0) -> list[Any]:
    """Every shard's coordinator, in shard order (one unless ``coordinator_shards``)."""
    return [coordinator(config, owner, timeout, shard) for shard in range(config.shards)]


def running_status(ray_config: RayConfig, timeout: float = 5.0) -> dict[str, Any] | None:
    """The running coordinators' status, read by name (as :meth:`CoordinatorClient.status`
    gives it) without creating any; None while a shard has none yet."""
    import ray

    try:
        actors = [
            ray.get_actor(coordinator_name(shard), namespace=ray_config.namespace)
            for shard in range(max(1, ray_config.coordinator_shards))
        ]
    except ValueError:  # no actor of that name (yet)
        return None
    return _combined(ray.get([a.status.remote() for a in actors], timeout=timeout))


def daily_version(config: RetrainConfig) -> int:
    """The latest version of ``daily_sales`` (what a wave started by hand reads)."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    uri = str(config.coordinator.delta_dir / "daily_sales")
    try:
        return int(DeltaTable(uri).version())
    except TableNotFoundError as exc:
        raise RetrainError(
            f"No daily_sales table at {uri}: run 'shelfcast ingest' first, or check --data-dir."
        ) from exc


class CoordinatorClient:
    """The streaming side's handle on the coordinator (every shard of it).

    ``submit``, ``peek_updates`` and ``ack_updates`` never wait for Ray (they run inside the
    micro-batch): they go through a :class:`Mailbox` per shard that a courier thread carries
    to and from the actor, looking it up again after it was lost, so a Ray outage only delays
    the news. ``actor`` and ``status`` wait, at most ``timeout`` seconds each step: for
    start-up, the ticker and ``shelfcast status``.

    With several shards, each series goes to its own shard's coordinator, and the news of
    all of them is numbered here in the order it arrived: acknowledging number N acknowledges,
    on each shard, what was read up to N.
    """

    def __init__(
        self,
        config: RetrainConfig,
        timeout: float = 10.0,
        owner: bool = False,
        interval: float = 0.5,
    ) -> None:
        self.config = config
        self.links = [_Link(config, timeout, owner, interval, s) for s in range(config.shards)]
        self._lock = threading.Lock()
        self._local: dict[tuple[int, int], int] = {}  # (shard, its seq) -> our number
        self._next = 0

    def actor(self) -> Any:
        """Shard 0's actor, once every shard's answers (fails early when Ray is not there)."""
        actors = [link.actor() for link in self.links]
        return actors[0]

    def submit(self, due: list[Submission], version: int) -> None:
        """Hand ``(store, item, priority, stored events, reason)`` over; sent when Ray
        answers."""
        if len(self.links) == 1:
            self.links[0].submit(due, version)
            return
        parts: list[list[Submission]] = [[] for _ in self.links]
        for d in due:
            parts[shard_of(series_key(d[0], d[1]), len(self.links))].append(d)
        for link, part in zip(self.links, parts, strict=True):
            if part:
                link.submit(part, version)

    def peek_updates(self) -> list[dict[str, Any]]:
        """The news the couriers have brought and the driver has not acknowledged."""
        if len(self.links) == 1:
            return self.links[0].peek_updates()
        with self._lock:
            out, keep = [], {}
            for shard, link in enumerate(self.links):
                for u in link.peek_updates():
                    ours = self._local.get((shard, u["seq"]))
                    if ours is None:
                        self._next += 1
                        ours = self._next
                    keep[(shard, u["seq"])] = ours
                    out.append({**u, "seq": ours, "shard": shard})
            self._local = keep
        out.sort(key=lambda u: int(u["seq"]))
        return out

    def ack_updates(self, seq: int) -> None:
        if len(self.links) == 1:
            self.links[0].ack_updates(seq)
            return
        with self._lock:
            upto: dict[int, int] = {}
            for (shard, theirs), ours in self._local.items():
                if ours <= seq:
                    upto[shard] = max(upto.get(shard, 0), theirs)
        for shard, theirs in upto.items():
            self.links[shard].ack_updates(theirs)

    @property
    def pending(self) -> int:
        """Series handed over and not yet delivered to a coordinator."""
        return sum(link.pending for link in self.links)

    def status(self) -> dict[str, Any]:
        """One shard's status, or the shards' summed (each shard's under ``shards``)."""
        return _combined([link.status() for link in self.links])

    def close(self, timeout: float = 3.0) -> None:
        """Stop every courier after its last delivery, within ``timeout`` s in all."""
        deadline = time.monotonic() + timeout
        for link in self.links:
            link.close(max(0.0, deadline - time.monotonic()))


def _combined(each: list[dict[str, Any]]) -> dict[str, Any]:
    """One shard's status as it is, several merged."""
    return each[0] if len(each) == 1 else merge_status(each)


def merge_status(each: list[dict[str, Any]]) -> dict[str, Any]:
    """The status of several shards as one (counts summed, latest forecasts and outages
    merged)."""
    out: dict[str, Any] = {"shards": each}
    for name in ("queued", "running", "rerun", "poison", "capacity", "published"):
        out[name] = sum(int(s.get(name) or 0) for s in each)
    out["batch_size"] = max(int(s.get("batch_size") or 1) for s in each)
    out["retrains_last_minute"] = sum(int(s["retrains_last_minute"]) for s in each)
    out["cpu_seconds"] = sum(float(s["cpu_seconds"]) for s in each)
    timed = [(s["retrains_last_minute"], s["mean_retrain_seconds"]) for s in each]
    total = sum(n for n, m in timed if m is not None)
    out["mean_retrain_seconds"] = (
        sum(n * m for n, m in timed if m is not None) / total if total else None
    )
    out["poisoned"] = {k: v for s in each for k, v in s["poisoned"].items()}
    outages: dict[str, dict[str, Any]] = {}
    for shard in each:
        for system, o in (shard.get("outages") or {}).items():
            seen = outages.setdefault(system, {**o, "series": 0})
            seen["series"] += o["series"]
            seen["since"] = min(seen["since"], o["since"])
    out["outages"] = outages
    latest = [entry for s in each for entry in s["latest"]]
    out["latest"] = sorted(latest, key=lambda e: str(e["at"]), reverse=True)[:20]
    groups: dict[str, dict[str, Any]] = {}
    for shard in each:  # a group named by several shards: the one training, else the newest
        for name, g in (shard.get("groups") or {}).items():
            known = groups.get(name)
            if (
                known is None
                or g.get("training")
                or (
                    not known.get("training")
                    and (g.get("version") or 0) > (known.get("version") or 0)
                )
            ):
                groups[name] = g
    out["groups"] = groups
    return out


class _Link:
    """One shard's coordinator: its mailbox and the courier thread that carries it."""

    def __init__(
        self, config: RetrainConfig, timeout: float, owner: bool, interval: float, shard: int
    ) -> None:
        self.config = config
        self.timeout = timeout
        self.owner = owner
        self.interval = interval
        self.shard = shard
        self._actor: Any = None
        self._joined = _joins[0]  # the cluster ``_actor`` lives on
        self._box = Mailbox()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._courier: threading.Thread | None = None

    def actor(self) -> Any:
        actor = self._actor
        if actor is None or self._joined != _joins[0]:
            joined = _joins[0]
            actor = coordinator(self.config, self.owner, self.timeout, self.shard)
            self._actor, self._joined = actor, joined
        return actor

    def _lost(self) -> None:
        """The actor did not answer: look it up again, on a new cluster if its was lost."""
        # Left first: a thread that finds no actor meanwhile looks it up on the cluster.
        leave_if_lost(self.config.ray)
        self._actor = None

    def _call(self, method: str, *args: Any) -> Any:
        import ray

        try:
            return ray.get(getattr(self.actor(), method).remote(*args), timeout=self.timeout)
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError) as exc:
            self._lost()
            raise RetrainError(
                f"The retrain coordinator did not answer {method} within {self.timeout:g} s: "
                f"{exc}. Check the Ray cluster at SHELFCAST_RAY_ADDRESS ('ray status')."
            ) from exc

    def submit(self, due: list[Submission], version: int) -> None:
        """Hand ``(store, item, priority, stored events, reason)`` over; sent when Ray
        answers."""
        with self._lock:
            self._box.submit(due, version)
        self._nudge()

    def peek_updates(self) -> list[dict[str, Any]]:
        """The news the courier has brought and the driver has not acknowledged."""
        self._nudge()
        with self._lock:
            return self._box.news()

    def ack_updates(self, seq: int) -> None:
        with self._lock:
            self._box.ack(seq)
        self._nudge()

    @property
    def pending(self) -> int:
        """Series handed over and not yet delivered to the coordinator."""
        with self._lock:
            return self._box.pending

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = self._call("status")
        return status

    def close(self, timeout: float = 3.0) -> None:
        """Stop the courier after one last delivery of what waits (acknowledgements,
        submissions), within ``timeout`` s: what does not go in time is offered again after
        the busy timeout, like anything a stopped service handed over."""
        self._stop.set()
        self._wake.set()
        if self._courier is not None:
            self._courier.join(timeout)

    # the courier thread ---------------------------------------------------------------------

    def _nudge(self) -> None:
        if self._courier is None and not self._stop.is_set():
            self._courier = threading.Thread(
                target=self._carry, name=f"shelfcast-courier-{self.shard}", daemon=True
            )
            self._courier.start()
        self._wake.set()

    def _carry(self) -> None:
        delay, failing = self.interval, False
        while not self._stop.is_set():
            try:
                self._exchange()
            except Exception as exc:
                with contextlib.suppress(Exception):
                    self._lost()
                with self._lock:
                    self._box.replaced()
                    pending = self._box.pending
                if not failing:
                    log.warning(
                        "the retrain coordinator does not answer (%s); %d series wait for it, "
                        "ingest goes on",
                        exc,
                        pending,
                    )
                failing, delay = True, min(max(delay * 2, 1.0), 30.0)
            else:
                if failing:
                    log.info("the retrain coordinator answers again")
                failing, delay = False, self.interval
            self._wake.wait(delay)
            self._wake.clear()
        if not failing:
            with contextlib.suppress(Exception):
                self._exchange()  # the last delivery, on close

    def _exchange(self) -> None:
        import ray

        actor = self.actor()
        with self._lock:
            ack = self._box.take_ack()
            taken = self._box.take_submissions()
            after, room = self._box.after, self._box.room
        try:
            if ack is not None:
                ray.get(actor.ack_updates.remote(ack), timeout=self.timeout)
            if taken is not None:
                ray.get(actor.submit.remote(*taken), timeout=self.timeout)
        except Exception:
            if taken is not None:
                with self._lock:
                    self._box.restore(taken)  # coalescing makes a resend harmless
            raise
        if room:
            news = ray.get(actor.peek_updates.remote(room, after), timeout=self.timeout)
            with self._lock:
                self._box.receive(news)
