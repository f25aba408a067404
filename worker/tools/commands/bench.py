"""`vitalwatch bench`: the worker's throughput and latency side by side with a raw consumer,
a do-nothing Faust agent and a naive per-event worker, on one pre-produced topic.

It starts its own Tansu broker and uses the Redis VITALWATCH_REDIS_URL or else REDIS_URL names
(which must answer: when it does not, the bench stops in one line before any phase), or with
neither set a throw-away redis-server; it deletes its keys from a shared Redis at the end.
Phases: the model step alone, the raw consumer, bare Faust, the worker (one process), its own
code per event at batches of 5, 50 and 512 with no broker (worker.bench.batch_cost), the worker
as --workers processes in one group, the worker with a shadow model beside the live one
(models/checkpoints/simulated-ward: the cost of VITALWATCH_SHADOW_CHECKPOINT), the worker on a
three-primary Redis Cluster and on a Redis
with a replica and MIN_REPLICAS=1 (both started by the bench: worker.bench.topologies), the
naive worker, then latency at 50 % of the measured worker throughput (or at each of
--latency-loads) and at each absolute rate of --latency-rates. It prints a table and, with
--json, writes every figure (the keys are listed in docs/performance.md), with the worker's
version, its model's and the machine's core count. It is a benchmark, not a test:
on a shared machine the ratios between contenders, not the absolute figures, are what to
compare.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from worker.bench.stack import BenchStack

PHASES = ("model", "raw", "bare", "worker", "batchcost", "scaleout", "shadow", "cluster", "replicated", "naive", "latency")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="measure throughput and latency against a raw consumer, bare Faust and a naive worker",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--events", type=_positive_int, default=200_000, help="events in the topic (default 200000)")
    parser.add_argument("--patients", type=_positive_int, default=5_000, help="simulated patients (default 5000)")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT", help="write the result as JSON to OUT")
    parser.add_argument(
        "--latency-seconds", type=float, default=60.0, help="length of the paced latency run (default 60)"
    )
    parser.add_argument(
        "--latency-loads", type=_load_fraction, nargs="+", default=[0.5], metavar="FRACTION",
        help="loads of the latency runs, as fractions of the measured worker_eps (default 0.5: the target's); "
        "each is its own run; latency_* keys hold the 0.5 run, latency_by_load every one",
    )
    parser.add_argument(
        "--latency-rates", type=_positive_rate, nargs="+", default=[], metavar="EVENTS_PER_S",
        help="absolute input rates of further latency runs, in events/s (e.g. 500 2000: the rate at which a site's "
        "p99 bound holds); each is its own run, in latency_by_rate; needs no worker phase",
    )
    parser.add_argument(
        "--naive-seconds", type=float, default=30.0,
        help="the naive worker is measured for this long after its first output (default 30)",
    )
    parser.add_argument(
        "--workers", type=_positive_int, default=2, help="worker processes in the scale-out phase (default 2)"
    )
    parser.add_argument(
        "--device", default="auto", help="torch device of the worker and the model step: auto, cpu, cuda[:N] (default auto)"
    )
    parser.add_argument(
        "--skip", nargs="+", choices=PHASES, default=[], metavar="PHASE",
        help=f"phases to leave out: {', '.join(PHASES)} (latency needs worker)",
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the contenders' logs (their directory is printed)")
    parser.set_defaults(func=run)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _positive_rate(text: str) -> float:
    value = float(text)
    if not value > 0.0:
        raise argparse.ArgumentTypeError(f"must be > 0 events/s, got {value}")
    return value


def _load_fraction(text: str) -> float:
    value = float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {value}")
    return value


_STARTED = time.monotonic()


def say(text: str) -> None:
    print(f"bench: [{time.monotonic() - _STARTED:5.0f} s] {text}", file=sys.stderr, flush=True)


async def measure(
    args: argparse.Namespace, device: str, checkpoint: Path | None, stack: "BenchStack", run_dir: Path,
) -> dict[str, Any]:
    """Every phase not skipped, in order, against one stack and one pre-produced topic."""
    from models.checkpoint import SIMULATED_WARD_CHECKPOINT
    from worker.bench.bare_faust import measure_bare_faust
    from worker.bench.batch_cost import BATCH_SIZES, batch_cost_us
    from worker.bench.model_step import model_step_rates
    from worker.bench.naive_worker import measure_naive
    from worker.bench.produce import build_workload, produce_all
    from worker.bench.provenance import run_facts
    from worker.bench.raw_consumer import raw_consumer_eps
    from worker.bench.real_worker import measure_worker
    from worker.bench.topologies import TOPOLOGIES, measure_topologies

    skip = set(args.skip)
    result: dict[str, Any] = {
        "events": args.events, "patients": args.patients, "device": device, "scaleout_workers": args.workers,
        **run_facts(checkpoint),
    }
    if "model" not in skip:
        say("model step")
        result["model_step"] = await asyncio.to_thread(model_step_rates, device)
    say(f"simulating {args.patients} patients")
    workload = await asyncio.to_thread(build_workload, args.events, args.patients)
    inputs = await asyncio.to_thread(stack.topics, "main", "main")
    say(f"producing {len(workload)} events to {stack.bootstrap}")
    await produce_all(stack.bootstrap, inputs.inputs, workload)
    topic_names = list(inputs.inputs.values())
    if "raw" not in skip:
        say("raw consumer")
        result["raw_consumer_eps"] = await raw_consumer_eps(stack.bootstrap, topic_names, args.events)
    if "bare" not in skip:
        say("bare Faust, stream delivery (take_events)")
        result["bare_faust_eps"] = await measure_bare_faust(stack, "main", args.events, delivery="stream", run_dir=run_dir)
        say("bare Faust, batch delivery")
        result["bare_faust_batch_eps"] = await measure_bare_faust(stack, "main", args.events, delivery="batch", run_dir=run_dir)
    if "worker" not in skip:
        say("worker, 1 process")
        one = await measure_worker(stack, "main", workload, workers=1, device=device, run_dir=run_dir, phase="worker")
        result.update(
            worker_eps=one.eps, peak_rss_mb=one.peak_rss_mb, redis_bytes_per_patient=one.redis_bytes_per_patient,
            worker_redis_ms=one.redis_ms_per_batch,
        )
    if "batchcost" not in skip:
        say("the worker's code per event at batches of " + ", ".join(map(str, BATCH_SIZES)) + " (no broker)")
        result["batch_cost_us"] = await asyncio.to_thread(
            batch_cost_us, workload, redis_url=stack.redis_url, prefix=f"{stack.redis_prefix('batchcost')}state:",
            device=device, checkpoint=checkpoint,
        )
    if "scaleout" not in skip and args.workers > 1:
        say(f"worker, {args.workers} processes in one group")
        many = await measure_worker(stack, "main", workload, workers=args.workers, device=device, run_dir=run_dir, phase="scaleout")
        result["scaleout_eps"] = many.eps
    if "shadow" not in skip:
        say("worker, 1 process, with a shadow model")
        shadowed = await measure_worker(
            stack, "main", workload, workers=1, device=device, run_dir=run_dir, phase="shadow",
            shadow=SIMULATED_WARD_CHECKPOINT,
        )
        result.update(
            shadow_worker_eps=shadowed.eps, shadow_peak_rss_mb=shadowed.peak_rss_mb,
            shadow_redis_ms=shadowed.redis_ms_per_batch,
        )
    topologies = [name for name in TOPOLOGIES if name not in skip]
    if topologies:
        say(f"worker, 1 process, on {' and '.join(topologies)} Redis")
        result.update(await measure_topologies(stack, workload, topologies, device=device, run_dir=run_dir))
    if "naive" not in skip:
        say(f"naive worker, {args.naive_seconds:g} s")
        result["naive_eps"] = await measure_naive(stack, "main", workload, seconds=args.naive_seconds, device=device, run_dir=run_dir)
    if "latency" not in skip and result.get("worker_eps"):
        result["latency_by_load"] = {}
        for load in args.latency_loads:
            rate = result["worker_eps"] * load
            say(f"latency at {load:.0%} load ({rate:,.0f} events/s) for {args.latency_seconds:g} s")
            result["latency_by_load"][f"{load:g}"] = await latency_figures(
                stack, workload, rate, args, device, run_dir, name=f"latency-{load:g}",
            )
        by_load = result["latency_by_load"]
        result.update(by_load.get("0.5") or by_load[f"{args.latency_loads[0]:g}"])
    if "latency" not in skip and args.latency_rates:
        result["latency_by_rate"] = {}
        for rate in args.latency_rates:
            say(f"latency at {rate:,.0f} events/s for {args.latency_seconds:g} s")
            result["latency_by_rate"][f"{rate:g}"] = await latency_figures(
                stack, workload, rate, args, device, run_dir, name=f"latency-{rate:g}eps",
            )
    return result


async def latency_figures(
    stack: "BenchStack", workload: Any, rate: float, args: argparse.Namespace, device: str,
    run_dir: Path, *, name: str,
) -> dict[str, Any]:
    """One paced latency run at ``rate`` events/s, as the result's ``latency_*`` keys."""
    from worker.bench.latency import measure_latency

    latency = await measure_latency(
        stack, workload, rate_eps=rate, seconds=args.latency_seconds, device=device, run_dir=run_dir, name=name,
    )
    return dict(
        latency_p50_ms=latency.p50_ms, latency_p99_ms=latency.p99_ms, latency_max_ms=latency.max_ms,
        latency_rate_eps=latency.rate_eps, latency_events=latency.events, latency_batch_events=latency.batch_events,
    )


