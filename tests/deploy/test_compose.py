"""docker-compose.yml must stay valid for users who run the product with Docker."""

import shutil
import subprocess
from pathlib import Path

import yaml

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


def test_compose_keeps_the_worker_state_on_a_named_volume() -> None:
    """The worker's tables are in RocksDB (set explicitly, not left to the default) under
    FUNNELPULSE_DATA_DIR, which is a named volume: it survives ``docker compose down`` and
    a recreated container, so a restart replays only what the volume lacks."""
    compose = shutil.which("docker-compose")
    assert compose
    rendered = subprocess.run(
        [compose, "-f", str(ROOT / "docker-compose.yml"), "config"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    config = yaml.safe_load(rendered)
    worker = config["services"]["worker"]
    env = worker["environment"]
    assert env["FUNNELPULSE_STORE"] == "rocksdb"
    mounts = {target: (source, mode) for source, target, *mode in map(volume, worker["volumes"])}
    source, mode = mounts[env["FUNNELPULSE_DATA_DIR"]]
    assert source in config["volumes"], f"{source}: not a named volume"  # nor a bind mount
    assert "ro" not in mode


def volume(entry: str | dict[str, str]) -> list[str]:
    """``source:target[:mode]`` as docker-compose 1.x renders it, or the long syntax."""
    if isinstance(entry, dict):
        return [entry["source"], entry["target"], *(["ro"] if entry.get("read_only") else [])]
    return entry.split(":")
