"""Alert levels: hysteresis, escalation, re-alert interval, NEWS2 safety net, ids."""

from __future__ import annotations

import math

import pytest
import torch

from worker.scoring.alert_policy import HIGH, LEVELS, MEDIUM, NONE, AlertPolicy, alert_id

MIN = 60.0


def _walk(policy: AlertPolicy, steps: list[tuple[float, float, int]]) -> list[str]:
    """Feed one patient's (minute, risk, news2) steps through the policy as the engine does:
    a downgrade records the cleared level and time."""
    level = torch.tensor([NONE], dtype=torch.int8)
    cleared_level = torch.tensor([NONE], dtype=torch.int8)
    cleared_ts = torch.tensor([math.nan], dtype=torch.float64)
    out = []
    for minute, risk, news2 in steps:
        t = torch.tensor([minute * MIN], dtype=torch.float64)
        new, _ = policy.decide(torch.tensor([risk]), torch.tensor([news2]), level, t, cleared_level, cleared_ts)
        down = new < level
        cleared_level = torch.where(down, level, cleared_level)
        cleared_ts = torch.where(down, t, cleared_ts)
        level = new
        out.append(LEVELS[int(new)])
    return out


def test_hysteresis_holds_a_level_until_risk_is_clearly_below() -> None:
    p = AlertPolicy(medium=0.3, high=0.6)
    risks = [0.29, 0.30, 0.25, 0.241, 0.239, 0.6, 0.52, 0.509, 0.2]
    steps = [(i * 60, r, 0) for i, r in enumerate(risks)]  # an hour apart: no re-alert suppression
    assert _walk(p, steps) == ["none", "medium", "medium", "medium", "none", "high", "high", "medium", "none"]


def test_escalation_skips_levels_and_is_never_suppressed() -> None:
    p = AlertPolicy()
    assert _walk(p, [(0, 0.1, 0), (1, 0.9, 0)]) == ["none", "high"]
    # medium resolved at minute 1; high within the interval is an escalation above it.
    assert _walk(p, [(0, 0.4, 0), (1, 0.1, 0), (2, 0.7, 0)]) == ["medium", "none", "high"]


def test_realert_interval_suppresses_re_raising_a_recently_resolved_level() -> None:
    p = AlertPolicy(realert_interval_s=30 * MIN)
    steps = [(0, 0.4, 0), (10, 0.1, 0), (20, 0.4, 0), (39, 0.4, 0), (40, 0.4, 0)]
    assert _walk(p, steps) == ["medium", "none", "none", "none", "medium"]


def test_realert_interval_after_de_escalation() -> None:
    p = AlertPolicy(realert_interval_s=30 * MIN)
    steps = [(0, 0.7, 0), (5, 0.4, 0), (10, 0.7, 0), (36, 0.7, 0)]
    assert _walk(p, steps) == ["high", "medium", "medium", "high"]


def test_news2_emergency_forces_high_even_when_suppressed_or_low_risk() -> None:
    p = AlertPolicy()
    assert _walk(p, [(0, 0.01, 6), (1, 0.01, 7)]) == ["none", "high"]
    assert _walk(p, [(0, 0.7, 0), (1, 0.01, 0), (2, 0.01, 7)]) == ["high", "none", "high"]


def test_decide_is_vectorised_over_rows() -> None:
    p = AlertPolicy()
    n = 4
    new, by_news2 = p.decide(
        torch.tensor([0.1, 0.35, 0.65, 0.5]),
        torch.tensor([0, 0, 0, 0]),
        torch.tensor([NONE, NONE, MEDIUM, HIGH], dtype=torch.int8),
        torch.zeros(n, dtype=torch.float64),
        torch.zeros(n, dtype=torch.int8),
        torch.full((n,), math.nan, dtype=torch.float64),
    )
    assert new.dtype == torch.int8
    assert new.tolist() == [NONE, MEDIUM, HIGH, MEDIUM]
    assert not by_news2.any()


def test_the_safety_net_says_when_it_set_the_level() -> None:
    """NEWS2 >= 7 forces high; the policy says so where the model's risk alone gave less (the
    alert then gives the NEWS2 parameters as its reasons), and not where the model was high anyway."""
    p = AlertPolicy()
    n = 3
    new, by_news2 = p.decide(
        torch.tensor([0.01, 0.4, 0.9]),
        torch.tensor([8, 7, 9]),
        torch.tensor([NONE, NONE, NONE], dtype=torch.int8),
        torch.zeros(n, dtype=torch.float64),
        torch.zeros(n, dtype=torch.int8),
        torch.full((n,), math.nan, dtype=torch.float64),
    )
    assert new.tolist() == [HIGH, HIGH, HIGH]
    assert by_news2.tolist() == [True, True, False]


def test_thresholds_come_from_the_manifest() -> None:
    assert AlertPolicy.from_manifest({}) == AlertPolicy(medium=0.3, high=0.6)
    p = AlertPolicy.from_manifest({"alert_thresholds": {"medium": 0.2, "high": 0.5}}, realert_interval_s=60)
    assert (p.medium, p.high, p.realert_interval_s) == (0.2, 0.5, 60)
    with pytest.raises(ValueError, match="medium < high"):
        AlertPolicy(medium=0.7, high=0.6)


def test_alert_ids_are_deterministic_and_distinct() -> None:
    a = alert_id("p1", "e1", "none", "high")
    assert a == alert_id("p1", "e1", "none", "high")
    assert len(a) == 32 and int(a, 16) >= 0
    assert len({a, alert_id("p2", "e1", "none", "high"), alert_id("p1", "e2", "none", "high"), alert_id("p1", "e1", "medium", "high")}) == 4
