"""export_models: the one export path of Result.export and `tfmpq export` (files, accuracies, record)."""
import json

import numpy as np
import pytest

from tfmpq.accuracy import model_accuracy
from tfmpq.export import evaluate_tflite
from tfmpq.export.models import export_models, member_file_name


def test_files_accuracies_and_record(train_qat, digits, tmp_path):
    (x, _), (xt, yt) = digits
    qat4, qat8 = train_qat(4), train_qat(8)
    items = [(member_file_name(0, (4, 4, 4, 4)), qat4, {"genes": [4, 4, 4, 4], "search_accuracy": np.float32(0.9)}),
             (member_file_name(1, (8, 8, 8, 8)), qat8, {"genes": [8, 8, 8, 8]})]
    rows = export_models(items, tmp_path / "out", x[:64], test=(xt[:120], yt[:120]), runtimes=("tflm", "litert"),
                         c_array="net")
    assert [r["name"] for r in rows] == ["00_4-4-4-4", "01_8-8-8-8"]
    for row, (_, qat, _) in zip(rows, items):
        path = row["report"].path
        assert path == str(tmp_path / "out" / f"{row['name']}.tflite")
        assert row["keras_accuracy"] == model_accuracy(qat, xt[:120], yt[:120])
        for runtime in ("tflm", "litert"):
            assert row["accuracy"][runtime] == evaluate_tflite(path, xt[:120], yt[:120], runtime=runtime)
    assert (tmp_path / "out" / "net_00.h").is_file() and (tmp_path / "out" / "net_01.cc").is_file()
    record = json.loads((tmp_path / "out" / "export.json").read_text())
    assert [r["genes"] for r in record] == [[4, 4, 4, 4], [8, 8, 8, 8]]
    assert record[0]["search_accuracy"] == pytest.approx(0.9)  # numpy scalars are written as numbers
    assert record[1]["report"]["path"] == rows[1]["report"].path
    assert record[0]["accuracy"] == rows[0]["accuracy"]


def test_an_unknown_runtime_is_refused_before_any_file(train_qat, digits, tmp_path):
    (x, _), _ = digits
    with pytest.raises(ValueError, match=r"Invalid value for `runtimes`: expected a subset of \('tflm', 'litert'\)"):
        export_models([("m", train_qat(8), {})], tmp_path / "out", x[:8], runtimes=("tflm", "edgetpu"))
    assert not (tmp_path / "out").exists()
