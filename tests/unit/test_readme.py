"""The README is the front door: its promises are checked like code."""

from pathlib import Path

from funnelpulse.settings import SETTINGS_DOC

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_readme_opens_with_the_two_commands() -> None:
    first_block = README.split("```")[1]
    assert "make demo" in first_block
    assert "make test" in first_block


def test_every_setting_is_in_the_configuration_table() -> None:
    for var in SETTINGS_DOC:
        assert f"| `{var.name}` | `{var.default}` |" in README, var.name