def run(args: argparse.Namespace) -> int:
    """Exit code 0 with the report printed; 2 for a bad option or setting; 1 when a phase
    fails. The stack starts before any phase, so that a Redis that does not answer, no
    redis-server to start or a broker that does not come up stops the bench at once, in one
    line (worker.tools.reach.Unavailable, printed by worker.cli)."""
    from worker.bench.report import finish
    from worker.bench.stack import BenchStack
    from worker.operations.config import ConfigError, load_settings, resolve_device
    from worker.tools.console import console

    try:
        settings = load_settings(device=args.device)
        device = resolve_device(settings.device)
        stack = BenchStack.start()
    except ConfigError as exc:
        print(f"vitalwatch bench: {exc}", file=sys.stderr)
        return 2
    run_dir = Path(tempfile.mkdtemp(prefix="vitalwatch-bench-"))
    try:
        result = asyncio.run(measure(args, device, settings.checkpoint, stack, run_dir))
    except (RuntimeError, TimeoutError, ValueError) as exc:  # a contender died, a phase timed out, too few events
        print(f"vitalwatch bench: {exc}", file=sys.stderr)
        print(f"vitalwatch bench: logs kept in {run_dir}", file=sys.stderr)
        return 1
    finally:
        stack.close()
    finish(result, args.json, console())
    if args.keep_logs:
        say(f"logs in {run_dir}")
    else:
        shutil.rmtree(run_dir, ignore_errors=True)
    return 0
