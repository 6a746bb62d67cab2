"""Several serving pools on one clock: routing, replicas, and pools that fail.

Each pool is ``engines`` identical engines (`engine.Engine`, one per replica).
Requests are taken in arrival order:

- the routing policy (`routing.Router`) picks a pool; inside it the request
  goes to the engine with the fewest outstanding requests (queued or running;
  the first engine on a tie);
- engines share the clock exactly: before a decision reads an engine or hands
  it a request, the engine is advanced to that instant (`Engine.run`'s
  horizon), so a queue length is the one at the arrival, and an engine run in
  steps gives the figures it would give run in one go over the same arrivals.

Faults (`deployment.Fault`): at T the pool's engines stop. The requests they
hold unfinished (queued, running, or in an iteration in flight) are moved to
the deployment's fallback pool and start again from scratch there as requests
arriving at T: their tokens so far are discarded, the failed pool's KV cache and
in-flight iterations are lost with it. Their latencies still count from their
original arrival. While the pool is down, requests routed to it go to the
fallback (an overflow policy counts the pool as full, so its arrivals overflow
as the policy says). From T + DURATION on it takes arrivals again, on fresh
engines (empty caches); what it gave away stays where it went.

Lost requests: a request with nowhere to go, because the deployment names no
fallback, the fallback is itself down, or the failed pool is the fallback, is
lost: counted, never served. So failing the fallback pool loses the requests it
holds and those routed to it until it is back; the other pools' requests are
not affected. Nothing else is ever lost.

At one instant: iterations completing then complete, then pools come back, then
pools fail, then requests arrive.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from partitioner.errors import UsageError
from partitioner.simulate.serving.deployment import Fault
from partitioner.simulate.serving.engine import Engine
from partitioner.simulate.serving.iteration import IterationCost, ServingConfig
from partitioner.simulate.serving.recorder import Recorder
from partitioner.simulate.serving.routing import Router, Routing
from partitioner.simulate.serving.workload import Requests

__all__ = ["FleetPool", "FaultOutcome", "FleetRun", "simulate_fleet"]

_NO_REQUESTS = Requests(np.zeros(0), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))


@dataclass(frozen=True)
class FleetPool:
    """A pool of ``engines`` identical engines priced by ``cost`` and limited by ``config``."""

    name: str
    cost: IterationCost
    config: ServingConfig
    engines: int = 1


@dataclass(frozen=True)
class FaultOutcome:
    """What one fault did.

    Attributes:
        fault: The fault.
        moved_queued: Requests moved that were waiting for admission.
        moved_running: Requests moved that had been admitted (holding KV cache).
        restarted: Moved requests that started again on the fallback.
        lost: Moved requests with nowhere to go, plus arrivals lost while the pool was down.
        rerouted: Arrivals routed to the pool while it was down, sent to the fallback.
        moved: The requests moved, by index.
    """

    fault: Fault
    moved_queued: int = 0
    moved_running: int = 0
    restarted: int = 0
    lost: int = 0
    rerouted: int = 0
    moved: tuple[int, ...] = ()


@dataclass(frozen=True, eq=False)
class FleetRun:
    """Per-request outcomes of a fleet simulation (NumPy arrays, by request).

    Attributes:
        requests: The requests, in arrival order.
        pool_names: The pools; indices below refer to this order.
        pool_of: The pool that served (or refused) each request; -1 when it was lost.
        routed_to: The pool the routing policy picked for it on arrival.
        first_scheduled_s, first_token_s, finish_s: Times on its last pool (NaN if none).
        moves: How many times it was moved by a fault.
        recorders: Per pool, the recorder of every engine it ran (failed ones included).
        faults: One outcome per fault, in the order given.
        engines: Per pool, its engines at a time.
        capacity_blocks: Per pool, the KV blocks of one of its engines.
    """

    requests: Requests
    pool_names: tuple[str, ...]
    pool_of: np.ndarray
    routed_to: np.ndarray
    first_scheduled_s: np.ndarray
    first_token_s: np.ndarray
    finish_s: np.ndarray
    moves: np.ndarray
    recorders: tuple[tuple[Recorder, ...], ...]
    faults: tuple[FaultOutcome, ...]
    engines: tuple[int, ...]
    capacity_blocks: tuple[int, ...]


class _Replica:
    """One engine and the fleet's index of each request it was given."""

    __slots__ = ("engine", "requests")

    def __init__(self, pool: FleetPool, start_s: float) -> None:
        self.engine = Engine(_NO_REQUESTS, pool.cost, pool.config)
        self.requests: list[int] = []
        self.advance(start_s)

    def advance(self, time_s: float) -> None:
        if time_s > self.engine.now_s:
            self.engine.run(time_s)

    def queued(self) -> int:
        """Requests waiting for admission, those handed over at this instant included."""
        engine = self.engine
        return len(engine.waiting) + len(engine.arrival_s) - engine.next_arrival

    def outstanding(self) -> int:
        return self.queued() + len(self.engine.running)

    def unfinished(self) -> list[tuple[int, bool]]:
        """``(local index, admitted)`` of every request neither finished nor refused."""
        engine = self.engine
        finish, fits, arrived = engine.rec.finish_s, engine.fits, engine.next_arrival
        return [
            (i, i in engine.running)
            for i in range(len(finish))
            if math.isnan(finish[i]) and (i >= arrived or fits[i])
        ]


