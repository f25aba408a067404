"""The bench's result: derived ratios, the issue's targets, a table for people, JSON for CI.

Absolute numbers on a shared machine are noisy; the ratios between contenders measured in one
run on one machine are what the targets are stated in.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from rich.console import Console
from rich.table import Table


@dataclass(frozen=True)
class Target:
    name: str
    text: str
    measured: Callable[[dict[str, Any]], float | None]
    met: Callable[[float], bool]


def _ratio(result: dict[str, Any], top: str, bottom: str) -> float | None:
    a, b = result.get(top), result.get(bottom)
    return a / b if a and b else None


def _latency_at(result: dict[str, Any], runs: str, run: str, figure: str) -> float | None:
    """One figure of one of the extra latency runs (``latency_by_load`` or ``_by_rate``), if it ran."""
    return ((result.get(runs) or {}).get(run) or {}).get(figure)


def add_ratios(result: dict[str, Any]) -> dict[str, Any]:
    """The result with ``ratios`` (contender over contender) and ``scaleout_ratio`` filled in."""
    ratios = {
        "worker_vs_bare_faust": _ratio(result, "worker_eps", "bare_faust_eps"),
        # The worker consumes through batch delivery now, so this is its ceiling within Faust.
        "worker_vs_bare_faust_batch": _ratio(result, "worker_eps", "bare_faust_batch_eps"),
        "worker_vs_naive": _ratio(result, "worker_eps", "naive_eps"),
        "bare_faust_vs_raw_consumer": _ratio(result, "bare_faust_eps", "raw_consumer_eps"),
        "bare_faust_batch_vs_stream": _ratio(result, "bare_faust_batch_eps", "bare_faust_eps"),
        # The same worker with its state on a three-primary cluster, or WAITing for a replica.
        "cluster_vs_single_redis": _ratio(result, "cluster_worker_eps", "worker_eps"),
        "replicated_vs_single_redis": _ratio(result, "replicated_worker_eps", "worker_eps"),
        # The same worker scoring every event with a second model beside the live one.
        "shadow_vs_worker": _ratio(result, "shadow_worker_eps", "worker_eps"),
    }
    return {**result, "ratios": ratios, "scaleout_ratio": _ratio(result, "scaleout_eps", "worker_eps")}


TARGETS: tuple[Target, ...] = (
    Target("worker_vs_bare_faust", "worker_eps / bare_faust_eps >= 0.9",
           lambda r: r["ratios"]["worker_vs_bare_faust"], lambda v: v >= 0.9),
    # Against the ceiling batch delivery raised Faust to: what the worker itself costs per
    # message beside Faust's own bookkeeping (issue 16 states 0.3; it measured 0.14).
    Target("worker_vs_bare_faust_batch", "worker_eps / bare_faust_batch_eps >= 0.3",
           lambda r: r["ratios"]["worker_vs_bare_faust_batch"], lambda v: v >= 0.3),
    # Two processes on this 2-core machine: the share of a second core the worker can use.
    Target("scaleout_ratio", "scale-out ratio with 2 processes >= 1.6",
           lambda r: r.get("scaleout_ratio") if r.get("scaleout_workers") == 2 else None, lambda v: v >= 1.6),
    Target("worker_vs_naive", "worker_eps / naive_eps >= 8", lambda r: r["ratios"]["worker_vs_naive"], lambda v: v >= 8),
    Target("latency_p99_ms", "p99 latency at 50 % load <= 100 ms", lambda r: r.get("latency_p99_ms"), lambda v: v <= 100),
    Target("latency_p99_at_25pct_ms", "p99 latency at 25 % load <= 50 ms",
           lambda r: _latency_at(r, "latency_by_load", "0.25", "latency_p99_ms"), lambda v: v <= 50),
    # A p99 that holds while the slowest event waits far longer is a worker that stalls now and then.
    Target("latency_max_vs_p99", "max latency <= 3 x p99 at 50 % load",
           lambda r: _ratio(r, "latency_max_ms", "latency_p99_ms"), lambda v: v <= 3),
    # A 1,000-bed hospital's vitals and labs, with room to spare.
    Target("latency_p99_at_500eps_ms", "p99 latency at 500 events/s <= 30 ms",
           lambda r: _latency_at(r, "latency_by_rate", "500", "latency_p99_ms"), lambda v: v <= 30),
    Target("redis_bytes_per_patient", "Redis state <= 2 KB per patient",
           lambda r: r.get("redis_bytes_per_patient"), lambda v: v <= 2048),
)


def targets(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each target: its statement, the measured value and whether it is met (None: not measured)."""
    out = {}
    for target in TARGETS:
        value = target.measured(result)
        out[target.name] = {"target": target.text, "measured": value, "met": None if value is None else target.met(value)}
    return out


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "skipped"
    if isinstance(value, float):
        text = f"{value:,.0f}" if value >= 100 else f"{value:.2f}"
        return f"{text}{unit}"
    return f"{value}{unit}"


