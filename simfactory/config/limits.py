"""What one input may ask of the simulator, in one place: every bound that refuses a value because it would
hang a run, exhaust memory or overflow arithmetic.

Each bound sits far above any real use (its comment says why) and below what breaks: a value past it is a typo,
a unit slip or an attempt to write "infinity". The schemas (field constraints) and `resolve` (checks that need
several sections, a workload or a profile) refuse such values with the field and the bound named; nothing here
clips or rounds a value silently.
"""

from __future__ import annotations

# ---- numbers in general (simfactory.config.base applies these to every field of every input file) ----
# The largest integer a float64 holds exactly. Counts flow into int64 columns and float arithmetic; no count
# in a fleet (devices, tokens, requests, seeds) comes near 9e15, while 2**63 or 2**64 wrap or overflow.
MAX_INT = 2**53
# The largest magnitude of any float field. No quantity a scenario states (seconds, tokens, dollars, GB, rates,
# TFLOPS) comes near 1e15 (a year is 3.2e7 s; the largest training run ~2e13 tokens), and products of a handful
# of values bounded by it stay finite in float64 (max ~1.8e308), so costs and times cannot become inf or nan.
MAX_NUMBER = 1e15

# ---- fleet size ----
MAX_REPLICAS = 100_000  # per deployment, one simulated engine each: beyond this a run would not finish (a typo, not a fleet)
MAX_ACCELERATORS = 10_000_000  # per pool (and per training job): ten times the largest announced clusters
MAX_BLOCK_SIZE = 4096  # tokens per KV block: vLLM uses 16 (at most 128); a larger block is a tokens/bytes slip

# ---- simulated time ----
# horizon_s and max_drain_s: 1e9 s is 31 years of simulated time.
MAX_SIMULATED_S = 1e9
# a serving front end's time per request (front_end_s): public ones take milliseconds; a minute is a unit slip
MAX_FRONT_END_S = 60.0

# ---- token counts ----
# One request's prompt or answer, any token distribution's values and mean, a context window: the longest
# context any model advertises is 10M tokens (Llama 4 Scout, 2025-04); more in one request is a unit slip.
# Also keeps every draw far inside int64 (token columns).
MAX_TOKENS = 10_000_000
# A deployment's KV-cache override may exceed what its devices hold (an "unlimited memory" what-if; a warning
# says by how much) but not by more than this factor: 1e18 tokens is a typo, not a what-if.
MAX_KV_OVERCOMMIT = 100.0

# ---- total work of one run ----
# Arrivals one run generates (rate x horizon; the peak rate for diurnal and MMPP; a closed loop's bound is under
# MIN_CLOSED_LOOP_CYCLE_S): the request table and the metrics built from it take about 0.5 KB per request, so 5e7
# is ~25 GB, what a large workstation holds (and hours of simulation). 10,000 requests/s for an hour is 3.6e7.
MAX_ARRIVALS = 5e7
# Agent step executions one run implies (expected tasks x expected steps per task): each is a SimPy process
# step or an LLM request (a row of the request table), so the same bound as MAX_ARRIVALS.
MAX_AGENT_STEPS = 5e7
# Samples of one timeline ((horizon + max drain) / resolution): each sample stores a row per replica, in memory
# until the run ends. Two million is a 23-day run at 1 s, or a day at 50 ms.
MAX_TIMELINE_SAMPLES = 2_000_000
# ... and samples x replicas (the rows of timeline_replicas.csv): ~100 bytes each in memory.
MAX_TIMELINE_CELLS = 50_000_000
# Diurnal mixes with weight_by_hour draw each arrival's class from a row of class weights (arrivals x classes
# floats, a few copies): 5e7 cells is ~0.4 GB each.
MAX_HOURLY_MIX_CELLS = 50_000_000
# Autoscaler decisions per deployment ((horizon + max drain) / interval_s): each reads every replica.
MAX_AUTOSCALER_TICKS = 2_000_000
# MMPP state switches expected over the horizon: drawn one at a time in Python (about a microsecond each).
MAX_STATE_SWITCHES = 1_000_000
# Fault events expected over the run, summed over replicas and fault kinds (failures, reclamations, the 1 s
# polls of a rolling restart's drain): each interrupts an engine and walks its requests.
MAX_FAULT_EVENTS = 1_000_000
# Training: checkpoint segments and failures simulated for one job, over its replications and the interval
# scan (five intervals besides the chosen one), each a SimPy event.
MAX_TRAINING_EVENTS = 10_000_000

# ---- agent workloads ----
MAX_LOOP_ITERATIONS = 10_000  # a ReAct loop of 10k iterations is far beyond any agent; caps of 2**63 hang a task
MAX_RETRY_ATTEMPTS = 100  # and backoff x factor^(attempt - 1) stays finite (10^99 x MAX_NUMBER < 1.8e308)
MAX_BACKOFF_FACTOR = 10.0  # exponential backoff multiplies by 2 in gRPC/Envoy defaults; 10 is already steep
MAX_FAN_OUT = 1_000  # parallel copies of one step (each a SimPy process); fan-out distributions must stay below
# One task, worst case (every loop at its cap, every retry using every attempt, every fan-out at its largest):
# the shipped agents reach ~1,000 (50 iterations x 3 attempts x a few steps); past 100,000 a single task (or its
# concurrent branches, a SimPy process each) would stall the run, whatever its probabilities say.
MAX_STEPS_PER_TASK = 100_000

