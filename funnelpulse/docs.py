"""README tables generated from the code: the settings and the KPI definitions.

``python -m funnelpulse.docs`` rewrites the blocks between ``<!-- NAME:begin -->`` and
``<!-- NAME:end -->`` in README.md; a unit test fails when the README is out of date.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

from metrics.kpis import KPIS, Unit

from .settings import SETTINGS_DOC


def settings_table() -> str:
    rows = [f"| `{v.name}` | {f'`{v.default}`' if v.default else '(unset)'} | {v.doc} |"
            for v in SETTINGS_DOC]  # fmt: skip
    return "\n".join(["| variable | default | meaning |", "|---|---|---|", *rows])


def kpi_table() -> str:
    rows = [
        f"| `{k.name}` | {k.formula} | {'ratio' if k.unit is Unit.RATIO else 'money'} "
        f"| `{k.gauge_name}` | {k.description} |"
        for k in KPIS
    ]
    header = ["| KPI | formula | unit | Prometheus gauge | meaning |", "|---|---|---|---|---|"]
    return "\n".join([*header, *rows])


def monitoring() -> str:
    """docs/MONITORING.md without its heading (the README has its own)."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "MONITORING.md").read_text()
    return text.split("\n", 1)[1].strip() if text.startswith("## ") else text.strip()


BLOCKS: dict[str, Callable[[], str]] = {
    "settings": settings_table,
    "kpis": kpi_table,
    "monitoring": monitoring,
}


def render(readme: str) -> str:
    for name, make in BLOCKS.items():
        pattern = re.compile(rf"(<!-- {name}:begin -->\n).*?(<!-- {name}:end -->)", re.S)
        if not pattern.search(readme):
            raise ValueError(f"README has no <!-- {name}:begin/end --> block")
        readme = _fill(pattern, make(), readme)
    return readme


def _fill(pattern: re.Pattern[str], text: str, readme: str) -> str:
    return pattern.sub(lambda m: m.group(1) + text + "\n" + m.group(2), readme)


def main() -> int:
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "README.md")
    path.write_text(render(path.read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
