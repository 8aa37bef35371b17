"""Where a command's lines go: a rich console on standard output.

rich leaves out colour and cursor movement when standard output is not a terminal, and honours
`NO_COLOR`; lines never wrap, so a long message cannot break a tree apart (a terminal cuts it).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from rich.console import Console
from rich.text import Text


def console() -> Console:
    return Console(highlight=False, soft_wrap=True, emoji=False)


def show(lines: Iterable[Text], out: Console | None = None) -> None:
    out = out or console()
    for line in lines:
        out.print(line)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