def _latency(figures: dict[str, Any]) -> str:
    batch = figures.get("latency_batch_events")
    return (
        " / ".join(_fmt(figures.get(k)) for k in ("latency_p50_ms", "latency_p99_ms", "latency_max_ms")) + " ms"
        + ("" if batch is None else f", {batch:,.0f} ev/batch")
    )


def _batch_cost(cost: dict[str, float] | None) -> tuple[str, str]:
    """The batch-cost row: µs per event at each batch size, or skipped."""
    if not cost:
        return "worker's code per event by batch size (no broker)", "skipped"
    return (
        f"worker's code per event at batch {' / '.join(cost)} (no broker)",
        " / ".join(_fmt(v) for v in cost.values()) + " µs",
    )


def table(result: dict[str, Any]) -> Table:
    t = Table(title=(
        f"vitalwatch bench — {result['events']:,} events, {result['patients']:,} patients, device {result['device']}, "
        f"{result.get('cpu_count')} cores; worker {result.get('worker_version') or result.get('package_version')}, "
        f"model {result.get('model_version')}"
    ))
    t.add_column("measure")
    t.add_column("value", justify="right")
    rows = [
        ("raw consumer (aiokafka getmany + JSON)", _fmt(result.get("raw_consumer_eps"), " ev/s")),
        ("bare Faust, stream delivery (take_events)", _fmt(result.get("bare_faust_eps"), " ev/s")),
        ("bare Faust, batch delivery", _fmt(result.get("bare_faust_batch_eps"), " ev/s")),
        ("worker", _fmt(result.get("worker_eps"), " ev/s")),
        (f"worker × {result.get('scaleout_workers')} processes", _fmt(result.get("scaleout_eps"), " ev/s")),
        ("worker with a shadow model", _fmt(result.get("shadow_worker_eps"), " ev/s")),
        ("worker, Redis Cluster of 3 primaries", _fmt(result.get("cluster_worker_eps"), " ev/s")),
        ("worker, Redis + 1 replica, MIN_REPLICAS=1", _fmt(result.get("replicated_worker_eps"), " ev/s")),
        ("Redis time per batch: single / cluster / replicated / with a shadow",
         " / ".join(_fmt(result.get(k)) for k in ("worker_redis_ms", "cluster_redis_ms", "replicated_redis_ms", "shadow_redis_ms"))
         + " ms"),
        _batch_cost(result.get("batch_cost_us")),
        ("naive worker", _fmt(result.get("naive_eps"), " ev/s")),
        ("latency p50 / p99 / max", _latency(result)),
        *(  # the other loads of --latency-loads (the run above is the target's)
            (f"latency at {float(load):.0%} load ({figures['latency_rate_eps']:,.0f} ev/s) p50 / p99 / max",
             _latency(figures))
            for load, figures in (result.get("latency_by_load") or {}).items()
            if figures["latency_rate_eps"] != result.get("latency_rate_eps")
        ),
        *(  # --latency-rates: absolute input rates
            (f"latency at {figures['latency_rate_eps']:,.0f} ev/s p50 / p99 / max", _latency(figures))
            for figures in (result.get("latency_by_rate") or {}).values()
        ),
        ("worker peak RSS: alone / with a shadow",
         " / ".join(_fmt(result.get(k)) for k in ("peak_rss_mb", "shadow_peak_rss_mb")) + " MiB"),
        ("Redis bytes per patient", _fmt(result.get("redis_bytes_per_patient"), " B")),
    ]
    rows += [(f"model step, batch {b}", _fmt(v, " patient-steps/s")) for b, v in (result.get("model_step") or {}).items()]
    rows += [(f"ratio {name}", _fmt(value)) for name, value in result["ratios"].items()]
    rows.append(("scale-out ratio", _fmt(result.get("scaleout_ratio"))))
    for row in rows:
        t.add_row(*row)
    for name, target in result["targets"].items():
        verdict = {True: "[green]met[/]", False: "[red]not met[/]", None: "not measured"}[target["met"]]
        t.add_row(f"target: {target['target']}", f"{_fmt(target['measured'])} {verdict}")
    return t


def finish(result: dict[str, Any], json_path: Path | None, console: Console) -> dict[str, Any]:
    """Add ratios and targets, print the table, write the JSON; returns the full result."""
    full = add_ratios(result)
    full["targets"] = targets(full)
    console.print(table(full))
    if json_path is not None:
        json_path.write_text(json.dumps(full, indent=2, sort_keys=True) + "\n")
    return full
