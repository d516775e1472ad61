"""Evaluator against hand-computed metrics; no preprocessing leak; tamper-proof models; reproducible boards."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from cellfeatures.benchmark.evaluate import Evaluator
from cellfeatures.benchmark.fits import FIT_SUFFIX
from cellfeatures.benchmark.models import load_model, make_model
from cellfeatures.benchmark.run import run_baselines, save_model
from cellfeatures.datasets.build import build_dataset
from cellfeatures.datasets.layout import fit_cache_dir
from cellfeatures.datasets.spec import DatasetSpec
from cellfeatures.datasets.splits import SplitSpec
from cellfeatures.errors import ModelIntegrityError
from tests.conftest import copy_sample_features


def test_evaluator_matches_hand_computed_metrics() -> None:
    ev = Evaluator(classes=["a", "b", "c"])
    y_true = ["a", "a", "a", "b", "b", "c"]
    y_pred = ["a", "a", "b", "b", None, "c"]  # None: no prediction, always wrong
    m = ev.eval(y_true, y_pred)
    assert m["accuracy"] == pytest.approx(4 / 6)
    # recalls: a 2/3, b 1/2, c 1/1 -> balanced accuracy is their mean
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    # precisions: a 2/2, b 1/2, c 1/1; F1 a = 0.8, b = 0.5, c = 1
    assert m["per_class"]["a"]["f1"] == pytest.approx(0.8) and m["per_class"]["b"]["precision"] == 0.5
    assert m["macro_f1"] == pytest.approx((0.8 + 0.5 + 1.0) / 3)
    assert m["confusion"] == [[2, 1, 0], [0, 1, 0], [0, 0, 1]], "the unlabelled prediction is in no column"
    proba = np.array([[0.8, 0.1, 0.1]] * 3 + [[0.1, 0.8, 0.1]] * 2 + [[0.1, 0.1, 0.8]])
    with_proba = ev.eval(y_true, y_pred, proba)
    expected = -(3 * math.log(0.8) + 2 * math.log(0.8) + math.log(0.8)) / 6
    assert with_proba["log_loss"] == pytest.approx(expected)
    assert with_proba["calibration"]["mean_confidence"] == pytest.approx(0.8)


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_evaluator_gives_scikit_learns_numbers_on_random_predictions() -> None:
    """The numpy evaluator is the same function as scikit-learn's metrics, including missing predictions,
    predictions outside the classes, classes absent from y_true, and log-loss."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score
    from sklearn.metrics import log_loss as sk_log_loss

    classes = ["a", "b", "c", "d", "e"]
    ev = Evaluator(classes=classes)
    rng = np.random.default_rng(7)
    for trial in range(20):
        n = int(rng.integers(5, 200))
        y_true = rng.choice(classes[:4], size=n).astype(object)  # "e" never true: absent from y_true
        y_pred = rng.choice([*classes, "zz", None], size=n).astype(object)
        proba = rng.dirichlet(np.ones(len(classes)), size=n)
        proba[0, :] = [1, 0, 0, 0, 0]  # a certain prediction: clipped, not infinite
        m = ev.eval(y_true, y_pred, proba)
        sk_pred = np.array(["<none>" if p is None else p for p in y_pred], dtype=object)
        present = sorted(set(y_true))
        assert m["accuracy"] == pytest.approx(accuracy_score(y_true, sk_pred), abs=1e-12), trial
        assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y_true, sk_pred), abs=1e-12)
        expected_f1 = f1_score(y_true, sk_pred, labels=present, average="macro", zero_division=0)
        assert m["macro_f1"] == pytest.approx(expected_f1, abs=1e-12)
        assert m["confusion"] == confusion_matrix(y_true, sk_pred, labels=classes).tolist()
        clipped = np.clip(proba, 1e-15, 1)
        clipped /= clipped.sum(axis=1, keepdims=True)
        assert m["log_loss"] == pytest.approx(sk_log_loss(y_true, clipped, labels=classes), abs=1e-12)


