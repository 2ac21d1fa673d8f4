"""PTQ scoring (Santini, sec. II.A and III): calibrate the activation ranges on a few training batches,
train nothing, score on validation."""
from __future__ import annotations

from tfmpq.evaluate.data import EvalData
from tfmpq.quantize import calibrate


def score(qat, data: EvalData, *, batch_size: int, from_logits: bool) -> float:
    """Calibrates ``qat``'s activation ranges on the calibration samples and returns its validation accuracy."""
    calibrate(qat, data.calib_x, batch_size=batch_size)
    return data.accuracy(qat, from_logits)
