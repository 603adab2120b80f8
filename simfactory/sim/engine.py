"""One model replica's engine: iteration-level continuous batching with a paged KV cache.

Each loop iteration forms a batch the way vLLM's v1 scheduler does, then waits one step time:
1. every running decode sequence gets one token; when the KV blocks for them run out, the newest
   running request is preempted (its blocks freed; it is recomputed later: preemption by recompute);
2. running partial prefills continue, oldest first, within the max_num_batched_tokens budget;
3. waiting requests are admitted (preempted ones first) while max_num_seqs, the token budget and
   free KV blocks allow; with chunked prefill a long prompt is split over several steps.
A prefill's last chunk produces the request's first token; each decode step one more.

Decode sequences all advance one token per step, so their state is kept relative to the engine's
step counter: a sequence's KV length before step s is `base + s`. A new KV block is needed by the
sequences whose `(base + s) % block_size == 0`, counted per residue class; the sum of KV lengths is
`sum_base + n * s`. That makes a decode step O(1) in the batch size; completions come off a heap.

Fast-forward (unless `exact`): while the batch cannot change (decodes only, nothing admissible), the
engine plans the steps up to the next completion or KV-block shortage in closed form (see Stretch) and
waits one event for the stretch, or less when an arrival or an abort cuts it at the end of the step in
progress; then it applies the whole steps that finished. Step and event times are stepping's up to float
rounding (tests/test_fast_forward.py).

An engine that launches prefill forwards kernel by kernel (an eager prefill's floor, StepTimeModel.prefill_launch_s)
and schedules one step ahead (overlap_schedule) launches a step with prompt tokens while the step before it runs,
where its attention backend plans the prefill without syncing the device (eager_launch_overlap): the host starts
when that step starts (or once done launching the step before, if later), and the GPU waits only for what is left of
the launch when that step ends. An idle GPU, or an engine that forms a step only after the one before ends, waits for
the whole launch.

Agent tasks that retain their KV cache (sim/kv_retention.py) leave a pin when an LLM step completes: its blocks
stay allocated (and, with hold_slot, a batch slot stays taken) until the task's next step is admitted here and takes
them over as its cached prefix. Pins give way to running work: they are evicted oldest first before a running
request would be preempted for blocks, and when the head of the queue could not otherwise start on an idle
replica; other new requests wait behind them.

The engine is driven by callbacks on SimPy events rather than a generator process: a step's end runs straight
into planning the next, and cutting a stretch short moves one callback instead of throwing an Interrupt.
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_right
from collections.abc import Callable
from itertools import accumulate

import simpy

from simfactory.hardware.step_time import StepLoad, StepTimeModel, rank_chunk_tokens
from simfactory.sim.clock import FloatEnvironment
from simfactory.sim.kv_retention import Pin, RetentionLedger
from simfactory.sim.outcomes import PENDING_CODE
from simfactory.sim.preempted_kv import PreemptedKV
from simfactory.sim.prefix_cache import PrefixCache, request_blocks, request_prefixes
from simfactory.sim.queue import WaitingQueue
from simfactory.sim.requests import RequestTable


def blocks_for(tokens: int, block_size: int) -> int:
    return -(-tokens // block_size)


def needs_backwards(bucket: list[int], j0: int) -> list[int]:
    """The bucket read backwards from j0, cyclically: the blocks consecutive decode steps allocate, from the
    step whose residue is j0 on."""
    return bucket[j0::-1] + bucket[:j0:-1]


class Stretch:
    """Planned decode-only steps, in closed form: step i (0-based) lasts a_s + b_s * i (the KV read grows by the
    same amount every step), so the first k steps end at start_s + k * a_s + b_s * k (k - 1) / 2. Step i allocates
    a block for each sequence crossing a block boundary then: those counted in bucket[(j0 - i) % block_size];
    over a whole period of block_size steps every sequence crosses once, so the first k steps allocate
    (k // block_size) * n_dec + the first k % block_size of the bucket read backwards from j0. (The engine's
    bucket does not change while a stretch runs.)"""

    __slots__ = ("start_s", "n", "a_s", "b_s", "n_dec", "bucket", "j0", "needs_prefix", "free_before",
                 "stop_at", "timeout", "busy0_s", "cuttable", "formed_puts")

    def __init__(self, start_s: float, n: int, a_s: float, b_s: float, n_dec: int, bucket: list[int], j0: int,
                 free_before: int, needs_prefix: list[int] | None = None) -> None:
        self.start_s = start_s
        self.n = n
        self.a_s = a_s
        self.b_s = b_s
        self.n_dec = n_dec
        self.bucket = bucket
        self.j0 = j0
        self.needs_prefix = needs_prefix  # cumulative needs over a period, when planning needed them
        self.free_before = free_before
        self.stop_at = n - 1  # index of the step it ends with (earlier once cut short)
        self.timeout: simpy.Event | None = None  # the event its end waits on
        self.busy0_s = 0.0  # the engine's busy time before it
        self.cuttable = False  # an arrival cuts it short (it could be admitted, or preempt someone)
        self.formed_puts = 0  # the queue's put count when it was planned

    def step_s(self, i: int) -> float:
        return self.a_s + self.b_s * i

    def elapsed_s(self, k: int) -> float:
        """Length of the first k steps."""
        return k * self.a_s + self.b_s * (k * (k - 1) // 2)

    def end_s(self, k: int) -> float:
        """When the first k steps have ended (the start for k = 0)."""
        return self.start_s + self.elapsed_s(k)

    def cum_needs(self, k: int) -> int:
        """KV blocks the first k steps allocate (each at its start)."""
        q, r = divmod(k, len(self.bucket))
        if r == 0:
            return q * self.n_dec
        if self.needs_prefix is not None:
            return q * self.n_dec + self.needs_prefix[r]
        bucket, j0 = self.bucket, self.j0  # the first r of needs_backwards(bucket, j0), without building it
        if r <= j0 + 1:
            return q * self.n_dec + sum(bucket[j0 - r + 1 : j0 + 1])
        return q * self.n_dec + sum(bucket[: j0 + 1]) + sum(bucket[len(bucket) - (r - j0 - 1) :])

    def ended(self, now_s: float) -> int:
        """Steps ended by now: the largest k with end_s(k) <= now (end_s grows with k)."""
        start, a_s, b_s, n = self.start_s, self.a_s, self.b_s, self.n
        t = now_s - start
        if t <= 0.0:
            return 0
        a = a_s - 0.5 * b_s  # solve k a_s + b_s k (k - 1) / 2 = t, then step to the exact k
        k = min(int(2.0 * t / (a + math.sqrt(max(a * a + 2.0 * b_s * t, 0.0)))), n)
        while k < n and start + ((k + 1) * a_s + b_s * ((k + 1) * k // 2)) <= now_s:  # end_s(k + 1), inline
            k += 1
        while k > 0 and start + (k * a_s + b_s * (k * (k - 1) // 2)) > now_s:  # end_s(k), inline
            k -= 1
        return k

    def started(self, now_s: float) -> int:
        """Steps started by now (a step starts when the one before it ends)."""
        return min(self.ended(now_s) + 1, self.n)


class StretchWaker:
    """Sits in the engine's waiting queue's waiter list (once, however many stretches come and go): the next
    arrival cuts the stretch in progress short if that stretch can admit it (one event, only when it happens)."""

    __slots__ = ("engine", "armed")

    def __init__(self, engine: "ReplicaEngine") -> None:
        self.engine = engine
        self.armed = False  # in the waiter list now

    def arm(self) -> None:
        if not self.armed:
            self.armed = True
            self.engine.queue.add_waiter(self)

    def succeed(self, value: object = None) -> None:
        self.armed = False
        st = self.engine.stretch
        if st is not None and st.cuttable:
            # an engine that schedules a step ahead can admit the arrival only after the step after this one
            self.engine._interrupt_stretch(st, 1 if self.engine.overlap else 0)


class ReplicaEngine:
    """One replica: forms a batch per step and advances its requests (see the module docstring)."""

    def __init__(
        self,
        env: FloatEnvironment,
        replica_id: int,
        queue: WaitingQueue,
        table: RequestTable,
        step_time: StepTimeModel,
        *,
        max_num_seqs: int,
        max_num_batched_tokens: int,
        block_size: int,
        kv_blocks: int,
        enable_chunked_prefill: bool,
        max_num_partial_prefills: int = 1,
        attention_ranks: int = 1,
        full_sequence_admission: bool = False,
        schedule: str = "decode_first",
        overlap_schedule: bool = False,
        delayed_first_token: bool = False,
        eager_launch: tuple[bool, bool] = (False, False),
        preemptive_priority: bool = False,
        prefix_cache_tokens: int = 0,
        role: str = "mixed",
        swap: bool = False,
        host_link_s_per_token: float = 0.0,
        prefix_cache_host_tokens: int = 0,
        prefix_cache_ssd_tokens: int = 0,
        ssd_s_per_token: float = 0.0,
        reuse_preempted_kv: str = "none",
        on_prefilled: Callable[[int], None] | None = None,
        on_complete: Callable[[int], None],
        on_abort: Callable[[int], None],
        exact: bool = False,
    ) -> None:
        self.env, self.replica_id, self.queue, self.table = env, replica_id, queue, table
        self.step_time, self.prefill_launch_s = step_time, step_time.prefill_launch_s()
        # (whether an eager prefill's launch overlaps the step before it, whether prompts with computed tokens
        # sync the device first): ResolvedDeployment.eager_launch_overlap, _host_launch_end_s
        self.launch_overlap, self.prefix_prefill_syncs = overlap_schedule and eager_launch[0], eager_launch[1]
        self.floorless = step_time.without_prefill_floor() if self.prefill_launch_s else step_time
        self.mla = step_time.absorbed_extend()[0] > 0 or step_time.prefix_up_s_per_token() > 0  # StepTimeModel.mla_extend
        self.max_num_seqs = max_num_seqs  # batch slots left to requests: fewer while pins hold some (hold_slot)
        self.max_num_batched_tokens, self.block_size, self.kv_blocks = max_num_batched_tokens, block_size, kv_blocks
        self.chunked, self.max_num_partial_prefills = enable_chunked_prefill, max_num_partial_prefills * attention_ranks
        self.max_chunk_tokens = rank_chunk_tokens(max_num_batched_tokens, attention_ranks)
        self.full_sequence = full_sequence_admission
        self.committed_blocks = 0  # full_sequence: blocks the running requests will hold at their longest
        self.committed: dict[int, int] = {}
        self.preemptive_priority, self.prefill_first = preemptive_priority, schedule == "prefill_first"
        # an overlap scheduler forms step n + 1 while step n runs: a request that arrives during step n waits for
        # n + 1 too. New requests put in the queue after this time (the start of the step that just ended) wait;
        # without overlap, none does
        self.overlap = overlap_schedule
        self.admit_put_by_s = math.inf
        self.admit_puts = 0  # ... and the first admit_puts puts (put at that time, but before the step was formed)
        self.role = role  # mixed | prefill (hands requests off after their first token) | decode
        # first tokens computed in the step that just ended, delivered once the next step is launched (a decode
        # step: at its end; a prefill step: after its launch, an eager prefill's floor) or at once (nothing to run):
        # SGLang processes a prefill's result after launching the next batch
        self.delayed_first_token = delayed_first_token
        self.undelivered: list[int] = []
        self.ttft_sink: list[float] | None = None  # first-token latencies for an autoscaler's ttft signal
        self.on_first_token: Callable[[int, "ReplicaEngine"], None] | None = None  # the fleet's front end streams
        self.swap, self.host_link_s_per_token = swap, host_link_s_per_token  # KV bytes per token / host link bandwidth
        self.load_s_per_token = {"device": 0.0, "host": host_link_s_per_token, "ssd": ssd_s_per_token}
        self.extra_step_s = 0.0  # KV copies to/from host memory added to the next step
        self.on_prefilled, self.on_complete, self.on_abort = on_prefilled, on_complete, on_abort
        self._prefix_cache_args = (prefix_cache_tokens, prefix_cache_host_tokens, prefix_cache_ssd_tokens)
        self.prefix_cache = PrefixCache(*self._prefix_cache_args) if prefix_cache_tokens > 0 else None
        # preempted requests' blocks stay cached until allocations overwrite them (vLLM V1, SGLang's radix cache)
        self.preempted_kv = PreemptedKV(reuse_preempted_kv == "prompt") if reuse_preempted_kv != "none" else None
        self.exact = exact  # step every iteration (no fast-forward)
        self.retention: RetentionLedger | None = None  # set by the fleet when some agent class retains its KV
        self.pins: dict[int, Pin] = {}  # task id -> its pin, oldest first
        self.pinned_blocks = self.held_slots = 0
        self.stretch: Stretch | None = None  # the decode-only stretch in progress (fast-forward)
        self._init_batch_state()
        self._init_accounting()
        self.waker = StretchWaker(self)
        env.start(self._next)

    def _init_batch_state(self) -> None:
        """What the batch holds: KV blocks, running requests and their prefill and decode progress."""
        self.free_blocks = self.kv_blocks
        self.freed_blocks = 0  # blocks ever returned to the free queue (kept preempted blocks survive by it)
        self.step = 0  # decode steps executed so far: the clock decode sequences advance by
        self.running: dict[int, None] = {}  # admission order; the last one is the newest
        self.requeued = WaitingQueue(self.env)  # preempted requests, re-admitted before new ones of their priority
        # prefill phase: rid -> tokens to compute (prompt + tokens generated before a preemption)
        self.prefill_target: dict[int, int] = {}
        self.computed: dict[int, int] = {}
        # decode phase, relative to the step counter
        self.dec_base: dict[int, int] = {}  # KV length before step s is base + s
        self.dec_finish: dict[int, int] = {}  # step whose end produces the last token
        self.bucket = [0] * self.block_size  # decode sequences per (base mod block_size)
        self.sum_base = 0
        self.finish_heap: list[tuple[int, int]] = []
        # replica-time attribution: each step's time is split over the tokens it computed; decode
        # sequences accumulate it through a running sum (their share = cum now - cum at decode start)
        self.cum_s_per_token = 0.0
        self.dec_cum0: dict[int, float] = {}
        self.pending_aborts: set[int] = set()

    def _init_accounting(self) -> None:
        """Busy time, step and preemption counts, health, and the balancer's count of what it holds."""
        self.busy_s = 0.0  # accumulated step time
        self.step_started_s = 0.0
        self.step_len_s = 0.0  # length of the step in progress (0 when idle)
        self.in_step = False  # a step is executing (its batch must not change until it ends)
        self.steps_run = 0
        self.preemptions = 0
        self.down = False  # failed: holds no work and runs no step until repaired
        self.owns_queue = True  # False when the queue is a deployment's shared (pull) queue
        # outstanding() as a counter in the balancer's list (the balancer counts a dispatch, the engine a
        # departure: completion, abort, hand-off); a private list for engines behind a shared queue
        self.held_counts: list[int] = [0]
        self.held_slot = 0
        self.repaired: simpy.Event | None = None
        self.host_free_s = 0.0  # when the host finished launching the last eager prefill step
        self.gpu_free_s = self.last_start_s = -math.inf  # when the last step ended (back to back: the next one
        self.admitted_put_s = self.head_put_s = -math.inf  # starts then) and began; when the newest request of the
        # step formed was put, and when the head _admissible_head returned was
        self._batch: tuple[list[tuple[int, int, int]], float, bool] = ([], 0.0, False)  # the plain step in progress

    # ---- observations (read by the router and the timeline monitor) ----
    @property
    def n_decode(self) -> int:
        return len(self.dec_base)

    def outstanding(self) -> int:
        """Requests this replica holds: running, preempted-waiting and (for its own queue) waiting."""
        return len(self.running) + len(self.requeued) + len(self.queue)

    def busy_until_now_s(self) -> float:
        """Busy time up to now, counting the part of the step in progress that has elapsed."""
        if self.step_len_s > 0:
            return self.busy_s - self.step_len_s + (self.env.now - self.step_started_s)
        return self.busy_s

    def decode_step_s(self, joining_kv_tokens: int = 0) -> float:
        """How long a decode-only step of the running decodes (and one joining with this much context) takes now:
        the pace a request that starts decoding should expect."""
        n = len(self.dec_base) + (1 if joining_kv_tokens else 0)
        kv = self.sum_base + len(self.dec_base) * (self.step + 1) + joining_kv_tokens
        return self.step_time.step_s(StepLoad(0, max(n, 1), float(kv), 0.0))

    def kv_used_blocks(self) -> int:
        st = self.stretch
        if st is not None:
            return self.kv_blocks - st.free_before + st.cum_needs(st.started(self.env.now))
        return self.kv_blocks - self.free_blocks

    # ---- the engine loop (callbacks on SimPy events; see the module docstring) ----
    def _next(self, _event: object = None) -> None:
        """Between steps: start the next step (or decode stretch), or wait for work or a repair."""
        if self.down:
            assert self.repaired is not None
            self.repaired.callbacks.append(self._next)  # type: ignore[union-attr]
            return
        running = self.running
        waiting = self.queue.members or self.requeued.members
        if self.undelivered and not running:  # no next batch to launch first: processed at once
            self._deliver_first_tokens(self.env._now)
        if not running and not waiting:
            self.queue.wait().callbacks.append(self._next)  # type: ignore[union-attr]
            return
        # a stretch needs decodes and nothing to admit (the usual reason there is none: an arrival is waiting)
        if not self.exact and not (waiting and (len(running) < self.max_num_seqs or self.preemptive_priority
                                                or self.held_slots)):
            stretch = self._plan_stretch()
            if stretch is not None:
                if self.overlap:
                    stretch.formed_puts = self.queue.put_count
                self._start_stretch(stretch)
                return
        if self.overlap and not (self.dec_base or self.prefill_target):
            self.admit_put_by_s = math.inf  # nothing to run: the scheduler loop takes what waits at once
        chunks, n_dec, kv_read, pairs = self._schedule()
        if self.overlap:
            # the next step is formed now, from what waits now: a client that resends on an answer of the step that
            # just ended (put now, once that answer is processed) waits one more step
            self.admit_put_by_s = self.env._now
            self.admit_puts = self.queue.put_count
        if not chunks and n_dec == 0:
            # Admission control guarantees the oldest request always fits an otherwise empty replica,
            # so an empty batch means the accounting is broken: fail loudly rather than spin.
            raise RuntimeError(
                f"replica {self.replica_id}: empty batch with {len(self.running)} running, "
                f"{len(self.requeued) + len(self.queue)} waiting, {self.free_blocks}/{self.kv_blocks} free blocks"
            )
        prefill_tokens = computed = 0
        placed = []  # each chunk's (tokens, computed before): an engine with attention DP ranks places whole prompts
        for _, c, done in chunks:
            prefill_tokens += c
            computed += done
            placed.append((c, done))
        now = self.env._now
        load = StepLoad(prefill_tokens, n_dec, kv_read, pairs, computed, tuple(placed) if chunks else None)
        dt, launched_s = self._step_s(load, chunks)
        if chunks and self.undelivered:
            # a prefill after a prefill: SGLang's overlap loop processes the earlier result once this step is
            # launched (SGLANG_DISABLE_CONSECUTIVE_PREFILL_OVERLAP off by default), which takes an eager prefill's floor
            lag_s = min(launched_s - now, dt)
            if lag_s > 0.0:
                self._deliver_first_tokens_later(self.env._now + lag_s)
            else:
                self._deliver_first_tokens(self.env._now)
        self.step_started_s = self.last_start_s = self.env._now
        self.step_len_s = dt
        self.busy_s += dt
        self.in_step = True
        self._batch = (chunks, dt / (prefill_tokens + n_dec), n_dec > 0)
        # call_at, not a Timeout (its bound constructor, __init__ and schedule: three calls): the key schedule() gives
        self.env.call_at(float(self.env._now + dt), self._end_step)

    def _step_s(self, load: StepLoad, chunks: list[tuple[int, int, int]]) -> tuple[float, float]:
        """The step's time from now, and when the host has launched it (an eager prefill's floor after its start)."""
        now = self.env._now
        # a latent-attention prefill batch: the absorbed form's extra attention work, or re-expanding its prompts'
        # computed tokens (cached prefixes, earlier chunks) from the cached latent (StepTimeModel.mla_extend)
        mla_s = self.step_time.mla_extend(load)[0] if chunks and self.mla else 0.0
        launched_s = now + self.prefill_launch_s
        if chunks and self.prefill_launch_s and (self.launch_overlap or mla_s):
            if self.launch_overlap:
                launched_s = self._host_launch_end_s(now, chunks)
            dt = max(self.floorless.step_s(load) + mla_s, launched_s - now) + self.extra_step_s
        else:
            dt = self.step_time.step_s(load) + mla_s + self.extra_step_s
        self.extra_step_s = 0.0
        return dt, launched_s

    def _host_launch_end_s(self, now: float, chunks: list[tuple[int, int, int]]) -> float:
        """When the host finishes launching an eager prefill step that the GPU could start now. Under an overlap
        scheduler whose GPU ran a step up to now, the host forms and launches a step while the one before it runs
        (SGLang's event_loop_overlap): it starts once free, once that step started and once the step's newest
        request was put in the queue (one that arrived while that step ran, after it emptied the batch); else now:
        after an idle GPU, without overlap, or where the attention backend's prefill planning syncs the device (the
        whole floor, as one-request TTFTs measure it)."""
        start_s = now
        if self.gpu_free_s == now and not (self.prefix_prefill_syncs and any(done for _, _, done in chunks)):
            start_s = min(now, max(self.host_free_s, self.last_start_s, self.admitted_put_s))
        self.host_free_s = start_s + self.prefill_launch_s
        return self.host_free_s

    def _end_step(self, _event: object) -> None:
        self.gpu_free_s = self.env._now
        self.in_step = False
        self.step_len_s = 0.0
        self.steps_run += 1
        self._finish_step(*self._batch)
        self._next()

    def _plan_stretch(self) -> Stretch | None:
        """Plan the decode-only steps the batch cannot change during (None when under two): no prefill in
        flight, nothing admissible, up to the first completion, before the KV blocks run out, and while the
        step times stay affine in the step index."""
        dec_base = self.dec_base
        if not dec_base or self.prefill_target or self.extra_step_s or self.pending_aborts:
            return None
        if (self.queue.members or self.requeued.members) and (
            len(self.running) < self.max_num_seqs or self.preemptive_priority or self.held_slots
        ):
            return None
        heap = self.finish_heap
        dec_finish = self.dec_finish
        while dec_finish.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)  # stale entries of preempted requests
        s0 = self.step
        n = heap[0][0] - s0 + 1
        if n < 2:
            return None
        bs = self.block_size
        n_dec = len(dec_base)
        free = self.free_blocks
        # blocks step s0 + i allocates at its start: the sequences crossing a block boundary then, those in
        # bucket[(-s0 - i) % bs] (the bucket read backwards from (-s0) % bs). Over a whole period of bs steps every
        # sequence crosses once. Stop before the first step that would run out (and preempt): cumulative needs
        # never decrease, so bisect finds it.
        j0 = -s0 % bs
        bucket = self.bucket
        prefix = None
        if free < n_dec * -(-n // bs):  # the blocks could run out within n steps: find where
            prefix = list(accumulate(needs_backwards(bucket, j0)[: bs - 1], initial=0))
            periods = free // n_dec
            n = min(n, periods * bs + bisect_right(prefix, free - periods * n_dec) - 1)
            if n < 2:
                return None
        kv0 = self.sum_base + n_dec * (s0 + 1)  # KV tokens read by the first step; each later step reads n_dec more
        a_s, b_s, n = self.step_time.decode_affine(n_dec, float(kv0), float(n_dec), n)
        if n < 2:
            return None
        return Stretch(self.env._now, n, a_s, b_s, n_dec, bucket, j0, free, prefix)

    # _start_stretch, _end_stretch and Stretch.ended run once or more per request: they spell out
    # Stretch.elapsed_s / end_s / step_s inline (method calls there cost ~6% of a chat run's instructions).
    def _start_stretch(self, st: Stretch) -> None:
        """Run the planned steps with one event (cut short at a step end by an arrival or an abort)."""
        n = st.n
        if self.undelivered:  # delivered at the end of the stretch's first step, which always runs (an event then,
            # not now: a run that stops, an autoscaler that reads its TTFT sink before then must not see it yet)
            self._deliver_first_tokens_later(st.start_s + st.a_s)
        st.busy0_s = busy = self.busy_s
        length = n * st.a_s + st.b_s * (n * (n - 1) // 2)  # st.elapsed_s(n)
        self.step_len_s = length
        self.busy_s = busy + length
        self.step_started_s = st.start_s
        self.in_step = True
        self.stretch = st
        self.free_blocks = st.free_before - st.bucket[st.j0]  # st.cum_needs(1): what the first step allocates
        if len(self.running) < self.max_num_seqs or self.preemptive_priority or self.held_slots:
            st.cuttable = True  # an arrival could be admitted, or preempt someone
            self.waker.arm()
        st.timeout = self.env.call_at(st.start_s + length, self._end_stretch)

    def _end_stretch(self, _event: object) -> None:
        """The stretch's last planned step (st.stop_at) has ended: apply the steps before it, finish it."""
        st = self.stretch
        assert st is not None
        last = st.stop_at
        self.stretch = None
        self.gpu_free_s = self.env._now
        n_dec = st.n_dec
        a_s, b_s = st.a_s, st.b_s
        # _apply_steps(st, last), inline: the steps before the last (none completes anyone)
        self.cum_s_per_token += (last * a_s + b_s * (last * (last - 1) // 2)) / n_dec
        self.step += last
        self.busy_s = st.busy0_s + ((last + 1) * a_s + b_s * ((last + 1) * last // 2))
        self.free_blocks = st.free_before - st.cum_needs(last + 1)
        self.in_step = False
        self.step_len_s = 0.0
        self.steps_run += last + 1
        self.last_start_s = st.start_s + (last * a_s + b_s * (last * (last - 1) // 2))  # st.end_s(last), inline
        if self.overlap:  # the next step was formed when the last one started
            self.admit_put_by_s = self.last_start_s
            self.admit_puts = st.formed_puts
        self._complete_decodes((a_s + b_s * last) / n_dec)
        if self.pending_aborts:
            self._drop_pending_aborts()
        self._next()

    def _interrupt_stretch(self, st: Stretch, later: int = 0) -> None:
        """Stop the stretch at the end of its step in progress, or `later` steps after it (no-op once it is over,
        or already cut)."""
        if self.stretch is st:
            j = st.ended(self.env._now) + later  # the step in progress (+ later)
            if j < st.stop_at:  # else the stretch already ends with that step or before
                st.stop_at = j
                st.timeout.callbacks.remove(self._end_stretch)  # type: ignore[union-attr]
                k = j + 1  # st.end_s(k), inline
                st.timeout = self.env.call_at(st.start_s + (k * st.a_s + st.b_s * (k * j // 2)), self._end_stretch)

    def _apply_steps(self, st: Stretch, count: int) -> None:
        """Advance the decode clock over the first `count` planned steps (none of them completes anyone)."""
        self.cum_s_per_token += st.elapsed_s(count) / st.n_dec
        self.step += count
        self.steps_run += count

    def _schedule(self) -> tuple[list[tuple[int, int, int]], int, float, float]:
        """Form the next batch; returns (prefill chunks as (rid, chunk, done), decode count, KV read, pairs)."""
        if self.preemptive_priority:
            self._priority_preemption()
        if self.role == "decode" or self.swap:  # only there can a waiting request's KV cache be ready
            self._admit_transferred()
        bs, n_dec, kv_read = self.block_size, 0, 0.0
        if self.dec_base and not (self.prefill_first and (self._chunk_continues() or self._can_admit())):
            n_dec, kv_read = self._allocate_decodes()  # 1) decodes: one token each
        budget = self.max_num_batched_tokens - n_dec
        prefill_target, computed = self.prefill_target, self.computed

        # 2) running partial prefills, oldest first
        chunks: list[tuple[int, int, int]] = []
        partial = 0  # prompts still partly unprefilled after this step (vLLM caps how many run at once)
        if prefill_target:
            budget, partial = self._continue_prefills(chunks, budget)

        # 3) admit waiting requests in priority order (preempted ones first within a priority)
        t = self.table
        running = self.running
        max_num_seqs = self.max_num_seqs
        preempted_kv = self.preempted_kv
        if self.held_slots:
            max_num_seqs = self._free_slot_if_idle()
        self.admitted_put_s = -math.inf  # the newest admission's put time (_host_launch_end_s; _take)
        while budget > 0 and (len(running) < max_num_seqs or self.held_slots):
            head = self._admissible_head()
            if head is None:
                break
            rid, source = head
            if t.kv_ready[rid]:
                break  # its KV cache exists (swapped out or transferred): it waits for blocks, no recompute
            target = int(t.input_tokens[rid] + t.generated[rid])
            pin = self.pins.get(int(t.task_id[rid])) if self.pins else None  # its task's KV, kept here
            if len(running) >= max_num_seqs and (pin is None or not pin.hold_slot):
                break  # every slot taken (pins hold some): only a task's own held slot lets it in
            reused, kept, hit = self._admission_hit(rid, target, pin)
            chunk = min(target - hit, budget, self.max_chunk_tokens)
            unfinished = chunk < target - hit
            if unfinished and not self.chunked:
                break
            need_blocks = -(-(hit + chunk) // bs)
            if need_blocks > self.free_blocks and not (self.pins and self._room_with_pins(need_blocks, pin)):
                break
            if unfinished and partial >= self.max_num_partial_prefills:
                break
            if self.full_sequence and not self._commit_full_sequence(rid):
                break
            self._take(source, rid)
            if preempted_kv is not None and preempted_kv.kept:
                preempted_kv.revive(rid, kept // bs if kept >= hit else 0)
            if pin is not None:  # the task's pinned KV becomes this request's cached prefix (its slot frees)
                max_num_seqs = self._take_over(pin, reused)
                if reused and hit == reused:  # those blocks pass straight to the request, never to the free queue
                    self.freed_blocks -= blocks_for(reused, bs)
            first_admission = t.first_scheduled_s[rid] != t.first_scheduled_s[rid]  # still NaN: never scheduled
            if source is self.queue and t.replica[rid] < 0:
                t.replica[rid] = self.replica_id
                t.first_scheduled_s[rid] = self.env._now
            self.free_blocks -= need_blocks
            running[rid] = None
            prefill_target[rid] = target
            computed[rid] = hit
            if hit and first_admission:
                # prompt tokens the cache spared the first prefill; a re-admission after preemption recomputes
                # (or finds cached) its own earlier work, which is not a saving on the prompt
                t.cached_tokens[rid] = min(hit, int(t.input_tokens[rid]))
            chunks.append((rid, chunk, hit))
            budget -= chunk
            partial += unfinished

        pairs = 0.0
        for _, c, d in chunks:
            pairs += c * (d + (c + 1) / 2)
        return chunks, n_dec, kv_read, pairs

    def _take(self, source: WaitingQueue, rid: int) -> None:
        """Take an admitted request out of its queue, keeping the newest put time of the step's admissions."""
        source.take(rid)
        if source is self.queue and self.head_put_s > self.admitted_put_s:
            self.admitted_put_s = self.head_put_s

    def _allocate_decodes(self) -> tuple[int, float]:
        """Step 1 of a batch: allocate a block for each decode crossing a block boundary, evicting idle tasks'
        pins and then preempting the newest running requests while blocks run short. Returns (decodes, KV read)."""
        s, bs = self.step, self.block_size
        need = self.bucket[(-s) % bs]
        if need > self.free_blocks and self.pins:
            self._evict_pins(need)  # idle tasks' KV goes before running work
        while need > self.free_blocks:
            self._preempt(next(reversed(self.running)))
            need = self.bucket[(-s) % bs]
        self.free_blocks -= need
        n_dec = len(self.dec_base)
        return n_dec, float(self.sum_base + n_dec * (s + 1))

    def _room_with_pins(self, need_blocks: int, pin: Pin | None) -> bool:
        """A waiting request needs more blocks than are free: its task's own pin counts as room, and on an idle
        replica other pins are evicted (oldest first) rather than leave it idle."""
        own = pin.blocks if pin is not None else 0
        if need_blocks > self.free_blocks + own and not self.running:
            self._evict_pins(need_blocks - own, keep=pin)
        return need_blocks <= self.free_blocks + own

    def _continue_prefills(self, chunks: list[tuple[int, int, int]], budget: int) -> tuple[int, int]:
        """Step 2 of a batch, called only while some prompt is partly prefilled (kept out of _schedule's common
        path): the next chunk of each running partial prefill, oldest first, appended to chunks. Returns the
        token budget left and how many prompts will still be partly unprefilled after this step."""
        prefill_target, computed = self.prefill_target, self.computed
        completing = 0  # running prefills whose last chunk is in this step
        scheduled: set[int] = set()  # their chunks so far (a newer unscheduled one may be preempted for room)
        for rid in list(prefill_target):
            if budget <= 0:
                break
            if rid not in prefill_target:
                continue  # preempted while making room for an older one
            done = computed[rid]
            chunk = min(prefill_target[rid] - done, budget, self.max_chunk_tokens)
            chunk = self._fit_chunk(rid, done, chunk, scheduled)
            if chunk == 0:
                break
            chunks.append((rid, chunk, done))
            scheduled.add(rid)
            budget -= chunk
            completing += done + chunk == prefill_target[rid]
        return budget, len(prefill_target) - completing

    def _final_blocks(self, rid: int) -> int:
        """KV blocks the request holds at its longest: its prompt and its answer but the last token, whose KV is
        never written (the fleet admits requests of up to the cache's tokens + 1 on that count)."""
        return blocks_for(int(self.table.input_tokens[rid] + self.table.output_tokens[rid]) - 1, self.block_size)

    def _commit_full_sequence(self, rid: int) -> bool:
        """Full-sequence admission (the last check before a request is admitted): reserve the KV blocks it
        will hold at its longest, or refuse it (False) when the running requests' reservations leave no room."""
        final_blocks = self._final_blocks(rid)
        if self.committed_blocks + final_blocks > self.kv_blocks:
            return False
        if final_blocks:
            self.committed[rid] = final_blocks
            self.committed_blocks += final_blocks
        return True

    def _admit_transferred(self) -> None:
        """Requests whose KV cache is ready (transferred from a prefill replica, or swapped out to host
        memory) join the decode batch directly, in this step, while slots and blocks allow (no prefill);
        swapped ones pay the copy back over the host link."""
        t = self.table
        bs = self.block_size
        while len(self.running) < self.max_num_seqs:
            head = self._admissible_head()  # a transfer that lands while the next step is formed waits for it too
            if head is None:
                return
            rid, source = head
            if not t.kv_ready[rid]:
                return  # a preempted request without its KV: it is prefilled again below
            kv = int(t.input_tokens[rid] + t.generated[rid]) - 1  # KV length before its next decode step
            reserve = self._swap_in_reserve() if t.swapped[rid] and self.running else 0
            if blocks_for(kv, bs) + reserve > self.free_blocks and self.pins and not self.running:
                self._evict_pins(blocks_for(kv, bs))
            if blocks_for(kv, bs) + reserve > self.free_blocks:
                return
            source.take(rid)
            self.free_blocks -= blocks_for(kv, bs)
            if t.swapped[rid]:
                self.extra_step_s += kv * self.host_link_s_per_token  # swap in
                t.swapped[rid] = 0
            else:
                t.prefill_replica[rid] = t.replica[rid]
                t.replica[rid] = self.replica_id
            self.running[rid] = None
            self._enter_decode(rid, kv, self.step)

    def _admissible_head(self) -> tuple[int, WaitingQueue] | None:
        """The next waiting request to admit and the queue holding it, preempted ones (requeued) before new ones of
        the same priority; None when none waits that was put before the step in flight was formed (overlap
        scheduling: later ones join the step after)."""
        queue, requeued = self.queue, self.requeued
        wq = queue.head_put_before(self.admit_put_by_s, self.admit_puts) if queue.members else None
        if requeued.members:
            rq = requeued.head_key()
            if rq is not None and (wq is None or rq < wq):
                return rq[2], requeued
        if wq is None:
            return None
        self.head_put_s = wq[3]  # when it was put: an overlapping host cannot launch its prefill before
        return wq[2], queue

    def _enter_decode(self, rid: int, kv: int, s0: int) -> None:
        """Put a request in the decode batch from decode step s0 on, its KV length before that step being kv."""
        t = self.table
        base = kv - s0
        self.dec_base[rid] = base
        finish = s0 + int(t.output_tokens[rid]) - int(t.generated[rid]) - 1
        self.dec_finish[rid] = finish
        self.dec_cum0[rid] = self.cum_s_per_token
        self.bucket[base % self.block_size] += 1
        self.sum_base += base
        heapq.heappush(self.finish_heap, (finish, rid))

    def _chunk_continues(self) -> bool:
        """Prefill-first: a partly prefilled prompt gets its next chunk now (SGLang continues its chunked request in a
        prefill batch of its own, the decodes waiting: get_new_batch_prefill), at least one token of it fitting the
        blocks it holds and the free ones (else the decodes run, and preempt, as SGLang's do)."""
        if not self.prefill_target:
            return False
        done = self.computed[next(iter(self.prefill_target))]
        return (blocks_for(done, self.block_size) + self.free_blocks) * self.block_size > done

    def _can_admit(self) -> bool:
        """Prefill-first: a waiting request could start now (a slot, its first chunk's budget and blocks)."""
        if len(self.running) >= self.max_num_seqs:
            return False
        head = self._admissible_head()
        if head is None:
            return False
        rid = head[0]
        if self.table.kv_ready[rid]:
            return False  # it resumes decoding with its KV cache: not a prefill
        need, unfinished = self._first_chunk(rid)
        if unfinished and not self.chunked:
            return False
        if self._reservations_refuse(rid):
            return False  # full-sequence admission would refuse it: the decodes must not pause for it
        return need <= self.free_blocks

    def _first_chunk(self, rid: int) -> tuple[int, bool]:
        """A waiting request's first chunk as admission would count it, the cache peeked, not touched: (the free
        blocks it needs, its pinned KV counted as room; whether its prompt is left unfinished by the chunk cap)."""
        t = self.table
        target = int(t.input_tokens[rid] + t.generated[rid])
        pin = self.pins.get(int(t.task_id[rid])) if self.pins else None
        hit = self._admission_hit(rid, target, pin, peek=True)[2]  # the computed tokens take blocks too
        chunk = min(target - hit, self.max_chunk_tokens)
        need = blocks_for(hit + chunk, self.block_size) - (pin.blocks if pin is not None else 0)
        return need, chunk < target - hit

    def _admission_hit(self, rid: int, target: int, pin: Pin | None, peek: bool = False) -> tuple[int, int, int]:
        """What admission finds already computed of a request's `target` tokens: (its task's pinned KV it takes over,
        its own blocks kept since a preemption, the tokens computed in all, the prefix cache's hit counted where no
        pin is); peek: the cache looked at without being touched (_can_admit)."""
        reused = min(pin.prefix_tokens, int(self.table.context_tokens[rid]), target - 1) if pin is not None else 0
        hit = reused or (self._cached_prefix(rid, target, peek) if self.prefix_cache is not None else 0)
        kept_kv = self.preempted_kv  # _kept_prefix's first test inline (per admission): most were never preempted
        kept = self._kept_prefix(rid, target) if kept_kv is not None and rid in kept_kv.kept else 0
        return reused, kept, max(hit, kept)

    def _cached_prefix(self, rid: int, target: int, peek: bool = False) -> int:
        """Prompt tokens this replica's prefix cache already holds (at least one token is always computed); peek:
        without touching the cache or loading anything back."""
        cache = self.prefix_cache
        if cache is None:
            return 0
        keys, blocks = request_prefixes(self.table, rid)
        if not keys and not blocks:
            return 0
        hit, tier = cache.peek(keys, blocks) if peek else cache.lookup(keys, blocks)
        hit = min(hit, target - 1)
        if not peek:
            self.extra_step_s += hit * self.load_s_per_token[tier]  # load it back from host memory or SSD
        return hit

    def _kept_prefix(self, rid: int, target: int) -> int:
        """Tokens of a preempted request's own blocks still cached here (whole blocks, at least one token left to
        compute, as vLLM caps a prefix hit); 0 when it kept none (or the engine keeps none)."""
        if self.preempted_kv is None or rid not in self.preempted_kv.kept:
            return 0
        blocks = self.preempted_kv.surviving(rid, self.free_blocks, self.freed_blocks)
        return min(blocks, (target - 1) // self.block_size) * self.block_size

    def _priority_preemption(self) -> None:
        """Preemptive priority: while the most urgent waiting request cannot be admitted for lack of a slot, KV
        blocks or (full-sequence admission) room beside the running requests' reservations, preempt the least urgent
        (and, among those, newest) running request below it."""
        t = self.table
        while self.running:
            head = self._admissible_head()  # not one the step in flight was formed without (overlap scheduling)
            if head is None:
                return
            rid = head[0]
            prio = int(t.priority[rid])
            need, reserved = self._urgent_need(rid)
            own = self.pins.get(int(t.task_id[rid])) if self.pins else None  # its task's: its room and held slot
            slot = len(self.running) < self.max_num_seqs or (own is not None and own.hold_slot)
            if slot and need <= self.free_blocks and not reserved:
                return
            # idle tasks' slots and KV go before a running request is preempted (each pass evicts one pin), never the
            # head's own task's
            if not slot and self.held_slots:
                if self._evict_oldest(lambda p: p.hold_slot and p is not own):
                    continue
            if self.pins and need > self.free_blocks and self._evict_oldest(lambda p: p is not own):
                continue
            worst = max(int(t.priority[r]) for r in self.running)
            if worst <= prio:
                return
            self._preempt(next(r for r in reversed(self.running) if t.priority[r] == worst))

    def _urgent_need(self, rid: int) -> tuple[int, bool]:
        """What the waiting request `rid` needs for admission in the next step, as that step will allocate: (free KV
        blocks, counting what the step takes before it; whether full-sequence admission's reservations leave it no
        room). A request with its KV cache ready needs all of it, its first decode block and the decodes' blocks
        (and swap-in's watermark); else its first chunk with what admission finds computed, after the running
        partial prefills' next chunks and (decode-first) the decodes' blocks."""
        t, bs = self.table, self.block_size
        decodes = self.bucket[(-self.step) % bs]
        if t.kv_ready[rid]:  # _admit_transferred runs first in the step
            kv = int(t.input_tokens[rid] + t.generated[rid]) - 1
            need = blocks_for(kv + 1, bs) + decodes
            if t.swapped[rid]:  # its watermark
                need = max(need, blocks_for(kv, bs) + self._swap_in_reserve())
            return need, False
        need = self._first_chunk(rid)[0] + (0 if self.prefill_first else decodes)
        for r, target in self.prefill_target.items():  # _continue_prefills runs before admission
            done = self.computed[r]
            need += blocks_for(done + min(target - done, self.max_chunk_tokens), bs) - blocks_for(done, bs)
        return need, self._reservations_refuse(rid)

    def _reservations_refuse(self, rid: int) -> bool:
        """Full-sequence admission: the running requests' reservations leave the waiting request no room."""
        return self.full_sequence and self.committed_blocks + self._final_blocks(rid) > self.kv_blocks

    def _swap_in_reserve(self) -> int:
        """Free blocks swap-in keeps beside a swapped request's KV: vLLM's 1% watermark plus one per running decode,
        so admitting it does not force the next step to preempt someone else."""
        return self.kv_blocks // 100 + len(self.dec_base)

    def _fit_chunk(self, rid: int, done: int, chunk: int, scheduled: set[int]) -> int:
        """Allocate blocks for a prefill chunk, preempting newer unscheduled prefills if needed;
        shrink the chunk to the free blocks when that is not enough. Returns the chunk granted."""
        bs = self.block_size
        held = blocks_for(done, bs)
        need = blocks_for(done + chunk, bs) - held
        if need > self.free_blocks and self.pins:
            self._evict_pins(need)
        while need > self.free_blocks:
            victim = next(
                (r for r in reversed(self.running) if r != rid and r in self.prefill_target and r not in scheduled),
                None,
            )
            if victim is None:
                break
            self._preempt(victim)
        if need > self.free_blocks:
            if not self.chunked:
                return 0
            chunk = max(0, (held + self.free_blocks) * bs - done)
            need = blocks_for(done + chunk, bs) - held
        self.free_blocks -= need
        return chunk

    def _preempt(self, rid: int) -> None:
        """Preemption by recompute: free the request's KV blocks and queue it to be prefilled again."""
        t = self.table
        decoding = rid in self.dec_base
        kv = self.dec_base[rid] + self.step if decoding else self.computed[rid]
        self._release(rid)
        if self.preempted_kv is not None and not (self.swap and decoding):
            kept = min(kv, int(t.input_tokens[rid])) if self.preempted_kv.prompt_only else kv
            self.preempted_kv.keep(rid, kept // self.block_size, self.free_blocks, self.freed_blocks)
        if self.swap and decoding:
            self.extra_step_s += kv * self.host_link_s_per_token  # swap out; back in when re-admitted
            t.kv_ready[rid] = 1
            t.swapped[rid] = 1
        else:
            t.kv_ready[rid] = 0  # its KV is gone: it will be prefilled again
        t.preemptions[rid] += 1
        self.preemptions += 1
        self.requeued.put_front(rid, int(t.priority[rid]))

    def _release(self, rid: int) -> None:
        """Take a running request out of the batch between steps, freeing its KV blocks."""
        s = self.step
        bs = self.block_size
        t = self.table
        if rid in self.dec_base:
            base = self.dec_base.pop(rid)
            del self.dec_finish[rid]
            self.bucket[base % bs] -= 1
            self.sum_base -= base
            kv = base + s
            t.generated[rid] = kv - t.input_tokens[rid] + 1
            t.replica_s[rid] += self.cum_s_per_token - self.dec_cum0.pop(rid)
            freed = blocks_for(kv, bs)
        else:
            freed = blocks_for(self.computed.pop(rid), bs)
            del self.prefill_target[rid]
        self.free_blocks += freed
        self.freed_blocks += freed
        self._uncommit(rid)
        del self.running[rid]

    def abort(self, rid: int) -> bool:
        """The caller gave up on a request this replica holds. Waiting requests leave at once; a running
        one leaves at the end of the step in progress, unless that step completes it (the caller then sees
        it completed). Returns True if the request is here."""
        if rid in self.running:
            if self.in_step:
                self.pending_aborts.add(rid)
                if self.stretch is not None:
                    self._interrupt_stretch(self.stretch)  # it stops at the end of its step in progress
            else:
                self._release(rid)
                self.held_counts[self.held_slot] -= 1
                self.on_abort(rid)
            return True
        if self.requeued.remove(rid):
            if self.preempted_kv is not None:
                self.preempted_kv.forget(rid)
            self.held_counts[self.held_slot] -= 1
            self.on_abort(rid)
            return True
        if self.queue.remove(rid):
            self.held_counts[self.held_slot] -= 1
            self.on_abort(rid)
            return True
        return False

    def fail(self) -> list[int]:
        """The replica fails: every request it holds is lost (a running one at the end of the step in progress),
        its KV and prefix cache with them; it runs nothing until `repair()`. Returns the requests lost."""
        lost = list(self.running) + list(self.requeued.members) + (list(self.queue.members) if self.owns_queue else [])
        self.down = True
        self.repaired = self.env.event()
        for rid in lost:
            self.abort(rid)
        for task_id in list(self.pins):
            self.unpin(task_id, "fault")
        if self.prefix_cache is not None:
            self.prefix_cache = PrefixCache(*self._prefix_cache_args)
        if self.preempted_kv is not None:
            self.preempted_kv.clear()
        return lost

    def drop_waiting(self) -> list[int]:
        """Requests routed here while it was down (before the health check noticed): lost."""
        lost = list(self.requeued.members) + (list(self.queue.members) if self.owns_queue else [])
        for rid in lost:
            self.abort(rid)
        return lost

    def repair(self) -> None:
        self.down = False
        if self.repaired is not None and not self.repaired.triggered:
            self.repaired.succeed()

    def _deliver_first_tokens_later(self, at_s: float) -> None:
        """The first tokens waiting now reach their clients at at_s (an event then)."""
        due, self.undelivered = self.undelivered, []
        self.env.call_at(at_s, lambda _ev: self._deliver_first_tokens(at_s, due))

    def _deliver_first_tokens(self, at_s: float, rids: list[int] | None = None) -> None:
        """The delayed first tokens (`rids`, else all waiting) reach their clients at at_s, now: requests that left
        meanwhile, or are leaving at this step's end (aborted), are skipped."""
        t = self.table
        if rids is None:
            rids, self.undelivered = self.undelivered, []
        aborting = self.pending_aborts
        for rid in rids:
            if t.outcome[rid] == PENDING_CODE and t.first_token_s[rid] != t.first_token_s[rid] and rid not in aborting:
                t.first_token_s[rid] = at_s
                if self.ttft_sink is not None:
                    self.ttft_sink.append(at_s - t.arrival_s[rid])
                if self.on_first_token is not None:
                    self.on_first_token(rid, self)

    def _complete_decodes(self, s_per_token: float) -> None:
        """End of decode step `self.step`: the sequences whose last token it produced complete; the clock advances."""
        s = self.step
        self.cum_s_per_token += s_per_token
        heap = self.finish_heap
        if heap and heap[0][0] <= s:
            now = self.env._now
            t = self.table
            bs = self.block_size
            dec_finish, dec_base, bucket = self.dec_finish, self.dec_base, self.bucket
            while heap and heap[0][0] <= s:
                finish, rid = heapq.heappop(heap)
                if dec_finish.get(rid) != finish:
                    continue  # stale entry of a preempted request
                base = dec_base.pop(rid)
                del dec_finish[rid]
                bucket[base % bs] -= 1
                self.sum_base -= base
                freed = -(-(base + s + 1) // bs)
                self.free_blocks += freed
                self.freed_blocks += freed
                t.generated[rid] = t.output_tokens[rid]
                t.replica_s[rid] += self.cum_s_per_token - self.dec_cum0.pop(rid)
                self._complete(rid, now)
        self.step = s + 1

    def _finish_step(self, chunks: list[tuple[int, int, int]], s_per_token: float, decoded: bool) -> None:
        if self.undelivered:  # first tokens of the step before this one
            self._deliver_first_tokens(self.env._now)
        if decoded:
            self._complete_decodes(s_per_token)
        s = self.step  # the next decode step
        now = self.env._now
        t = self.table
        bs = self.block_size
        # prefill chunks; a finished prefill produces the first (or next) token
        for rid, chunk, done in chunks:
            t.replica_s[rid] += chunk * s_per_token
            computed = done + chunk
            target = self.prefill_target[rid]
            if computed < target:
                self.computed[rid] = computed
                continue
            del self.prefill_target[rid]
            del self.computed[rid]
            if self.prefix_cache is not None:
                for key, n in ((t.prefix_key[rid], t.prefix_tokens[rid]), (t.context_key[rid], t.context_tokens[rid])):
                    if key >= 0:
                        self.prefix_cache.insert(int(key), int(n))
                self.prefix_cache.insert_blocks(request_blocks(self.table, rid))
            g = int(t.generated[rid]) + 1
            t.generated[rid] = g
            out = int(t.output_tokens[rid])
            if t.first_token_s[rid] != t.first_token_s[rid]:  # NaN: first token of this request
                if self.delayed_first_token and g < out:
                    self.undelivered.append(rid)
                else:
                    t.first_token_s[rid] = now
                    if self.ttft_sink is not None:  # an autoscaler reading tail TTFT
                        self.ttft_sink.append(now - t.arrival_s[rid])
                    if self.on_first_token is not None:
                        self.on_first_token(rid, self)
            if g >= out:
                self.free_blocks += blocks_for(target, bs)
                self.freed_blocks += blocks_for(target, bs)
                self._complete(rid, now)
                continue
            if self.role == "prefill":  # disaggregated: the KV cache leaves for a decode replica
                self.free_blocks += blocks_for(target, bs)
                self.freed_blocks += blocks_for(target, bs)
                self._uncommit(rid)
                del self.running[rid]
                assert self.on_prefilled is not None
                self.held_counts[self.held_slot] -= 1
                self.on_prefilled(rid)
                continue
            # decode from the next decode step on; KV length before it is target
            self._enter_decode(rid, target, s)
        if self.pending_aborts:
            self._drop_pending_aborts()

    def _drop_pending_aborts(self) -> None:
        """Requests aborted during the step that just ended leave now."""
        for rid in sorted(self.pending_aborts):
            if rid in self.running:
                self._release(rid)
                self.held_counts[self.held_slot] -= 1
                self.on_abort(rid)
        self.pending_aborts.clear()

    def flush(self) -> None:
        """Bring the per-request counters of running decodes up to date (the run is stopping)."""
        t = self.table
        st = self.stretch
        if st is not None:  # count the stretch's whole steps finished by now
            self._apply_steps(st, st.ended(self.env.now))
            self.stretch = None
        for rid, base in self.dec_base.items():
            t.generated[rid] = base + self.step - t.input_tokens[rid] + 1
            t.replica_s[rid] += self.cum_s_per_token - self.dec_cum0[rid]
            self.dec_cum0[rid] = self.cum_s_per_token

    def _uncommit(self, rid: int) -> None:
        self.committed_blocks -= self.committed.pop(rid, 0)

    def _complete(self, rid: int, now: float) -> None:
        if self.committed:
            self._uncommit(rid)
        del self.running[rid]
        self.table.completion_s[rid] = now
        self.held_counts[self.held_slot] -= 1
        if self.retention is not None and self.role == "mixed":
            self._pin(rid, now)
        self.on_complete(rid)

    # ---- KV retention between an agent task's LLM steps (sim/kv_retention.py) ----
    def _pin(self, rid: int, now: float) -> None:
        """A retaining task's step completed: keep the KV blocks it just freed (its prompt and answer, less the
        answer's last token) for the task's next step, up to the policy's ttl."""
        assert self.retention is not None
        policy = self.retention.policy(rid)
        if policy is None:
            return
        t = self.table
        task_id = int(t.task_id[rid])
        if task_id in self.pins:
            self.unpin(task_id, "superseded")
        tokens = int(t.input_tokens[rid] + t.output_tokens[rid]) - 1
        pin = Pin(task_id, tokens, blocks_for(tokens, self.block_size), now, policy.hold_slot,
                  min(int(t.context_tokens[rid]), tokens))
        self.pins[task_id] = pin
        self.free_blocks -= pin.blocks
        self.freed_blocks -= pin.blocks  # taken straight back as they were freed: never in the free queue
        self.pinned_blocks += pin.blocks
        if pin.hold_slot:
            self.held_slots += 1
            self.max_num_seqs -= 1
        self.retention.pinned(task_id, self.replica_id)
        if policy.ttl_s is not None:
            self.env.call_later(policy.ttl_s, self._expire, pin)  # one heap entry for all pins of this ttl

    def _expire(self, pin: Pin) -> None:
        if not pin.released:
            self.unpin(pin.task_id, "expired")

    def unpin(self, task_id: int, reason: str, hit_tokens: int = 0) -> None:
        """End a task's pin here (no-op when it holds none): its blocks and slot go back, the ledger books it."""
        pin = self.pins.pop(task_id, None)
        if pin is None:
            return
        pin.released = True
        self.free_blocks += pin.blocks
        self.freed_blocks += pin.blocks
        st = self.stretch
        if st is not None:
            st.free_before += pin.blocks  # a stretch in progress recomputes free blocks from this
        self.pinned_blocks -= pin.blocks
        if pin.hold_slot:
            self.held_slots -= 1
            self.max_num_seqs += 1
        assert self.retention is not None
        self.retention.released(pin, self.replica_id, reason, self.env.now, hit_tokens)
        if st is not None and pin.hold_slot and (self.queue.members or self.requeued.members):
            self._interrupt_stretch(st)  # a slot is free for what waits: the next step boundary looks again

    def _evict_oldest(self, which: Callable[[Pin], bool]) -> bool:
        task_id = next((k for k, p in self.pins.items() if which(p)), None)
        if task_id is None:
            return False
        self.unpin(task_id, "pressure")
        return True

    def _evict_pins(self, need_blocks: int, keep: Pin | None = None) -> None:
        """Memory pressure: evict pins, oldest first (never `keep`), until need_blocks are free or none is left."""
        while need_blocks > self.free_blocks and self._evict_oldest(lambda p: p is not keep):
            pass

    def _free_slot_if_idle(self) -> int:
        """When nothing runs and pinned slots fill the batch, evict the oldest slot pin unless the head's task holds
        one (a replica must not sit idle for pins). Returns the slots left to requests."""
        head = self._admissible_head() if not self.running and self.max_num_seqs < 1 else None
        if head is not None:
            pin = self.pins.get(int(self.table.task_id[head[0]]))
            if pin is None or not pin.hold_slot:
                self._evict_oldest(lambda p: p.hold_slot)
        return self.max_num_seqs

    def _take_over(self, pin: Pin, reused_tokens: int) -> int:
        """The task's next step is admitted here and takes its pin's blocks and slot: a hit when its prompt reuses
        some of them (else superseded: e.g. a step without the task's context). Returns the slots left."""
        self.unpin(pin.task_id, "hit" if reused_tokens > 0 else "superseded", reused_tokens)
        return self.max_num_seqs

    def held_blocks(self) -> int:
        """KV blocks the running requests hold, from their progress (valid between steps, outside a stretch):
        blocks in use = held_blocks() + pinned_blocks, and in use + free = kv_blocks."""
        bs = self.block_size
        n = sum(blocks_for(base + self.step, bs) for base in self.dec_base.values())
        return n + sum(blocks_for(c, bs) for c in self.computed.values())
