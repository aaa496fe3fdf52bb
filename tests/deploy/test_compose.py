"""docker-compose.yml must stay valid for users who run the product with Docker."""

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_compose_file_is_valid() -> None:
    compose = shutil.which("docker-compose")
    assert compose, "docker-compose is missing: run scripts/ensure-tools.sh (make test does)"
    result = subprocess.run(
        [compose, "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_compose_wires_worker_to_kafka_and_redis() -> None:
    compose = shutil.which("docker-compose")
    assert compose
    rendered = subprocess.run(
        [compose, "-f", str(ROOT / "docker-compose.yml"), "config", "--services"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert {"kafka", "redis", "worker", "simulator", "prometheus", "grafana"} <= set(rendered)
