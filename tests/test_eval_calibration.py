"""Calibration (ECE, temperature scaling) and the bias audit on constructed data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fairlearn.metrics import equal_opportunity_difference, equalized_odds_difference

from tuneforge.evaluate.bias import audit
from tuneforge.evaluate.calibration import (
    calibrate,
    expected_calibration_error,
    fit_temperature,
    load_calibration,
    probabilities,
    save_calibration,
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _overconfident(n: int, seed: int) -> tuple[torch.Tensor, list[int]]:
    """3-class logits whose argmax is right ~60% of the time but scaled to ~99% confidence."""
    gen = torch.Generator().manual_seed(seed)
    targets = torch.randint(0, 3, (n,), generator=gen)
    logits = torch.randn(n, 3, generator=gen)
    right = torch.rand(n, generator=gen) < 0.6
    boost = torch.zeros(n, 3)
    boost[torch.arange(n), targets] = 2.0
    logits = logits + boost * right.unsqueeze(1)
    return logits * 8.0, targets.tolist()


def _ece_numpy(probs: np.ndarray, targets: list[int], bins: int = 10) -> float:
    conf, pred = probs.max(1), probs.argmax(1)
    correct = pred == np.array(targets)
    total = 0.0
    for lo, hi in zip(np.linspace(0, 1, bins + 1)[:-1], np.linspace(0, 1, bins + 1)[1:]):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            total += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(total)


def test_ece_matches_independent_computation():
    logits, targets = _overconfident(300, seed=1)
    probs = probabilities(logits)
    assert expected_calibration_error(probs, targets) == pytest.approx(_ece_numpy(probs.numpy(), targets))


def test_temperature_scaling_lowers_ece_on_overconfident_set(tmp_path):
    val_logits, val_targets = _overconfident(400, seed=2)
    test_logits, test_targets = _overconfident(400, seed=3)
    report = calibrate(test_logits, test_targets, ["a", "b", "c"], val_logits, val_targets)
    assert report.temperature > 2.0  # over-confident logits need softening
    assert report.ece_after < report.ece_before / 2
    assert report.nll_after < report.nll_before
    assert report.fitted_on == 400
    save_calibration(report, tmp_path)
    saved = load_calibration(tmp_path)
    assert saved["temperature"] == pytest.approx(report.temperature)
    assert saved["labels"] == ["a", "b", "c"]
    assert load_calibration(tmp_path / "none") is None


def test_fit_temperature_recovers_known_scale():
    # Logits sampled from a calibrated model, then sharpened 4x: the fitted T should undo it.
    gen = torch.Generator().manual_seed(0)
    true_logits = torch.randn(4000, 4, generator=gen) * 1.5
    targets = torch.multinomial(torch.softmax(true_logits, -1), 1, generator=gen).squeeze(1).tolist()
    assert fit_temperature(true_logits * 4.0, targets) == pytest.approx(4.0, rel=0.1)


def test_bias_audit_matches_fairlearn_and_warns():
    refs = ["yes", "no"] * 8
    groups = [{"gender": "f" if i < 8 else "m"} for i in range(16)]
    preds = [r if i < 8 else "no" for i, r in enumerate(refs)]  # group m never gets "yes"
    result = audit(groups, refs, preds, labels=["no", "yes"], threshold=0.1)
    entry = result["attributes"]["gender"]
    y_true = [int(r == "yes") for r in refs]
    y_pred = [int(p == "yes") for p in preds]
    sens = [g["gender"] for g in groups]
    assert entry["equal_opportunity_difference"] == pytest.approx(equal_opportunity_difference(y_true, y_pred, sensitive_features=sens))
    assert entry["equalized_odds_difference"] == pytest.approx(equalized_odds_difference(y_true, y_pred, sensitive_features=sens))
    assert entry["by_group"]["f"]["accuracy"] == 1.0 and entry["by_group"]["m"]["accuracy"] == 0.5
    assert entry["status"] == "warn" and result["status"] == "warn"
    fair = audit(groups, refs, list(refs), labels=["no", "yes"])
    assert fair["status"] == "pass"
    assert audit([{} for _ in refs], refs, preds, labels=["no", "yes"]) is None