# ---- traffic shapes ----
# Gamma inter-arrival cv: a cv of c bunches about c^2 arrivals into one instant (shape 1/c^2), so 1e6 asks for
# 1e12 arrivals at once. Measured traces show cv of 1-10 (BurstGPT, Azure); 100 leaves room for what-ifs.
# Below 0.01 the process is constant arrivals (use process: constant); 1/cv^2 must not overflow.
MIN_ARRIVAL_CV = 0.01
MAX_ARRIVAL_CV = 100.0
# Weibull inter-arrival shape k: cv is ~70 at k = 0.14 and ~0.013 at k = 100 (the gamma cv range above, about);
# fits of production LLM traffic report k of 0.3-1 (bursty) per window.
MIN_WEIBULL_SHAPE = 0.14
MAX_WEIBULL_SHAPE = 100.0
# A rate schedule's windows: a week in 1 s windows is ~600,000; the fit writes a few hundred to a few thousand.
MAX_SCHEDULE_WINDOWS = 1_000_000
# Lognormal shape: token and latency fits have sigma 0.3-2; exp(sigma^2 / 2) (the mean) overflows past ~37.
MAX_LOGNORMAL_SIGMA = 10.0
# Diurnal hourly / weekday multipliers, like flash events: a 1000x swing within a day is already extreme.
MAX_RATE_MULTIPLIER = 1000.0
# A simulated day shorter than a second cannot be meant (hours of the day would be microseconds long).
MIN_PERIOD_S = 1.0
# Session ids pack the class index above bit 40 and prefix keys above bit 20 (sim/traffic.py): counts at or
# beyond 2**40 sessions / 2**20 prefix variants would collide between classes.
MAX_SESSIONS = 2**40 - 1
MAX_PREFIX_VARIANTS = 2**20 - 1

# ---- closed-loop clients (traffic.arrival process: closed) ----
# Clients of one closed loop: each is a SimPy process, sending first at time 0 (or over its ramp_up_s). Benchmark clients run at
# most a few thousand (vllm bench serve --max-concurrency, genai-perf --concurrency); 100,000 already covers the
# users of a large fleet modelled one by one. More is a typo (or a population an open arrival process describes).
MAX_CLOSED_LOOP_CLIENTS = 100_000
# A tenant's fair-share weight: only ratios between tenants matter; a million to one already means "never share"
# (the weight divides token costs into virtual time, so 1e-300 or 1e300 would underflow or swamp it).
MAX_TENANT_WEIGHT = 1e6
MIN_TENANT_WEIGHT = 1e-6
# A tenant's max_concurrency and max_waiting (requests): far above any fleet's batch slots (MAX_REPLICAS replicas of
# a thousand sequences each); a larger cap is "unlimited" spelled as a number: leave the field out instead.
MAX_TENANT_REQUESTS = 1000 * MAX_REPLICAS
# The shortest time between two sends of one client. A request can end at the instant it is sent (rejected at the
# door, a zero-latency cache hit): with zero think time its client would resend forever at one instant. 10 ms is
# about an HTTP benchmark client's own per-request overhead and far below any served request's time, so it binds
# only on requests that end at once. It also bounds a run's sends: concurrency x horizon / max(10 ms, mean think
# time), which resolve checks against MAX_ARRIVALS.
MIN_CLOSED_LOOP_CYCLE_S = 0.01

# ---- devices and links ----
# Any bandwidth in GB/s (or TB/s) and any compute rate in TFLOPS: below 1 MB/s a step or a transfer of a few GB
# takes days, which is a unit slip (a bandwidth written in TB/s where GB/s was asked, or the reverse).
MIN_BANDWIDTH = 1e-3

# ---- sweeps ----
# Runs one sweep file asks for (grid points or LHS samples, times replications): each is a full simulation.
MAX_SWEEP_RUNS = 100_000

# ---- dates (as_of fields) ----
MIN_YEAR = 1950
MAX_YEAR = 2100

# ---- seeds ----
# A seed flag, like a scenario's seed, is a count (MAX_INT); replications use seed .. seed + R - 1 (R <= 1000),
# which must stay within it too.
MAX_REPLICATIONS = 1000  # `run -R`, `compare -R`: each a full simulation; the t interval has long converged by then
MAX_SEED = MAX_INT - MAX_REPLICATIONS
# `calibrate serve`'s send rates (req/s, --rates and the ramp's ends): a Poisson gap is 1 / rate on average, so
# below one request in about 17 minutes a measurement would wait for hours (1e-300 req/s: forever); above 1e5 req/s
# no single endpoint is being measured.
MIN_SEND_RATE_PER_S = 1e-3
MAX_SEND_RATE_PER_S = 1e5

# ---- keyed caches (semantic cache, retrieval cache) ----
# Distinct keys of one cache's key space: the Zipf popularity table holds one float per key (10M keys: 80 MB,
# ~0.2 s to build); a production semantic cache holds 1e5-1e7 entries.
MAX_CACHE_KEYS = 10_000_000
# Zipf exponent of key popularity: web and query logs fit 0.6-1.2; at 10, key 2 is already 1000x rarer than key 1.
MAX_ZIPF_EXPONENT = 10.0
# Scheduled invalidation times of one cache (every key changes at each): like a schedule's windows.
MAX_INVALIDATION_TIMES = 1_000_000

# Sharding (simfactory/fleet): a fleet split into this many shards at most. Each shard is its own simulation (a
# process start and a resolve); a million of them would take hours before simulating anything.
MAX_SHARDS = 100_000
# Time windows of one run: each is a simulation with its own warm-up overlap; beyond this the overlaps dominate.
MAX_WINDOWS = 10_000
