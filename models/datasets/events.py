"""The unit every feed is made of: one message as an interface engine would publish it.

The simulator, the PhysioNet PSV loader and the CLIF adapter produce these; `vitalwatch
simulate` and `vitalwatch replay` publish them (worker.tools.feed), the tests and the bench
send them. Kept apart from the simulator so that a loader of real data needs neither it nor
torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Literal, Sequence

from models.datasets.encounters import rfc3339, time_field

Topic = Literal["vitals", "labs", "encounters", "outcomes"]

#: Order among a stay's events at one instant (see SimEvent.feed_rank).
_FEED_RANK = {"admission": 0, "transfer": 1, "discharge": 3}
_OBSERVATION_RANK = 2


@dataclass(frozen=True, slots=True)
class SimEvent:
    """One message as a producer would publish it: topic, JSON payload, and its time
    (``observed_ts``: when it was observed, or when an encounter or an outcome happened)."""

    topic: Topic
    payload: dict[str, Any]
    observed_ts: float

    @property
    def feed_rank(self) -> int:
        """Order among a stay's events at one instant: its admission first, then a transfer,
        the observations (made in the new unit), and a discharge last."""
        if self.topic != "encounters":
            return _OBSERVATION_RANK
        return _FEED_RANK.get(self.payload.get("kind"), _OBSERVATION_RANK)

    def restamped(self, ts: float) -> "SimEvent":
        """The same event moved to ``ts`` (whole seconds), its payload's time field with it."""
        return SimEvent(self.topic, {**self.payload, time_field(self.payload): rfc3339(ts)}, ts)


def side_by_side(stays: Iterable[tuple[str, Sequence[SimEvent]]]) -> list[SimEvent]:
    """The events of several stays (stay id, its events in feed order) in one time order, each
    stay moved so that its first observation falls at the earliest first observation among
    them; stays without an observation are left out.

    Real stays cannot be compared by calendar (MIMIC shifts every patient's dates by its own
    offset; PSV files count hours from ICU admission), so a replay runs them side by side.
    Within a stay every gap is kept, the admission's distance before the first observation too:
    the model reads real intervals. Ties: by stay id, then SimEvent.feed_rank, then topic.
    """
    stays = [(stay_id, events, _first_observation(events)) for stay_id, events in stays]
    stays = [(stay_id, events, first) for stay_id, events, first in stays if first is not None]
    if not stays:
        return []
    origin = min(first for _, _, first in stays)
    moved: list[tuple[tuple[float, str, int, str], SimEvent]] = []
    for stay_id, events, first in stays:
        for event in events:
            event = event.restamped(event.observed_ts + origin - first)
            moved.append(((event.observed_ts, stay_id, event.feed_rank, event.topic), event))
    moved.sort(key=lambda keyed: keyed[0])
    return [event for _, event in moved]


def _first_observation(events: Sequence[SimEvent]) -> float | None:
    return next((e.observed_ts for e in events if e.topic in ("vitals", "labs")), None)
