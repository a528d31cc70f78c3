"""Search on Ray Tune (`search.backend: ray`): trials run as Ray trials but stay ordinary run folders, the
best finished trial is the one with the lowest validation loss, either backend continues the other's
study, ASHA stops a clearly bad trial, a trial's tuneforge error reaches the user as itself, a Ray that
the search started is shut down with its processes, and a missing Ray or a bad setting fails with a clear
message before anything trains. Ray's temp folders live under pytest's temp folder."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from pathlib import Path

import pytest
import yaml

# Ray sends no usage statistics (read when ray is imported). Its node address is loopback here: the
# suite's pytest-socket blocks the probe Ray uses to find the machine's network address.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from test_train_common import make_recipe  # noqa: E402
from tuneforge.cli import main  # noqa: E402
from tuneforge.config.recipe import dump_recipe, load_recipe  # noqa: E402
from tuneforge.errors import ConfigError, ModelError, UnsupportedHere  # noqa: E402
from tuneforge.train.runfolder import read_status  # noqa: E402
from tuneforge.train.search import search  # noqa: E402

LR_SPACE = "search.space={hparams.learning_rate: {type: float, low: 1.0e-6, high: 1.0e-2, log: true}}"
RAY = ("search.backend=ray", "search.resources_per_trial={cpu: 1}")


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    """One small local Ray instance for the module (startup and shutdown take seconds each); its sockets,
    logs and spill files live in a pytest temp folder (short: Unix socket paths are limited to 107 bytes)."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("optuna")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             _temp_dir=str(tmp_path_factory.mktemp("ray")))
    yield ray
    ray.shutdown()


def rows_of(folder):
    return [json.loads(line) for line in (folder / "trials.jsonl").read_text().splitlines()]


