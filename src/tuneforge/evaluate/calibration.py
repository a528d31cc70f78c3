"""Confidence calibration for label tasks: ECE, reliability bins and temperature scaling.

Logits are either the label log-probabilities of a causal LM (each label scored as the answer) or a
classification head's outputs. A single temperature T is fitted on the validation split by minimizing
the NLL of softmax(logits / T) (Guo et al., 2017) and saved as calibration.json beside the run, so later
predictions apply the same T.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from tuneforge.errors import DataError

CALIBRATION_FILE = "calibration.json"


@dataclass
class Reliability:
    """Equal-width confidence bins: mean confidence, accuracy and count per bin."""

    edges: list[float]
    confidence: list[float | None]
    accuracy: list[float | None]
    count: list[int]
    ece: float


def probabilities(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    return torch.softmax(logits.double() / temperature, dim=-1)


def reliability(probs: torch.Tensor, targets: Sequence[int], n_bins: int = 10) -> Reliability:
    """ECE = sum over bins of |accuracy - confidence| weighted by the bin's share of examples."""
    conf, pred = probs.max(dim=-1)
    conf = conf.numpy()
    correct = (pred.numpy() == np.asarray(targets)).astype(float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # Right-closed bins (0, 1/n], ..., so confidence 1.0 falls in the last bin.
    which = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    ece, bin_conf, bin_acc, counts = 0.0, [], [], []
    for b in range(n_bins):
        in_bin = which == b
        n = int(in_bin.sum())
        counts.append(n)
        if n == 0:
            bin_conf.append(None)
            bin_acc.append(None)
            continue
        c, a = float(conf[in_bin].mean()), float(correct[in_bin].mean())
        bin_conf.append(c)
        bin_acc.append(a)
        ece += n / len(conf) * abs(a - c)
    return Reliability(edges.tolist(), bin_conf, bin_acc, counts, float(ece))


def expected_calibration_error(probs: torch.Tensor, targets: Sequence[int], n_bins: int = 10) -> float:
    return reliability(probs, targets, n_bins).ece


def fit_temperature(logits: torch.Tensor, targets: Sequence[int], max_iter: int = 100) -> float:
    """Temperature minimizing the validation NLL (LBFGS on log T, so T stays positive)."""
    if len(targets) == 0:
        raise DataError("cannot fit a temperature on an empty validation split")
    logits = logits.double().detach()
    target = torch.as_tensor(list(targets), dtype=torch.long)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optim = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        optim.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits / log_t.exp(), target)
        loss.backward()
        return loss

    optim.step(closure)
    return float(log_t.detach().exp().clamp(1e-3, 1e3))


@dataclass
class CalibrationReport:
    labels: list[str]
    temperature: float
    ece_before: float
    ece_after: float | None
    nll_before: float
    nll_after: float | None
    reliability_before: Reliability
    reliability_after: Reliability | None
    source: str  # "label-logprob" or "classifier-head"
    fitted_on: int  # validation examples used for the fit (0 = temperature loaded or none)
    accuracy: float  # argmax over the label scores (no generation involved)

    def to_dict(self) -> dict:
        return asdict(self)


def _nll(logits: torch.Tensor, targets: Sequence[int], temperature: float) -> float:
    target = torch.as_tensor(list(targets), dtype=torch.long)
    return float(torch.nn.functional.cross_entropy(logits.double() / temperature, target))


def calibrate(
    test_logits: torch.Tensor,
    test_targets: Sequence[int],
    labels: Sequence[str],
    val_logits: torch.Tensor | None = None,
    val_targets: Sequence[int] | None = None,
    temperature: float | None = None,
    source: str = "label-logprob",
    n_bins: int = 10,
) -> CalibrationReport:
    """ECE on test before/after a temperature (fitted on validation, or given, e.g. loaded from a run)."""
    fitted_on = 0
    if temperature is None and val_logits is not None and val_targets is not None and len(val_targets):
        temperature = fit_temperature(val_logits, val_targets)
        fitted_on = len(val_targets)
    before = reliability(probabilities(test_logits), test_targets, n_bins)
    after = reliability(probabilities(test_logits, temperature), test_targets, n_bins) if temperature else None
    return CalibrationReport(
        labels=list(labels),
        temperature=float(temperature or 1.0),
        ece_before=before.ece,
        ece_after=after.ece if after else None,
        nll_before=_nll(test_logits, test_targets, 1.0),
        nll_after=_nll(test_logits, test_targets, temperature) if temperature else None,
        reliability_before=before,
        reliability_after=after,
        source=source,
        fitted_on=fitted_on,
        accuracy=float((test_logits.argmax(-1) == torch.as_tensor(list(test_targets))).double().mean()),
    )


def save_calibration(report: CalibrationReport, directory: str | Path) -> Path:
    path = Path(directory) / CALIBRATION_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "temperature": report.temperature,
        "labels": report.labels,
        "source": report.source,
        "fitted_on": report.fitted_on,
        "ece_before": report.ece_before,
        "ece_after": report.ece_after,
    }
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return path


def load_calibration(directory: str | Path) -> dict | None:
    """The saved temperature and labels of a run, or None when the run has not been calibrated."""
    path = Path(directory) / CALIBRATION_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        float(data["temperature"])
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: not a valid calibration file ({exc})") from None
    return data
