"""RunStore: line-atomic journal (torn tail ignored), atomic checkpoint, run-dir protection."""
import json

import pytest

from tfmpq.errors import CheckpointError
from tfmpq.search.store import RunStore, write_json_atomic


def test_journal_round_trip_and_torn_tail(tmp_path):
    store = RunStore(tmp_path)
    store.append({"genes": [2, 4], "accuracy": 0.5})
    store.append({"genes": [4, 4], "accuracy": 0.7})
    path = tmp_path / "evaluations.jsonl"
    with open(path, "a") as f:  # a kill in the middle of the third write
        f.write('{"genes": [8, 8], "accur')
    assert [r["genes"] for r in RunStore(tmp_path, resume=True).records()] == [[2, 4], [4, 4]]
    # resume cut the torn line off, so the next append starts on a fresh line
    store = RunStore(tmp_path, resume=True)
    store.append({"genes": [8, 8], "accuracy": 0.9})
    assert [r["genes"] for r in store.records()] == [[2, 4], [4, 4], [8, 8]]
    assert path.read_text().count("\n") == 3


def test_corrupt_middle_line_raises_naming_the_file(tmp_path):
    (tmp_path / "evaluations.jsonl").write_text('{"genes": [2]}\nnot json\n{"genes": [4]}\n')
    with pytest.raises(CheckpointError, match=r"evaluations.jsonl`: line 2 is not valid JSON"):
        RunStore(tmp_path, resume=True).records()


def test_existing_run_needs_resume_or_overwrite(tmp_path):
    RunStore(tmp_path).append({"genes": [2]})
    with pytest.raises(CheckpointError, match="already holds a search run .*Pass resume=True"):
        RunStore(tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    store = RunStore(tmp_path, overwrite=True)
    assert store.records() == [] and (tmp_path / "notes.txt").exists()


def test_atomic_json_leaves_no_tmp(tmp_path):
    write_json_atomic(tmp_path / "checkpoint.json", {"generation": 3})
    assert json.loads((tmp_path / "checkpoint.json").read_text()) == {"generation": 3}
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.json"]
    (tmp_path / "checkpoint.json").write_text("{truncated")
    with pytest.raises(CheckpointError, match="checkpoint.json`: it is not valid JSON"):
        RunStore(tmp_path, resume=True).load_checkpoint()


def test_in_memory_store_writes_nothing():
    store = RunStore(None)
    store.append({"genes": [1]})
    store.save_checkpoint({"x": 1})
    assert store.records() == [] and store.load_checkpoint() is None
