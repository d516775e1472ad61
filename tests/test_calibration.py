"""Calibration of cross-validated probabilities: chosen on held-out groups, applied as plain data."""

from __future__ import annotations

import numpy as np

from cellfeatures.benchmark.calibration import apply_calibrator, choose_calibration, fit_calibrator
from cellfeatures.benchmark.evaluate import calibration_summary

CLASSES = ["A", "B", "C"]


def overconfident(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A model right 70% of the time that says 0.98 every time: ECE about 0.28."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 3, n)
    right = rng.random(n) < 0.7
    guess = np.where(right, truth, (truth + rng.integers(1, 3, n)) % 3)
    proba = np.full((n, 3), 0.01)
    proba[np.arange(n), guess] = 0.98
    groups = np.arange(n) // 20  # 20 cells per spatial block
    return proba, np.array(CLASSES)[truth], groups


def test_an_overconfident_model_is_calibrated_and_its_held_out_ece_drops() -> None:
    proba, y, groups = overconfident(1000)
    chosen = choose_calibration(proba, y, CLASSES, groups)
    assert chosen["ece_before"] > 0.25
    assert chosen["method"] != "none"
    assert chosen["ece_after"] < 0.05
    calibrated = apply_calibrator(chosen["calibrator"], proba)
    assert np.allclose(calibrated.sum(axis=1), 1)
    # in-sample, the calibrated top probability is about the accuracy (0.7)
    assert abs(calibrated.max(axis=1).mean() - 0.7) < 0.05
    assert calibration_summary(y, calibrated, CLASSES)["ece"] < 0.05


def test_temperature_scaling_softens_an_overconfident_model_and_keeps_its_ranking() -> None:
    proba, y, _groups = overconfident(600, seed=1)
    codes = np.array([CLASSES.index(v) for v in y])
    fitted = fit_calibrator(proba, codes, "temperature")
    assert fitted["temperature"] > 1.5
    calibrated = apply_calibrator(fitted, proba)
    assert (calibrated.argmax(axis=1) == proba.argmax(axis=1)).all()


def test_a_calibrated_model_keeps_none_when_nothing_beats_it_held_out() -> None:
    rng = np.random.default_rng(2)
    n = 3000
    proba = rng.dirichlet(np.ones(3), size=n)
    truth = np.array([rng.choice(3, p=p) for p in proba])  # calibrated by construction
    chosen = choose_calibration(proba, np.array(CLASSES)[truth], CLASSES, np.arange(n) // 30)
    assert chosen["held_out"]["none"]["ece"] < 0.05
    assert chosen["ece_after"] <= chosen["ece_before"]


def test_isotonic_knots_are_plain_data_and_rows_still_sum_to_one() -> None:
    proba, y, _groups = overconfident(400, seed=3)
    codes = np.array([CLASSES.index(v) for v in y])
    fitted = fit_calibrator(proba, codes, "isotonic")
    assert all(isinstance(x, list) and isinstance(v, list) for x, v in fitted["knots"])
    assert np.allclose(apply_calibrator(fitted, proba).sum(axis=1), 1)