class _Fleet:
    """The working state of one fleet simulation (module doc)."""

    def __init__(
        self,
        requests: Requests,
        pools: Sequence[FleetPool],
        router: Router,
        fallback: int | None,
        faults: Sequence[Fault],
    ) -> None:
        count = len(requests)
        self.requests, self.pools, self.router, self.fallback = requests, pools, router, fallback
        self.faults = list(faults)
        self.index = {pool.name: i for i, pool in enumerate(pools)}
        self.prompt: list[int] = requests.prompt_tokens.tolist()
        self.output: list[int] = requests.output_tokens.tolist()
        self.live = [[_Replica(p, 0.0) for _ in range(p.engines)] for p in pools]
        self.served = [list(replicas) for replicas in self.live]
        self.down: dict[int, int] = {}  # pool -> the fault holding it down
        self.tallies = [_Tally() for _ in faults]
        self.home: list[tuple[_Replica, int] | None] = [None] * count
        self.pool_of = [-1] * count
        self.routed_to = [-1] * count
        self.moves = [0] * count

    def events(self) -> list[tuple[float, int, int]]:
        """``(time, 0 for back up / 1 for down, fault)``, in the order they happen."""
        found = []
        for k, fault in enumerate(self.faults):
            found.append((fault.start_s, 1, k))
            if fault.end_s is not None:
                found.append((fault.end_s, 0, k))
        return sorted(found)

    def run(self) -> None:
        events, e = self.events(), 0
        for request, time_s in enumerate(self.requests.arrival_s.tolist()):
            while e < len(events) and events[e][0] <= time_s:
                self.apply(*events[e])
                e += 1
            self.arrive(request, time_s)
        for event in events[e:]:
            self.apply(*event)
        for replicas in self.live:
            for replica in replicas:
                replica.engine.run()

    def apply(self, time_s: float, down: int, fault: int) -> None:
        pool = self.index[self.faults[fault].pool]
        if down:
            self.fail(pool, fault, time_s)
            return
        del self.down[pool]
        spec = self.pools[pool]
        self.live[pool] = [_Replica(spec, time_s) for _ in range(spec.engines)]
        self.served[pool] += self.live[pool]

    def queued(self, pool: int, time_s: float) -> int:
        """Requests waiting for admission in ``pool`` at ``time_s`` (a pool that is down
        counts as full)."""
        if pool in self.down:
            return sys.maxsize
        for replica in self.live[pool]:
            replica.advance(time_s)
        return sum(replica.queued() for replica in self.live[pool])

    def usable_fallback(self) -> int | None:
        fallback = self.fallback
        return None if fallback is None or fallback in self.down else fallback

    def arrive(self, request: int, time_s: float) -> None:
        pool = self.router.choose(request, lambda p: self.queued(p, time_s))
        self.routed_to[request] = pool
        if pool not in self.down:
            self.submit(request, pool, time_s)
            return
        tally, fallback = self.tallies[self.down[pool]], self.usable_fallback()
        if fallback is None:
            tally.lost += 1
        else:
            tally.rerouted += 1
            self.submit(request, fallback, time_s)

    def submit(self, request: int, pool: int, time_s: float) -> None:
        replicas = self.live[pool]
        for replica in replicas:
            replica.advance(time_s)
        replica = min(replicas, key=_Replica.outstanding)
        local = replica.engine.submit(self.prompt[request], self.output[request])
        replica.requests.append(request)
        self.home[request] = (replica, local)
        self.pool_of[request] = pool

    def fail(self, pool: int, fault: int, time_s: float) -> None:
        moved: list[tuple[int, bool]] = []
        for replica in self.live[pool]:
            replica.advance(time_s)
            rec = replica.engine.rec
            rec.kv_change(time_s, -rec.kv_used_blocks)  # the cache is gone: stop counting it
            moved += [(replica.requests[i], admitted) for i, admitted in replica.unfinished()]
        self.live[pool] = []
        self.down[pool] = fault
        tally, fallback = self.tallies[fault], self.usable_fallback()
        for request, admitted in sorted(moved):
            self.moves[request] += 1
            tally.moved.append(request)
            if admitted:
                tally.moved_running += 1
            else:
                tally.moved_queued += 1
            if fallback is None:
                tally.lost += 1
                self.home[request], self.pool_of[request] = None, -1
            else:
                tally.restarted += 1
                self.submit(request, fallback, time_s)

    def result(self) -> FleetRun:
        times = np.full((3, len(self.home)), np.nan)
        for request, home in enumerate(self.home):
            if home is not None:
                rec, local = home[0].engine.rec, home[1]
                times[:, request] = (
                    rec.first_scheduled_s[local],
                    rec.first_token_s[local],
                    rec.finish_s[local],
                )
        return FleetRun(
            requests=self.requests,
            pool_names=tuple(pool.name for pool in self.pools),
            pool_of=np.array(self.pool_of, dtype=np.int64),
            routed_to=np.array(self.routed_to, dtype=np.int64),
            first_scheduled_s=times[0],
            first_token_s=times[1],
            finish_s=times[2],
            moves=np.array(self.moves, dtype=np.int64),
            recorders=tuple(tuple(r.engine.rec for r in replicas) for replicas in self.served),
            faults=tuple(t.outcome(f) for t, f in zip(self.tallies, self.faults, strict=True)),
            engines=tuple(pool.engines for pool in self.pools),
            capacity_blocks=tuple(pool.config.kv_capacity_blocks for pool in self.pools),
        )


