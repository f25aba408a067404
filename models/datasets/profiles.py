"""The simulator's profiles by name, apart from the simulator so that the command line can offer
them without importing numpy and torch.

``ward``: adult ward patients, a quarter of whom deteriorate in one of three ways
(models.datasets.simulator), what the simulator-trained model learned from and what the tests,
the bench and the fault tests were written against. ``icu``: ICU stays that resemble PhysioNet
2019 set A, set A's share of them turning septic (models.datasets.icu_simulator), for the demo
of the model trained on set A.
"""

from __future__ import annotations

from typing import Literal

Profile = Literal["ward", "icu"]
PROFILES: tuple[Profile, ...] = ("ward", "icu")
