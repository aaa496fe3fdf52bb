"""``kubectl kustomize`` of a folder, for the tests that check what it renders."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml


def rendered(folder: Path) -> list[dict[str, Any]]:
    """The objects the folder's kustomization renders (the test is skipped without kubectl:
    the project does not install it)."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed: kustomize build not checked")
    result = subprocess.run(
        [kubectl, "kustomize", str(folder)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]