def test_evaluator_refuses_a_true_label_outside_its_classes() -> None:
    with pytest.raises(Exception, match="not among the evaluator's classes"):
        Evaluator(classes=["a", "b"]).eval(["a", "x"], ["a", "b"])


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory, sample_project: Path):
    root = tmp_path_factory.mktemp("bl")
    store = copy_sample_features(sample_project, root / "features")
    spec = DatasetSpec(
        "types",
        origins=("real", "derived"),
        exclude=("pos_*", "qc_*"),
        split=SplitSpec("spatial", folds=3, seed=0, block_um=50, buffer_um=15),
    )
    return store, build_dataset(store, spec, root / "datasets"), root


def test_preprocessing_is_fitted_on_the_training_fold_only(dataset) -> None:
    """Imputer and scaler statistics equal those of the training fold, not those of all cells."""
    _store, ds, _root = dataset
    x_train, y_train, _ = ds.xy(0, "train")
    x_all, _y, _ = ds.xy()
    model = make_model("logistic_regression", ds.features, seed=0).fit(x_train, y_train)
    medians = np.nanmedian(x_train, axis=0)
    imputed = np.where(np.isnan(x_train), medians, x_train)
    np.testing.assert_allclose(model.named_steps["impute"].statistics_, medians)
    np.testing.assert_allclose(model.named_steps["scale"].mean_, imputed.mean(axis=0))
    all_imputed = np.where(np.isnan(x_all), np.nanmedian(x_all, axis=0), x_all)
    assert not np.allclose(model.named_steps["scale"].mean_, all_imputed.mean(axis=0)), (
        "fitted on all cells, the scaler would have other statistics: the test cells would leak"
    )


def test_a_tampered_or_foreign_model_file_is_refused(dataset, tmp_path: Path) -> None:
    _store, ds, root = dataset
    x, y, names = ds.xy()
    path = save_model(make_model("logistic_regression", ds.features, 0).fit(x, y), tmp_path / "m.joblib", ds, names, {})
    assert load_model(path, ds).predict(x[:3]).shape == (3,)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError, match="SHA-256 does not match"):
        load_model(path, ds)
    other = build_dataset(_store, DatasetSpec("other", level="class", origins=("real",)), root / "datasets")
    path2 = save_model(make_model("majority", ds.features, 0).fit(x, y), tmp_path / "n.joblib", ds, names, {})
    with pytest.raises(ModelIntegrityError, match="trained on dataset"):
        load_model(path2, other)


def test_the_leaderboard_is_identical_for_the_same_seed(dataset) -> None:
    store, ds, root = dataset
    kwargs = {
        "seeds": (0,),
        "models": ("majority", "depth_only", "hist_gradient_boosting"),
        "existing": ("early_model",),
        "root": root / "datasets",
    }
    first = run_baselines(store, ds, **kwargs).frame()
    shutil.rmtree(fit_cache_dir(ds.path))  # refit, not read back: determinism is what is tested
    second = run_baselines(store, ds, **kwargs).frame()
    assert first.equals(second)
    rows = {r["entry"]: r for r in first.iter_rows(named=True)}
    assert rows["table:soma_nuc_model_83_1_v117"]["kind"] == "existing"
    assert 0.85 < rows["table:soma_nuc_model_83_1_v117"]["coverage"] < 0.95
    assert (
        rows["hist_gradient_boosting"]["accuracy_mean"]
        > rows["depth_only"]["accuracy_mean"]
        > rows["majority"]["accuracy_mean"]
    )


def test_seeds_redraw_the_split_and_report_spread_and_interval(dataset) -> None:
    store, ds, root = dataset
    board = run_baselines(store, ds, seeds=(0, 1), models=("logistic_regression",), existing=(), root=root / "datasets")
    entry = board.entries[0]
    assert [m["seed"] for m in entry.per_seed] == [0, 1] and len(entry.per_fold) == 6
    s = entry.summary("accuracy")
    assert s["mean"] == pytest.approx(np.mean([m["accuracy"] for m in entry.per_seed]))
    fold_values = [m["accuracy"] for m in entry.per_fold]
    assert s["fold_std"] == pytest.approx(np.std(fold_values, ddof=1)) and s["fold_std"] > 0
    assert s["ci_low"] <= s["mean"] <= s["ci_high"] and s["ci_low"] < s["ci_high"]
    assert entry.predictions["seed"].unique().sort().to_list() == [0, 1], "every seed's predictions are kept"
    from cellfeatures.datasets.dataset import find_dataset

    assert find_dataset("types", root / "datasets").id == ds.id, "asking by name never returns a seed sibling"
    assert find_dataset("types.seed1", root / "datasets").card["spec"]["split"]["seed"] == 1
    row = board.frame().row(0, named=True)
    for column in ("accuracy_mean", "accuracy_fold_std", "accuracy_seed_std", "accuracy_ci_low", "accuracy_ci_high"):
        assert row[column] is not None, column


