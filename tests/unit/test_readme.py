"""The README is the front door: its promises are checked like code."""

from pathlib import Path

from funnelpulse.docs import CONFIGMAP, render, render_configmap

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_readme_opens_with_the_two_commands() -> None:
    first_block = README.split("```")[1]
    assert "make demo" in first_block
    assert "make test" in first_block


def test_generated_tables_are_current() -> None:
    assert render(README) == README, "README tables are stale: run python -m funnelpulse.docs"


def test_configmap_defaults_are_current() -> None:
    text = CONFIGMAP.read_text()
    assert render_configmap(text) == text, "configmap.yaml is stale: run python -m funnelpulse.docs"