class _Tally:
    """A fault's counts as they accrue (fields of `FaultOutcome`)."""

    __slots__ = ("moved_queued", "moved_running", "restarted", "lost", "rerouted", "moved")

    def __init__(self) -> None:
        self.moved_queued = self.moved_running = self.restarted = self.lost = self.rerouted = 0
        self.moved: list[int] = []

    def outcome(self, fault: Fault) -> FaultOutcome:
        return FaultOutcome(
            fault,
            self.moved_queued,
            self.moved_running,
            self.restarted,
            self.lost,
            self.rerouted,
            tuple(self.moved),
        )


def simulate_fleet(
    requests: Requests,
    pools: Sequence[FleetPool],
    routing: Routing,
    *,
    fallback: str | None = None,
    faults: Sequence[Fault] = (),
    label: str = "deployment",
) -> FleetRun:
    """Serve ``requests`` on ``pools`` routed by ``routing``, with ``faults`` (module doc).

    Args:
        requests: The requests, in arrival order (with classes for routing by class).
        pools: The pools, each with at least one engine.
        routing: The routing policy; the pools it names must be in ``pools``.
        fallback: The pool taking a failed pool's requests, or None (they are lost).
        faults: Pools going down; two of one pool must not overlap.
        label: What errors call the deployment.

    Raises:
        UsageError: The routing, fallback or a fault names an unknown pool, the requests
            lack the classes the routing needs, or a cost model is invalid.
    """
    names = [pool.name for pool in pools]
    for name, where in [(fallback, "fallback"), *((f.pool, "a fault") for f in faults)]:
        if name is not None and name not in names:
            raise UsageError(f"{label}: {where} names pool {name!r}, which is not in pools")
    router = Router(routing, names, requests, label)
    fleet = _Fleet(
        requests, pools, router, None if fallback is None else names.index(fallback), faults
    )
    fleet.run()
    return fleet.result()
