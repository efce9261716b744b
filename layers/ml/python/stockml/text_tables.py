"""Plain-text tables for the command line: one cell format and one column alignment for every
report `stockpred evaluate` and `stockpred evaluate-universe` print."""

from __future__ import annotations

from typing import Any


def cell(value: Any, style: str) -> str:
    """A number as text: "-" for None; "pct" as a percentage, "bps" as signed basis points, else a
    format spec ("+.3f", ".2f", "d"...)."""
    if value is None:
        return "-"
    if style == "pct":
        return f"{100 * value:.1f}%"
    if style == "bps":
        return f"{1e4 * value:+.1f}"
    return format(value, style)


def aligned(header: list[str], body: list[list[str]]) -> list[str]:
    """Lines of a table: the first column left-aligned, the others right-aligned, ruled above and
    below the header and below the body."""
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True)))

    rule = "-" * len(line(header))
    return [rule, line(header), rule, *(line(r) for r in body), rule]
