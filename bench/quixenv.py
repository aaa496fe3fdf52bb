"""Quix Streams lives in its own virtualenv (``.bench-venv``): its dependencies
(confluent-kafka, rocksdict, pydantic, ...) must not touch the project's ``.venv``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench.measure import ROOT

QUIX_REQUIREMENT = "quixstreams==3.28.1"
EXTRA = ("orjson>=3.9,<4",)
VENV = ROOT / ".bench-venv"


def ensure_quix_venv(venv: Path = VENV) -> Path:
    """Creates the virtualenv and installs Quix Streams when missing; returns its python."""
    python = venv / "bin" / "python"
    stamp = venv / f".installed-{QUIX_REQUIREMENT.replace('==', '-')}"
    if stamp.exists() and python.exists():
        return python
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", QUIX_REQUIREMENT, *EXTRA],
                   check=True)  # fmt: skip
    stamp.touch()
    return python
