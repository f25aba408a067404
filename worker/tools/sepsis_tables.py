"""The sepsis evaluation's report on the console: the rows ``models.evaluation.sepsis_report``
lays out, as rich tables (measures per operating point, paired differences, the ICU-type split
when it was run, the targets), with the cohort above and the caveat below."""

from __future__ import annotations

from typing import Any, Sequence

from rich.table import Table

from models.evaluation.sepsis_report import cohort_line, difference_rows, measure_rows, target_rows, transfer_rows
from worker.tools.console import console


def figure_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]], *, first_left: int = 1) -> Table:
    """A table whose first ``first_left`` columns name the row and the rest are right-aligned figures."""
    table = Table(title=title)
    for k, column in enumerate(columns):
        table.add_column(column, justify="left" if k < first_left else "right")
    for row in rows:
        table.add_row(*row)
    return table


def print_sepsis_report(report: dict[str, Any]) -> None:
    """Print the whole report: cohort, measures, differences, transfer, targets, caveat."""
    out = console()
    boot = report["bootstrap"]
    out.print(cohort_line(report))
    titles, rows = measure_rows(report)
    out.print(figure_table(f"Per hour, with 95 % intervals ({boot['replicates']} resamples of stays, seed {boot['seed']})", ["measure", *titles], rows))
    out.print(figure_table("Paired differences on the same resampled stays", ["comparison", "figure", "difference (95 % interval)"], difference_rows(report), first_left=2))
    if "transfer" in report:
        out.print(
            figure_table(
                "ICU-type split (utility: model and trees at medium, NEWS2 >= 5, qSOFA >= 2, SIRS >= 2)",
                ["trained -> tested", "figure", "model", "trees", "NEWS2", "qSOFA", "SIRS"], transfer_rows(report), first_left=2,
            )
        )
    out.print(figure_table("Targets", ["target", "figure (95 % interval)", "verdict"], target_rows(report)))
    out.print(f"run time {report['seconds']['run']:.0f} s (loading {report['seconds']['loading']:.0f} s)")
    out.print(f"caveat: {report['caveat']}")