def ray_processes(marker: str) -> list[int]:
    """Pids whose command line names `marker` (Ray's processes name their session folder)."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            if marker.encode() in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
    return found


# First in the module, before `local_ray` starts a shared instance: this search starts and stops its own.
def test_cli_ray_search_starts_its_own_ray_continues_and_leaves_nothing_running(
        tmp_path, tmp_path_factory, tiny_model_dir, monkeypatch, capsys):
    ray = pytest.importorskip("ray")
    assert not ray.is_initialized(), "run this test before the module's shared Ray instance starts"
    temp = tmp_path_factory.mktemp("ray")  # short, unlike tmp_path: Unix socket paths are limited to 107 bytes
    monkeypatch.setenv("RAY_TMPDIR", str(temp))  # where a Ray started by tuneforge keeps its session folder
    recipe = make_recipe(tmp_path, tiny_model_dir, "data.val_ratio=0.25", "hparams.epochs=2", LR_SPACE, *RAY,
                         "search.trials=2", "search.pruner=none", "search.max_concurrent=2", n=16)
    path = dump_recipe(recipe, tmp_path / "recipe.yaml")
    assert main(["search", str(path), "--quiet"]) == 0
    folder = next((tmp_path / "runs").glob("t-search-*"))
    out = capsys.readouterr().out
    assert "best val loss" in out and "best_recipe.yaml" in out and out.count("│ complete │") == 2
    assert not ray.is_initialized() and (temp / "ray").is_dir()
    deadline = time.monotonic() + 10
    while ray_processes(str(temp)) and time.monotonic() < deadline:  # shutdown ends them within moments
        time.sleep(0.2)
    assert ray_processes(str(temp)) == []
    # The Optuna backend continues the Ray backend's search folder: trial 2, the same table and best.
    assert main(["search", str(path), "--quiet", "--trials", "1", "--continue", str(folder),
                 "search.backend=optuna", "search.max_concurrent=null"]) == 0
    rows = rows_of(folder)
    assert sorted(r["trial"] for r in rows) == [0, 1, 2] and all(r["state"] == "finished" for r in rows)
    assert all((folder / f"trial-{n:03d}").is_dir() for n in range(3))
    best = min(rows, key=lambda r: r["value"])
    assert load_recipe(folder / "best_recipe.yaml").hparams.learning_rate == pytest.approx(
        best["params"]["hparams.learning_rate"])
    assert capsys.readouterr().out.count("│ complete │") == 3


def test_ray_search_continues_a_study_trains_run_folders_and_keeps_the_lowest(tmp_path, tiny_model_dir,
                                                                              local_ray):
    optuna = pytest.importorskip("optuna")
    common = ("data.val_ratio=0.25", "hparams.epochs=2", LR_SPACE, "search.pruner=none", "hparams.threads=null")
    first = search(make_recipe(tmp_path, tiny_model_dir, *common, "search.trials=1", n=16), quiet=True)
    # Ray continues the Optuna backend's study: trials 1 and 2 (one worker, reused), drawn after trial 0.
    recipe = make_recipe(tmp_path, tiny_model_dir, *common, *RAY, "search.trials=2", "search.max_concurrent=1", n=16)
    found = search(recipe, quiet=True, search_dir=first.search_dir)
    rows = rows_of(found.search_dir)
    assert sorted(r["trial"] for r in rows) == [0, 1, 2] and all(r["state"] == "finished" for r in rows)
    assert len({r["params"]["hparams.learning_rate"] for r in rows}) == 3  # a continued study draws anew
    for row in rows[1:]:  # an ordinary, finished run folder that trained with the sampled rate
        run = next((found.search_dir / f"trial-{row['trial']:03d}").glob("t-t*"))
        assert str(run) == row["run_dir"] and read_status(run) == "finished" and (run / "final").is_dir()
        saved = yaml.safe_load((run / "recipe.yaml").read_text())
        assert saved["hparams"]["learning_rate"] == pytest.approx(row["params"]["hparams.learning_rate"])
        assert saved["hparams"]["threads"] == 1  # the one CPU the trial reserved (the recipe left it unset)
        assert row["value"] == pytest.approx(json.loads((run / "summary.json").read_text())["best_val_loss"])
    best = min(rows, key=lambda r: r["value"])
    lr = load_recipe(found.search_dir / "best_recipe.yaml").hparams.learning_rate
    assert 1e-6 <= lr <= 1e-2 and lr == pytest.approx(best["params"]["hparams.learning_rate"])
    assert found.best_value == pytest.approx(best["value"]) and found.best_params == best["params"]
    assert [r["trial"] for r in found.trials] == [0, 1, 2]
    study = optuna.load_study(study_name="t", storage=f"sqlite:///{found.search_dir / 'study.db'}")
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3


def test_ray_asha_stops_a_clearly_bad_trial(tmp_path, tiny_model_dir, local_ray):
    # One trial at a time, a good rate first and a rate that cannot learn second: at the first rung ASHA
    # keeps only trials as good as the quarter best so far, so the second is stopped there.
    points = "search.points_to_evaluate=[{hparams.learning_rate: 1.0e-2}, {hparams.learning_rate: 1.0e-6}]"
    recipe = make_recipe(tmp_path, tiny_model_dir, "data.val_ratio=0.25", "hparams.epochs=3",
                         "hparams.batch_size=4", "hparams.eval_every=1", LR_SPACE, *RAY, points,
                         "search.trials=2", "search.pruner=asha", "search.max_concurrent=1", n=16)
    found = search(recipe, quiet=True)
    good, bad = sorted(rows_of(found.search_dir), key=lambda r: r["trial"])
    assert (good["state"], bad["state"]) == ("finished", "pruned"), (good, bad)
    assert bad["params"]["hparams.learning_rate"] == pytest.approx(1e-6) and bad["steps"] < good["steps"]
    assert found.best_params == good["params"]
    assert [r["state"] for r in found.trials] == ["complete", "pruned"]  # study.db, as Optuna's pruner leaves it
    run = next((found.search_dir / "trial-001").glob("t-t*"))
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert max(m["step"] for m in metrics) < good["steps"]  # the run really stopped early
    assert (run / "status").read_text().strip() == "stopped" and not (run / "final").exists()


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_a_trial_error_ends_the_search_with_its_own_message(tmp_path, tiny_model_dir, local_ray):
    # Ray runs the trial in a worker and wraps what it raised; the user sees tuneforge's one-line error,
    # and no traceback from Ray's logging of the failed trial on the way (Ray's handler writes to stderr).
    recipe = make_recipe(tmp_path, tmp_path / "no-such-model", "data.val_ratio=0.25", LR_SPACE, *RAY,
                         "search.trials=3", "search.max_concurrent=1", n=16)
    logged = Records()
    logging.getLogger("ray.tune").addHandler(logged)
    try:
        with pytest.raises(ModelError, match=r"^model `.*no-such-model` not found"):
            search(recipe, quiet=True)
    finally:
        logging.getLogger("ray.tune").removeHandler(logged)
    assert [r.getMessage() for r in logged.records if r.exc_info] == []
    rows = rows_of(next((tmp_path / "runs").glob("t-search-*")))
    assert [(r["trial"], r["state"]) for r in rows] == [(0, "failed")]  # the first error ended the search


def test_without_ray_the_error_names_the_extra(tmp_path, tiny_model_dir, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    recipe = make_recipe(tmp_path, tiny_model_dir, "data.val_ratio=0.25", LR_SPACE, "search.backend=ray")
    with pytest.raises(UnsupportedHere, match=r"pip install 'tuneforge\[cluster\]'"):
        search(recipe)
    assert main(["search", str(dump_recipe(recipe, tmp_path / "r.yaml"))]) == 2
    assert "pip install 'tuneforge[cluster]'" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("setting, message", [
    ("search.backend=dask", "backend.*'optuna'.*'ray'"),
    ("search.resources_per_trial={cpu: 0}", "cpu.*greater than 0"),
    ("search.resources_per_trial={gpu: -1}", "gpu.*greater than or equal to 0"),
    ("search.resources_per_trial={tpu: 1}", "tpu"),
    ("search.max_concurrent=0", "max_concurrent.*greater than or equal to 1"),
])
def test_bad_ray_settings_name_the_field(tmp_path, tiny_model_dir, setting, message):
    with pytest.raises(ConfigError, match=message):
        make_recipe(tmp_path, tiny_model_dir, "search.backend=ray", setting)


def test_ray_settings_without_the_ray_backend_are_refused(tmp_path, tiny_model_dir):
    for setting in ("search.address=auto", "search.max_concurrent=2", "search.resources_per_trial={gpu: 1}"):
        with pytest.raises(ConfigError, match=r"setting of `backend: ray`"):
            make_recipe(tmp_path, tiny_model_dir, setting)


def test_points_to_evaluate_must_lie_in_the_space(tmp_path, tiny_model_dir):
    from tuneforge.train.search import check_space

    for point, message in (("{method.lora.r: 8}", "not a key of search.space"),
                           ("{hparams.learning_rate: 0.5}", "outside search.space.hparams.learning_rate")):
        recipe = make_recipe(tmp_path, tiny_model_dir, "data.val_ratio=0.25", LR_SPACE,
                             f"search.points_to_evaluate=[{point}]")
        with pytest.raises(ConfigError, match=message):
            check_space(recipe)


def test_ray_resources_beyond_the_local_machine_are_refused(tmp_path, tiny_model_dir, local_ray):
    recipe = make_recipe(tmp_path, tiny_model_dir, "data.val_ratio=0.25", LR_SPACE, "search.backend=ray",
                         "search.resources_per_trial={cpu: 1, gpu: 1}")
    with pytest.raises(ConfigError, match="resources_per_trial.gpu=1.*0 GPUs"):
        search(recipe, quiet=True)
