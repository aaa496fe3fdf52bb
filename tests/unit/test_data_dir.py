"""The data folder's claim: one worker per folder, and a group identity that survives a
restart (static membership) but not the loss of the folder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from funnelpulse.data_dir import ID_FILE, DataDirInUse, claim_data_dir

URL = "http://10.0.0.7:6066"


def test_the_identity_is_made_once_and_kept_across_restarts(tmp_path: Path) -> None:
    folder = tmp_path / "state"
    first = claim_data_dir(folder, URL)  # the folder does not exist yet
    first.lock.close()  # the process exits
    again = claim_data_dir(folder, URL)
    again.lock.close()
    assert first.group_member == again.group_member
    assert first.group_member.startswith("funnelpulse-")


def test_another_address_is_another_member(tmp_path: Path) -> None:
    """The group hands a returning static member the assignment made for its previous
    process, with that process's URL in it (Faust asserts it is its own)."""
    here = claim_data_dir(tmp_path, URL)
    here.lock.close()
    there = claim_data_dir(tmp_path, "http://10.0.0.7:6067")
    there.lock.close()
    assert here.group_member != there.group_member


def test_a_lost_folder_means_a_new_identity(tmp_path: Path) -> None:
    first = claim_data_dir(tmp_path / "a", URL)
    other = claim_data_dir(tmp_path / "b", URL)
    first.lock.close()
    other.lock.close()
    assert first.group_member != other.group_member


def test_a_damaged_id_file_is_replaced_not_used(tmp_path: Path) -> None:
    (tmp_path / ID_FILE).write_text("funnelpulse-12")  # cut short by a crash
    claim = claim_data_dir(tmp_path, URL)
    claim.lock.close()
    assert not claim.group_member.startswith("funnelpulse-12-")
    assert claim.group_member.startswith((tmp_path / ID_FILE).read_text().strip() + "-")


def test_a_second_worker_on_the_folder_is_refused_naming_the_holder(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from funnelpulse.data_dir import claim_data_dir; "
         f"c = claim_data_dir({str(tmp_path)!r}, {URL!r}); "
         "print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(DataDirInUse, match=f"pid {holder.pid}"):
            claim_data_dir(tmp_path, URL)
    finally:
        holder.kill()
        holder.wait()
    claim_data_dir(tmp_path, URL).lock.close()  # the lock died with its process
