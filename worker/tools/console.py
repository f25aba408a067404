"""The rich console through which every command prints its tables.

On a terminal rich fits a table to the window, as it should. Written to a file or a pipe (a CI
log, `vitalwatch evaluate > report.txt`), rich falls back to 80 columns and wraps each wider
row over several lines, so the columns no longer line up and a script cannot read a row. There
is no window to fit there, so the console is made wide enough for any row the tools print —
unless COLUMNS is set, which rich honours and so do we: that width is the user's choice.
"""

from __future__ import annotations

import os

from rich.console import Console

#: Width of a console that writes to a file or a pipe: wider than any table the tools print,
#: so no row wraps. Rows are as wide as their content, never padded to this width.
FILE_WIDTH = 1000


def console() -> Console:
    """A console on stdout: the terminal's width on a terminal, COLUMNS when set, else FILE_WIDTH."""
    out = Console()
    if not out.is_terminal and not os.environ.get("COLUMNS", "").isdigit():
        out.width = FILE_WIDTH
    return out
