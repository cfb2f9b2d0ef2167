"""Search-space translation to Optuna distributions and the samplers."""

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from hpo.core.space import describe, to_optuna
from hpo.core.spec import RandomSearcher, TPESearcher, parse_spec
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
    sampler = TPESearcher(seed=7, n_startup_trials=3, multivariate=True).sampler()
    assert isinstance(sampler, optuna.samplers.TPESampler)
    assert sampler._n_startup_trials == 3 and sampler._multivariate
    dist = FloatDistribution(1e-5, 1e-3, log=True)

    def draws(seed):
        study = optuna.create_study(sampler=TPESearcher(seed=seed, n_startup_trials=3).sampler())
        return [study.ask({"lr": dist}).params["lr"] for _ in range(3)]

    assert draws(7) == draws(7) != draws(8)


def test_random_sampler_for_baselines():
    assert isinstance(RandomSearcher(type="random").sampler(), optuna.samplers.RandomSampler)


def test_searchers_and_schedulers_are_chosen_by_type_from_their_registries():
    from pathlib import Path

    from hpo.core.errors import SpecError
    from hpo.core.spec import SCHEDULERS, SEARCHERS, AshaScheduler, FifoScheduler, MedianScheduler
    from hpo.tune.scheduler import make_scheduler
    from tests.conftest import tiny_spec

    assert list(SEARCHERS) == ["tpe", "random"] and list(SCHEDULERS) == ["asha", "fifo", "median", "hyperband"]
    raw = tiny_spec(Path("runs"))
    raw["searcher"], raw["scheduler"] = {"seed": 3}, {"max_rounds": 4}  # no type: the first registered
    spec = parse_spec(raw)
    assert isinstance(spec.searcher, TPESearcher) and isinstance(spec.scheduler, AshaScheduler)
    raw["searcher"] = {"type": "random", "seed": 3}
    raw["scheduler"] = {"type": "median", "max_rounds": 9, "grace_period": 2}
    spec = parse_spec(raw)
    assert isinstance(spec.searcher.sampler(), optuna.samplers.RandomSampler)
    assert isinstance(spec.scheduler, MedianScheduler) and spec.scheduler.rungs() == []
    from ray.tune.schedulers import FIFOScheduler as RayFifo
    from ray.tune.schedulers import MedianStoppingRule

    assert isinstance(make_scheduler(spec), MedianStoppingRule)
    assert isinstance(make_scheduler(spec.model_copy(update={"scheduler": FifoScheduler(type="fifo")})), RayFifo)
    # a key of another member is refused with the keys this member allows; an unknown type names the allowed
    raw["scheduler"] = {"type": "fifo", "reduction_factor": 2}
    with pytest.raises(SpecError) as err:
        parse_spec(raw)
    assert "scheduler.reduction_factor: unknown key" in str(err.value) and "grace_period" in str(err.value)
    raw["scheduler"], raw["searcher"] = {"max_rounds": 4}, {"type": "bayes"}
    with pytest.raises(SpecError) as err:
        parse_spec(raw)
    assert "searcher" in str(err.value) and "allowed: tpe, random" in str(err.value)