def test_a_pooled_metric_recomputes_from_the_saved_predictions(dataset) -> None:
    store, ds, root = dataset
    board = run_baselines(
        store, ds, seeds=(0,), models=("hist_gradient_boosting",), existing=(), root=root / "datasets"
    )
    entry = board.entries[0]
    preds = entry.predictions
    assert preds["nucleus_id"].is_unique().all(), "one seed: every cell tested exactly once"
    assert (preds["y_true"] == preds["y_pred"]).mean() == pytest.approx(entry.per_seed[0]["accuracy"])
    proba = preds.select([c for c in preds.columns if c.startswith("p_")]).to_numpy()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)


def test_one_thread_fits_in_processes_give_the_same_numbers_as_in_process(dataset) -> None:
    from cellfeatures.benchmark.run import collect_trained, run_fits, trained_tasks

    _store, ds, _root = dataset
    tasks = trained_tasks({0: ds}, "hist_gradient_boosting", "hist_gradient_boosting")
    seen: list[int] = []
    parallel = run_fits(tasks, progress=lambda done, total, _what: seen.append(done), n_jobs=2)
    serial = run_fits(tasks, n_jobs=1)
    assert sorted(seen) == list(range(1, len(tasks) + 1))
    for key in serial:
        np.testing.assert_array_equal(parallel[key][0], serial[key][0])
        np.testing.assert_array_equal(parallel[key][1], serial[key][1])
    a = collect_trained({0: ds}, "hist_gradient_boosting", "hist_gradient_boosting", "trained", parallel)
    b = collect_trained({0: ds}, "hist_gradient_boosting", "hist_gradient_boosting", "trained", serial)
    assert a.per_seed[0]["accuracy"] == b.per_seed[0]["accuracy"]


def test_a_custom_estimator_lands_on_the_board(dataset) -> None:
    from sklearn.impute import SimpleImputer
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    store, ds, root = dataset
    mine = make_pipeline(SimpleImputer(), StandardScaler(), KNeighborsClassifier(5))
    board = run_baselines(
        store, ds, seeds=(0,), models={"knn": mine, "majority": "majority"}, existing=(), root=root / "datasets"
    )
    rows = {r["entry"]: r for r in board.frame().iter_rows(named=True)}
    assert rows["knn"]["kind"] == "custom" and rows["knn"]["accuracy_mean"] > rows["majority"]["accuracy_mean"]
    assert board.best().entry == "knn"


def test_planted_predictions_score_to_hand_computed_numbers_in_both_views(dataset) -> None:
    store, ds, root = dataset
    board = run_baselines(store, ds, seeds=(0,), models=("logistic_regression",), existing=(), root=root / "datasets")
    truth = ds.data.select("nucleus_id", pl.col(ds.label).alias("truth"))
    ids = truth["nucleus_id"].to_list()
    # right on every third cell, wrong on every third, no prediction on the rest
    pred = [
        t if i % 3 == 0 else ("4P" if t != "4P" else "23P") if i % 3 == 1 else None
        for i, t in enumerate(truth["truth"].to_list())
    ]
    planted = pl.DataFrame({"nucleus_id": ids, "pred": pred})
    entry = board.add_predictions(planted, "planted")
    tested = entry.predictions.join(truth, on="nucleus_id")
    covered = tested.filter(pl.col("y_pred") != "<none>")
    assert entry.per_seed[0]["accuracy"] == pytest.approx((tested["y_pred"] == tested["truth"]).mean())
    assert entry.coverage == pytest.approx(covered.height / tested.height)
    assert entry.covered["accuracy"] == pytest.approx(0.5, abs=0.02)
    ours = board.entries[0].predictions.join(covered.select("nucleus_id"), on="nucleus_id")
    assert entry.covered["model_accuracy"] == pytest.approx((ours["y_pred"] == ours["y_true"]).mean())
    assert entry.covered["paired_n"] == covered.height and entry.covered["p_value"] < 1e-6


