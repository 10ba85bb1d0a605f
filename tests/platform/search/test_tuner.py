"""The samplers ``--sampler`` names: each one pickles (Tune saves the searcher) and runs a search end to end."""

from __future__ import annotations

import pickle

import optuna
import pytest
from trivial_search import lr_ramp, search, search_dirs, trivial_space

from geodistill.platform.search.options import SAMPLERS, SearchOptions
from geodistill.platform.search.tuner import make_sampler


def test_the_documented_samplers_are_the_cli_choices():
    from geodistill.platform.cli import build_parser

    (search_parser,) = [p for path, p in _parsers(build_parser()) if path == ("search",)]
    sampler = next(a for a in search_parser._actions if a.dest == "sampler")
    assert tuple(sampler.type.rule.options()) == SAMPLERS == ("tpe", "gp", "nsga2", "random")
    assert sampler.default == SearchOptions().sampler == "tpe"


def _parsers(parser):
    from geodistill.platform.cli.flags import walk_parsers

    return walk_parsers(parser)


@pytest.mark.parametrize("name", SAMPLERS)
def test_every_sampler_survives_a_pickle_round_trip_and_still_samples(name):
    """NSGA-II holds a thread lock (Optuna 5): pickling it raised TypeError inside Tuner.fit."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    sampler = pickle.loads(pickle.dumps(make_sampler(name, seed=3)))
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    for _ in range(3):
        trial = study.ask()
        x = trial.suggest_float("x", 0.0, 1.0)
        study.tell(trial, [x, 1 - x])
    assert len(study.trials) == 3 and all(0.0 <= t.params["x"] <= 1.0 for t in study.trials)
    again = pickle.loads(pickle.dumps(study.sampler))  # after use too (NSGA-II caches per generation)
    assert type(again) is type(sampler)


@pytest.mark.slow  # one small real search per sampler, ~20 s each on 2 shared cores
@pytest.mark.parametrize("name", SAMPLERS)
def test_every_documented_sampler_runs_a_search_end_to_end(name, ray_local, tmp_path):
    result = search(
        trivial_space(1, name=f"s-{name}"),
        experiment=f"sampler-{name}",
        num_samples=3,
        sampler=name,
        **search_dirs(tmp_path),
        max_concurrent=2,
        objective=lr_ramp,  # precision lr * 1000 at its one epoch
    )
    rows = result.rows
    assert rows.height == 3 and set(rows["status"]) == {"ok"}, rows.select("status", "error").to_dicts()
    assert (rows["d2s_recall1"] - rows["lr"] * 1000).abs().max() < 1e-9
    study = optuna.load_study(study_name=f"sampler-{name}", storage=result.study_url)
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials) == 3
