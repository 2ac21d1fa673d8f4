"""export_models: several QAT models -> ``.tflite`` files, their accuracies and one ``export.json``.

The one path from "these trained models" to "these deployed files": ``Result.export`` (the members
of a search front or its best candidate) and the ``tfmpq export`` command (a run directory or a QAT
file) both call it, so a file exported from Python and one exported from the command line are the
same file with the same record.
"""
from __future__ import annotations

import os
import re
from typing import Any, Iterable, Sequence

from tfmpq._io import write_json_atomic
from tfmpq.accuracy import model_accuracy
from tfmpq.candidate import jsonable
from tfmpq.export.runtimes import evaluate_tflite
from tfmpq.export.tflite import ExportReport, export_tflite
from tfmpq.policy import bits_label

__all__ = ["export_models", "member_file_name", "RUNTIMES"]

#: The interpreters a deployed accuracy can be measured on.
RUNTIMES = ("tflm", "litert")
EXPORT_RECORD = "export.json"


def member_file_name(index: int, genes: Sequence) -> str:
    """The file stem of a search member: ``<index>_<genes>``, e.g. ``"00_4-4-8-8"``; a channel-wise
    group's bits as ``tfmpq.policy.bits_label`` writes them (``"00_8-2x16+4x16-4-8"``)."""
    return f"{index:02d}_" + "-".join(bits_label(tuple(g)) if isinstance(g, (tuple, list)) else str(int(g))
                                      for g in genes)


def _c_name(stem: str) -> str:
    name = re.sub(r"\W", "_", stem)
    return name if name and not name[0].isdigit() else f"model_{name}"


def export_models(items: Iterable[tuple[str, Any, dict]], directory: str | os.PathLike, representative_data,
                  test: tuple | None = None, runtimes: Sequence[str] = ("tflm",), c_array: bool | str = False,
                  **export_kwargs) -> list[dict]:
    """Exports each QAT model with ``export_tflite``, measures it on ``test`` and writes ``export.json``.

    Args:
        items: ``(name, qat_model, details)`` per model: the file is ``<directory>/<name>.tflite``;
            ``details`` (JSON-able: genes, search accuracy, metrics, ...) is copied into its row.
        directory: the output folder (created if missing).
        representative_data: float inputs for the converter's calibration.
        test: ``(x, y)`` held-out data: each row gets ``keras_accuracy`` (the QAT model, in
            ``tfmpq.accuracy``'s sense) and ``accuracy[runtime]`` (the file on each runtime of
            ``runtimes`` that runs it; None where TFLite Micro cannot). None measures nothing.
            Defaults to None.
        runtimes: a subset of ``("tflm", "litert")``. A runtime that cannot run the file (LiteRT and
            a LUT-packed file) is skipped. Defaults to ("tflm",).
        c_array: also write a ``.h`` / ``.cc`` pair per file: True names the array after the file,
            a string names it (suffixed ``_<i>`` when there are several files). Defaults to False.
        **export_kwargs: passed to ``export_tflite`` (``int8_io``, ``packed``).

    Returns:
        One row per item: ``{"name", "report": ExportReport, "accuracy": {runtime: float | None},
        "keras_accuracy" (with ``test``), **details}``. ``export.json`` holds the same rows with each
        report as a dict.

    Raises:
        ValueError: an unknown runtime.
        ExportError: a model that cannot be deployed as trained (from ``export_tflite``).
    """
    runtimes = tuple(runtimes)
    unknown = [r for r in runtimes if r not in RUNTIMES]
    if unknown:
        raise ValueError(f"Invalid value for `runtimes`: expected a subset of {RUNTIMES}. Received: {unknown}.")
    items = list(items)
    os.makedirs(directory, exist_ok=True)  # only once the arguments are known good
    rows = []
    for i, (name, model, details) in enumerate(items):
        path = os.path.join(os.fspath(directory), f"{name}.tflite")
        if c_array is True or c_array == "":
            c_name = _c_name(name)
        elif c_array:
            c_name = f"{c_array}_{i:02d}" if len(items) > 1 else c_array
        else:
            c_name = None
        report: ExportReport = export_tflite(model, path, representative_data, c_array=c_name, **export_kwargs)
        row = {"name": name, **(details or {}), "report": report, "accuracy": {}}
        if test is not None:
            x_test, y_test = test
            row["keras_accuracy"] = model_accuracy(model, x_test, y_test)
            for runtime in runtimes:
                if runtime not in report.runtimes:
                    if runtime == "tflm":
                        row["accuracy"][runtime] = None
                    continue  # LiteRT cannot run a LUT-packed file
                row["accuracy"][runtime] = evaluate_tflite(report.path, x_test, y_test, runtime=runtime)
        rows.append(row)
    write_json_atomic(os.path.join(os.fspath(directory), EXPORT_RECORD),
                      [jsonable({**{k: v for k, v in r.items() if k != "report"}, "report": r["report"].to_dict()})
                       for r in rows])
    return rows
