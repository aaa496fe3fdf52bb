"""Documentation generated from the code: the settings, the KPI definitions and the
fields of each event type (the validator's declaration, ``streams/events.py``).

``python -m funnelpulse.docs`` rewrites the blocks between ``<!-- NAME:begin -->`` and
``<!-- NAME:end -->`` in README.md, and the commented defaults at the end of
``deploy/k8s/configmap.yaml`` (every setting the file does not set, nor the Secret
holds, with its meaning and default); unit tests fail when either is out of date.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

from metrics.kpis import KPIS, Unit
from streams.events import FIELDS, SHAPES, TYPE_DOC, EventType, Field, Kind

from .settings import variables


def settings_table() -> str:
    rows = [f"| `{v.name}` | {f'`{v.default}`' if v.default else '(unset)'} | {v.doc} |"
            for v in variables()]  # fmt: skip
    return "\n".join(["| variable | default | meaning |", "|---|---|---|", *rows])


def kpi_table() -> str:
    rows = [
        f"| `{k.name}` | {k.formula} | {'ratio' if k.unit is Unit.RATIO else 'money'} "
        f"| `{k.gauge_name}` | {k.description} |"
        for k in KPIS
    ]
    header = ["| KPI | formula | unit | Prometheus gauge | meaning |", "|---|---|---|---|---|"]
    return "\n".join([*header, *rows])


def events_table() -> str:
    """One row per field: its JSON form, and per event type required / optional / —."""
    kinds = list(EventType)
    header = ["| field | JSON | " + " | ".join(f"`{k.value}`" for k in kinds) + " | meaning |",
              "|---|---|" + "---|" * len(kinds) + "---|"]  # fmt: skip
    presence = {kind: dict(SHAPES[kind]) for kind in kinds}
    rows = [f"| `type` | string | {' | '.join('optional' for _ in kinds)} | {TYPE_DOC} |"]
    for name, spec in FIELDS.items():
        marks = [_presence(presence[kind].get(name)) for kind in kinds]
        rows.append(f"| `{name}` | {_json_form(spec)} | {' | '.join(marks)} | {spec.doc} |")
    return "\n".join([*header, *rows])


def _presence(required: bool | None) -> str:
    return "—" if required is None else ("**required**" if required else "optional")


def _json_form(spec: Field) -> str:
    if spec.kind is Kind.TEXT:
        return f"string ≤ {spec.max_len}" + (f", `[{spec.chars}]`" if spec.chars else "")
    forms = {
        Kind.TS: "RFC 3339 string, or epoch number",
        Kind.AMOUNT: f"number or numeric string, {spec.low}–{spec.high:,}",
        Kind.CURRENCY: "string (ISO 4217)",
        Kind.COUNT: f"integer, {spec.low}–{spec.high:,}",
        Kind.CHOICE: " ".join(f"`{choice}`" for choice in spec.choices),
        Kind.CHANNEL: "string",
    }
    return forms[spec.kind]


def monitoring() -> str:
    """docs/MONITORING.md without its heading (the README has its own)."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "MONITORING.md").read_text()
    return text.split("\n", 1)[1].strip() if text.startswith("## ") else text.strip()


BLOCKS: dict[str, Callable[[], str]] = {
    "settings": settings_table,
    "kpis": kpi_table,
    "events": events_table,
    "monitoring": monitoring,
}


CONFIGMAP = Path(__file__).resolve().parents[1] / "deploy" / "k8s" / "configmap.yaml"
CONFIGMAP_BLOCK = (
    "  # Every other setting, with its default: uncomment to change (python -m funnelpulse.docs)."
)
SECRET_SETTINGS = frozenset({"REDIS_URL", "FUNNELPULSE_KAFKA_SASL_USERNAME",
    "FUNNELPULSE_KAFKA_SASL_PASSWORD", "FUNNELPULSE_REDIS_USERNAME",
    "FUNNELPULSE_REDIS_PASSWORD", "FUNNELPULSE_COLLECTOR_TOKEN"})  # fmt: skip


def render_configmap(text: str) -> str:
    """The ConfigMap with its generated tail: a comment and a commented default per
    setting that the hand-written part above does not mention."""
    head = text.split(CONFIGMAP_BLOCK, 1)[0].rstrip("\n")
    mentioned = set(re.findall(r"^\s*#?\s*([A-Z][A-Z0-9_]*):", head, re.M)) | SECRET_SETTINGS
    lines = [CONFIGMAP_BLOCK]
    for var in variables():
        if var.name not in mentioned:
            lines += [f"  # {var.name}: {_yaml_string(var.default)}", f"  #   {var.doc}"]
    return "\n".join([head, *lines]) + "\n"


def _yaml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


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
    CONFIGMAP.write_text(render_configmap(CONFIGMAP.read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
