"""funnelpulse: real-time marketing KPIs from Kafka event streams.

The version comes from the installed package's metadata, so ``pyproject.toml`` is its only
spelling; the trap is a source tree run without being installed (no metadata), which
reports ``0+unknown`` instead of a number that could be stale.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("funnelpulse")
except PackageNotFoundError:  # imported from a checkout that was never pip-installed
    __version__ = "0+unknown"