def test_an_interrupted_baseline_stage_resumes_from_its_finished_fits(dataset, tmp_path: Path) -> None:
    """Ctrl-C after two fits keeps those two; the rerun fits only the rest and gives the same results."""
    from cellfeatures.benchmark.run import run_fits, trained_tasks

    _store, ds, _root = dataset
    tasks = trained_tasks({0: ds}, "logistic_regression", "logistic_regression")
    cache = tmp_path / "fits"

    def stop_after_two(done: int, _total: int, _what: str) -> None:
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_fits(tasks, progress=stop_after_two, n_jobs=1, cache_dir=cache)
    assert len(list(cache.glob(f"*{FIT_SUFFIX}"))) == 2
    seen: list[tuple[int, str]] = []
    resumed = run_fits(tasks, progress=lambda d, _t, what: seen.append((d, what)), n_jobs=1, cache_dir=cache)
    assert seen[0] == (2, "2 fits found in the cache (resumed)")
    assert len(seen) == 1 + len(tasks) - 2, "only the unfinished fits ran"
    fresh = run_fits(tasks, n_jobs=1)
    for key, (pred, proba, _model) in fresh.items():
        np.testing.assert_array_equal(resumed[key][0], pred)
        np.testing.assert_allclose(resumed[key][1], proba)
    changed = trained_tasks({0: ds}, "logistic_regression", "random_forest")  # same key, another model
    assert all(run_fits([t], n_jobs=1, cache_dir=cache) for t in changed[:1])
    assert len(list(cache.glob(f"*{FIT_SUFFIX}"))) == len(tasks) + 1, "another model is another fingerprint"


def test_a_paired_difference_that_straddles_zero_prints_not_distinguishable(dataset) -> None:
    from cellfeatures import display
    from cellfeatures.benchmark.entries import difference_to

    store, ds, root = dataset
    board = run_baselines(
        store, ds, seeds=(0,), models=("majority", "logistic_regression"), existing=(), root=root / "datasets"
    )
    best = board.best()
    assert best is not None and best.entry == "logistic_regression" and best.vs_best is None
    majority = next(e for e in board.entries if e.entry == "majority")
    gap = majority.vs_best["balanced_accuracy"]
    assert majority.vs_best["vs"] == "logistic_regression" and majority.vs_best["clusters"] == best.clusters
    assert gap["diff"] == pytest.approx(
        majority.summary("balanced_accuracy")["mean"] - best.summary("balanced_accuracy")["mean"]
    )
    assert gap["low"] <= gap["diff"] <= gap["high"] < 0 and gap["distinguishable"]
    row = board.frame().filter(pl.col("entry") == "majority").row(0, named=True)
    assert display.difference(row, "balanced_accuracy").endswith(" lower")
    itself = difference_to(best, best, board.datasets, Evaluator(ds).classes)
    assert itself is not None
    same = itself["balanced_accuracy"]
    assert same["low"] == same["high"] == 0 and not same["distinguishable"], "paired: identical draws cancel"
    straddling = {"vs_best": "logistic_regression", "kind": "trained", "balanced_accuracy_diff": -0.021}
    straddling |= {"balanced_accuracy_diff_low": -0.049, "balanced_accuracy_diff_high": 0.011}
    assert display.difference(straddling, "balanced_accuracy") == "−0.021 [−0.049, +0.011] not distinguishable"


def test_fit_cache_entries_of_the_older_joblib_format_are_removed(dataset, tmp_path: Path) -> None:
    from cellfeatures.benchmark.run import run_fits, trained_tasks

    _store, ds, _root = dataset
    cache = tmp_path / "fits"
    cache.mkdir()
    (cache / "0123456789abcdef01234567.joblib").write_bytes(b"written by an older version")
    run_fits(trained_tasks({0: ds}, "majority", "majority")[:1], n_jobs=1, cache_dir=cache)
    assert [p.suffix for p in cache.iterdir()] == [FIT_SUFFIX]
