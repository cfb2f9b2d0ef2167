"""Search-space translation to Optuna distributions and the samplers."""

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from hpo.core.space import describe, make_sampler, to_optuna
from hpo.core.spec import SearcherSpec, parse_spec
from tests.conftest import tiny_spec


def test_each_parameter_type_maps_to_its_distribution(tmp_path):
    raw = tiny_spec(tmp_path)
    raw["search_space"] = {
        "learning_rate": {"type": "loguniform", "low": 1e-5, "high": 1e-3},
        "weight_decay": {"type": "uniform", "low": 0.0, "high": 0.1},
        "epochs": {"type": "int", "low": 1, "high": 4},
        "batch_size": {"type": "choice", "values": [16, 32, 64]},
    }
    space = to_optuna(parse_spec(raw).search_space)
    assert space["learning_rate"] == FloatDistribution(1e-5, 1e-3, log=True)
    assert space["weight_decay"] == FloatDistribution(0.0, 0.1)
    assert space["epochs"] == IntDistribution(1, 4)
    assert space["batch_size"] == CategoricalDistribution([16, 32, 64])
    assert describe(parse_spec(raw).search_space)["batch_size"] == "choice 16, 32, 64"


def test_tpe_sampler_is_seeded_and_configured():
    sampler = make_sampler(SearcherSpec(seed=7, n_startup_trials=3, multivariate=True))
    assert isinstance(sampler, optuna.samplers.TPESampler)
    assert sampler._n_startup_trials == 3 and sampler._multivariate
    dist = FloatDistribution(1e-5, 1e-3, log=True)

    def draws(seed):
        study = optuna.create_study(sampler=make_sampler(SearcherSpec(seed=seed, n_startup_trials=3)))
        return [study.ask({"lr": dist}).params["lr"] for _ in range(3)]

    assert draws(7) == draws(7) != draws(8)


def test_random_sampler_for_baselines():
    assert isinstance(make_sampler(SearcherSpec(type="random")), optuna.samplers.RandomSampler)
