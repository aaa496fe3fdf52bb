"""The data folder's claim: one worker per folder, and a group identity that survives a
restart (static membership) but not the loss of the folder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from funnelpulse.data_dir import ID_FILE, DataDirInUse, claim_data_dir


def test_the_identity_is_made_once_and_kept_across_restarts(tmp_path: Path) -> None:
    folder = tmp_path / "state"
    first = claim_data_dir(folder)  # the folder does not exist yet
    first.lock.close()  # the process exits
    again = claim_data_dir(folder)
    again.lock.close()
    assert first.group_member == again.group_member
    assert first.group_member.startswith("funnelpulse-")


def test_a_lost_folder_means_a_new_identity(tmp_path: Path) -> None:
    first = claim_data_dir(tmp_path / "a")
    other = claim_data_dir(tmp_path / "b")
    first.lock.close()
    other.lock.close()
    assert first.group_member != other.group_member


def test_a_damaged_id_file_is_replaced_not_used(tmp_path: Path) -> None:
    (tmp_path / ID_FILE).write_text("funnelpulse-12")  # cut short by a crash
    claim = claim_data_dir(tmp_path)
    claim.lock.close()
    assert claim.group_member != "funnelpulse-12"
    assert (tmp_path / ID_FILE).read_text().strip() == claim.group_member


def test_a_second_worker_on_the_folder_is_refused_naming_the_holder(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from funnelpulse.data_dir import claim_data_dir; "
         f"c = claim_data_dir({str(tmp_path)!r}); print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(DataDirInUse, match=f"pid {holder.pid}"):
            claim_data_dir(tmp_path)
    finally:
        holder.kill()
        holder.wait()
    claim_data_dir(tmp_path).lock.close()  # the lock died with its process
