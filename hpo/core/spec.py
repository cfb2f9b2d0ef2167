"""The sweep spec: one validated document per sweep (YAML under ``search_spaces/``).

Only pydantic and yaml are imported here, so the spec loads fast and can be imported anywhere,
including inside a Ray trial. Every user-facing knob of a sweep lives in one of these models;
the driver turns them into Ray Tune and Optuna objects in one place (``hpo.core.space`` / ``hpo.sweep.driver``).
"""

from __future__ import annotations

import math
import re
import typing
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, Discriminator, Field, Tag, ValidationError, field_validator, model_validator

from hpo.core.errors import SpecError
from hpo.core.paths import is_uri, local_path, regular_file
from trainables.errors import shown
from trainables.settings import (
    TRUNCATIONS, DataSpec, Metric, ModelSpec, Objective, OfflinePreset, ResourcesSpec, Seed, StrictModel, TrainingSpec, TrialSettings, direction,
    searchable_fields,
)

# The sweep spec composes the settings of one trial (``trainables.settings``); they are named here too.
__all__ = [
    "DataSpec", "ModelSpec", "OfflinePreset", "ResourcesSpec", "SweepSpec", "TrainingSpec", "TrialSettings", "dump_spec", "load_spec",
    "parse_spec",
]

SEARCHABLE = searchable_fields()  # marked on the training settings themselves


class LogUniform(StrictModel):
    type: Literal["loguniform"] = Field(description="Sampled uniformly in log space (learning rates).")
    low: float = Field(gt=0, description="Smallest value (> 0).")
    high: float = Field(gt=0, description="Largest value.")

    @model_validator(mode="after")
    def _order(self) -> LogUniform:
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        return self


class Uniform(StrictModel):
    type: Literal["uniform"] = Field(description="Sampled uniformly between low and high.")
    low: float = Field(description="Smallest value.")
    high: float = Field(description="Largest value.")

    @model_validator(mode="after")
    def _order(self) -> Uniform:
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        return self


class IntRange(StrictModel):
    type: Literal["int"] = Field(description="An integer between low and high, both included.")
    low: int = Field(description="Smallest value.")
    high: int = Field(description="Largest value.")
    step: int = Field(1, ge=1, description="Spacing of the values.")
    log: bool = Field(False, description="Sample in log space (low >= 1, step 1).")

    @model_validator(mode="after")
    def _order(self) -> IntRange:
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.step > self.high - self.low:
            raise ValueError(f"step ({self.step}) is larger than the range {self.low}..{self.high}: only {self.low} could be drawn; lower step or widen the range")
        if self.log and (self.low < 1 or self.step != 1):
            raise ValueError("log int ranges need low >= 1 and step 1")
        return self


class Choice(StrictModel):
    type: Literal["choice"] = Field(description="One of the listed values.")
    values: list[Union[int, float, str, bool]] = Field(min_length=1, description="The values to choose from, all of one type (numbers, strings or booleans).")

    @field_validator("values")
    @classmethod
    def _one_type(cls, values: list) -> list:
        first_of_kind: dict[str, Any] = {}  # ints and floats are both numbers: 1e-5 and 1 may go together
        for v in values:
            first_of_kind.setdefault("number" if type(v) in (int, float) else type(v).__name__, v)
        if len(first_of_kind) > 1:
            each = ", ".join(f"{shown(v)} ({type(v).__name__})" for v in first_of_kind.values())
            raise ValueError(f"the values mix types: {each}; give values of one type (YAML reads 32 as a number, '32' as a string, true as a boolean)")
        return values


Param = Annotated[Union[LogUniform, Uniform, IntRange, Choice], Field(discriminator="type")]


def param_values(param: Param) -> list[Any]:
    """The extreme (or all) values a parameter can take, to check them against ``TrainingSpec``."""
    if isinstance(param, Choice):
        return list(param.values)
    return [param.low, param.high]


# ----------------------------------------------------------------------------- searcher & scheduler
# Extension points. A searcher or a scheduler is one class here, registered under its ``type``; the
# spec's ``searcher:`` and ``scheduler:`` sections are the unions of the registered classes, told apart by
# ``type`` (the first registered is the default when ``type`` is left out). A searcher's class builds its
# Optuna sampler; a scheduler's Ray object is built by the adapter (``hpo.tune.scheduler``), which has one
# builder registered per scheduler class.
SEARCHERS: dict[str, type[StrictModel]] = {}
SCHEDULERS: dict[str, type[StrictModel]] = {}


def _register(registry: dict[str, type[StrictModel]]) -> Any:
    def add(cls: type[StrictModel]) -> type[StrictModel]:
        (tag,) = typing.get_args(cls.model_fields["type"].annotation)
        registry[tag] = cls
        return cls

    return add


def _tagged_union(registry: dict[str, type[StrictModel]], section: str) -> Any:
    """The union of a registry's classes, chosen by ``type`` (the first registered when it is missing)."""
    default = next(iter(registry))

    def tag(value: Any) -> str | None:
        if isinstance(value, dict):
            return value.get("type", default)
        return getattr(value, "type", None)

    members = tuple(Annotated[cls, Tag(name)] for name, cls in registry.items())
    return Annotated[
        Union[members],  # noqa: UP007 - a tuple of members needs the subscript form
        Discriminator(
            tag,
            custom_error_type="unknown_type",
            custom_error_message=f"unknown {section} type; allowed: {', '.join(registry)}",
        ),
    ]


class SearcherBase(StrictModel, ABC):
    seed: Seed = Field(0, description="Seed of the sampler: the same spec proposes the same configurations.")

    @abstractmethod
    def sampler(self) -> Any:
        """The Optuna sampler that proposes each new trial's configuration."""


@_register(SEARCHERS)
class TPESearcher(SearcherBase):
    """Optuna's tree-structured Parzen estimator: after ``n_startup_trials`` random ones, configurations
    are drawn where the good trials so far are dense and the bad ones sparse."""

    type: Literal["tpe"] = Field("tpe", description="tpe: Optuna's TPE (the default).")
    n_startup_trials: int = Field(4, ge=1, description="Random trials before TPE models the space.")
    multivariate: bool = Field(True, description="TPE models the parameters jointly (Optuna's multivariate TPE).")

    def sampler(self) -> Any:
        import optuna

        return optuna.samplers.TPESampler(seed=self.seed, n_startup_trials=self.n_startup_trials, multivariate=self.multivariate)


@_register(SEARCHERS)
class RandomSearcher(SearcherBase):
    """Every configuration drawn at random: the baseline a search method is measured against."""

    type: Literal["random"] = Field(description="random: uniform random search (the baseline for benchmarks).")

    def sampler(self) -> Any:
        import optuna

        return optuna.samplers.RandomSampler(seed=self.seed)


SearcherSpec = _tagged_union(SEARCHERS, "searcher")


class SchedulerBase(StrictModel):
    """What every scheduler shares: a trial's most rounds, and the patience rule (hpo's, in the trainable)."""

    max_rounds: int = Field(4, ge=1, description="Most evaluation rounds any trial gets.")
    grace_period: int = Field(1, ge=1, description="Rounds before a trial may be stopped early.")
    patience: int | None = Field(
        None,
        ge=1,
        description="Stop a trial whose metric has not improved for this many rounds, checked from the "
        "scheduler's last rung on (fifo: from grace_period). It ends converged, with its best round as its result.",
    )

    @model_validator(mode="after")
    def _grace(self) -> SchedulerBase:
        if self.grace_period > self.max_rounds:
            raise ValueError(f"grace_period ({self.grace_period}) exceeds max_rounds ({self.max_rounds})")
        return self

    def rungs(self) -> list[int]:
        """The rounds at which the scheduler compares trials, below max_rounds (none: it stops none)."""
        return []

    def patience_from(self) -> int:
        """The first round at which ``patience`` may end a trial."""
        return max(self.rungs(), default=self.grace_period)


def _geometric_rungs(grace_period: int, reduction_factor: float, max_rounds: int) -> list[int]:
    """grace_period x reduction_factor^k, below max_rounds (as Ray's schedulers place them)."""
    out, k = [], 0
    while (at := math.ceil(grace_period * reduction_factor**k - 1e-9)) < max_rounds:
        out.append(at)
        k += 1
    return out


@_register(SCHEDULERS)
class AshaScheduler(SchedulerBase):
    """Ray Tune's asynchronous successive halving, with hpo's one-class rule and backfill."""

    type: Literal["asha"] = Field("asha", description="asha: asynchronous successive halving (the default).")
    reduction_factor: float = Field(2.0, gt=1.0, le=100, description="ASHA keeps 1 in reduction_factor trials at each rung.")
    stop_single_class: bool = Field(
        False,
        description="At each rung also stop a trial that predicts one class for at least 99% of the "
        "validation set, even the first trial to reach that rung (which ASHA alone always lets go on). Only "
        "where some configurations learn within grace_period: otherwise it stops every trial at the first rung.",
    )
    backfill: bool = Field(
        True,
        description="Once every trial has started, a trial that ASHA would stop at a rung while another "
        "trial still runs goes on in the slot that would otherwise stand idle; it is stopped when the last "
        "other trial ends, so the sweep takes no longer. Its rounds count as compute.",
    )

    def rungs(self) -> list[int]:
        return _geometric_rungs(self.grace_period, self.reduction_factor, self.max_rounds)


@_register(SCHEDULERS)
class FifoScheduler(SchedulerBase):
    """No early stopping: every trial runs to max_rounds (or until patience ends it)."""

    type: Literal["fifo"] = Field(description="fifo: no early stopping (baselines, finalists).")


@_register(SCHEDULERS)
class MedianScheduler(SchedulerBase):
    """Ray Tune's median stopping rule: from grace_period on, a trial whose best value so far is worse than
    the median of the other trials' running averages at the same round is stopped. Needs no rungs and no
    pausing, so it suits sweeps whose trials differ in length."""

    type: Literal["median"] = Field(description="median: Ray Tune's median stopping rule.")
    min_samples_required: int = Field(3, ge=1, le=1000, description="Other trials that must have reached a round before the rule judges a trial there.")


@_register(SCHEDULERS)
class HyperbandScheduler(SchedulerBase):
    """Ray Tune's asynchronous HyperBand: ``brackets`` ASHA brackets side by side, bracket ``s`` judging
    trials first at grace_period x reduction_factor^s rounds, each new trial placed in one of them. It
    hedges against a grace period too short to tell good trials from slow starters, at the cost of more
    rounds than ASHA. (Ray's synchronous ``HyperBandScheduler`` pauses trials until a bracket fills, which
    stalls a sweep whose ``max_concurrent`` is below the bracket size, so the asynchronous form is used.)"""

    type: Literal["hyperband"] = Field(description="hyperband: asynchronous HyperBand (several ASHA brackets).")
    reduction_factor: float = Field(3.0, gt=1.0, le=100, description="Each bracket keeps 1 in reduction_factor trials at each rung.")
    brackets: int = Field(2, ge=1, le=8, description="Brackets; bracket s first judges trials at grace_period x reduction_factor^s rounds.")

    @model_validator(mode="after")
    def _bracket_rungs(self) -> HyperbandScheduler:
        last = self.grace_period * self.reduction_factor ** (self.brackets - 1)
        if last >= self.max_rounds:
            raise ValueError(
                f"brackets ({self.brackets}): the last bracket would first judge trials at round {last:g}, not below "
                f"max_rounds ({self.max_rounds}); lower brackets or reduction_factor, or raise max_rounds"
            )
        return self

    def rungs(self) -> list[int]:
        return _geometric_rungs(self.grace_period, self.reduction_factor, self.max_rounds)


SchedulerSpec = _tagged_union(SCHEDULERS, "scheduler")


class BudgetSpec(StrictModel):
    num_trials: int = Field(8, ge=1, description="Trials to run in all.")
    max_concurrent: int = Field(2, ge=1, description="Trials running at once (at most num_trials).")
    time_limit_s: float | None = Field(None, gt=0, description="Stop launching after this long.")


# W&B refuses these in a project's name, and names longer than 128 characters.
_WANDB_NAME = r"^[^/\\#?%:]{1,128}$"


class TrackingSpec(StrictModel):
    project: str = Field("hpo", pattern=_WANDB_NAME, description="W&B project (at most 128 characters, none of / \\ # ? % :).")
    entity: str | None = Field(None, pattern=_WANDB_NAME, description="W&B entity (team or user); default: the key's own.")
    group: str | None = Field(None, min_length=1, max_length=128, description="W&B group; defaults to the sweep name.")
    mode: Literal["auto", "online", "offline", "disabled"] = Field(
        "auto", description="auto: online when WANDB_API_KEY is set, offline otherwise."
    )


class CheckpointSpec(StrictModel):
    num_to_keep: int = Field(1, ge=1, description="Best checkpoints kept per running trial, by the metric.")
    disk_budget_mb: float | None = Field(
        None,
        gt=0,
        description="Bound on the sweep folder's size. Finished trials' checkpoints are deleted as they end "
        "(the best trial's last, only when over budget); running trials keep theirs for resuming.",
    )


class FailureSpec(StrictModel):
    max_retries: int = Field(1, ge=0, description="Restarts of a crashed trial from its checkpoint.")


# --------------------------------------------------------------------------------------- promotion
class SanityExample(StrictModel):
    text: str = Field(min_length=1, description="A text the promoted model must label right.")
    label: str = Field(description="Its expected label (one of the label names).")


class GateSpec(StrictModel):
    enabled: bool = Field(True, description="false: publish without gates (not recommended).")
    min_test_accuracy: float = Field(0.8, ge=0, le=1, description="Least test accuracy to publish.")
    min_class_recall: float = Field(0.5, ge=0, le=1, description="Every class must reach this recall.")
    sanity_examples: list[SanityExample] = Field(default_factory=list, description="Texts the model must label as given, run through a transformers pipeline.")
    min_lift_over_baseline: float = Field(
        0.0,
        ge=-100,
        le=100,
        description="Points of test accuracy the model must score above the TF-IDF + logistic-regression baseline, "
        "refitted on the same training set and scored on the same test split (0: at least as good; negative: "
        "allowed to lose by that much).",
    )
    max_latency_ms_p95: float | None = Field(
        None,
        gt=0,
        le=600_000,
        description="Most milliseconds the model may take per text at batch 1 (p95 of transformers' pipeline, "
        "measured on the machine that promotes, as on the card); none: no latency gate.",
    )


class FinalistsSpec(StrictModel):
    """Before retraining, the best ``top_k`` configurations are trained again with ``seeds`` new training
    seeds each, to their winning round, and the one with the best mean validation value is retrained."""

    top_k: int = Field(3, ge=1, le=20, description="Configurations re-run (the sweep's best, distinct). top_k 1 with seeds 1: off.")
    seeds: int = Field(3, ge=1, le=20, description="New training seeds per configuration (training.seed + 1, + 2, ...).")

    @property
    def enabled(self) -> bool:
        return self.top_k > 1 or self.seeds > 1


class PromotionSpec(StrictModel):
    balance: Literal["downsample", "class_weight", "none"] = Field(
        "downsample", description="How the retrain balances classes: drop examples of larger classes, weight the loss, or not at all."
    )
    gate: GateSpec = Field(GateSpec(), description="What the retrained model must pass before it is published.")
    finalists: FinalistsSpec = Field(FinalistsSpec(), description="The best configurations re-run with new seeds before the retrain.")
    require_improvement: Literal["none", "not_worse", "significant"] = Field(
        "not_worse",
        description="When the Hub repo already holds a model, both are scored on the test split, example by "
        "example. none: publish anyway (the comparison is still printed and put on the card); not_worse: "
        "publish only if the new model's test accuracy is at least the old one's; significant: only if it is "
        "higher and McNemar's exact test gives p < 0.05.",
    )
    license: str = Field("apache-2.0", description="License in the model card's metadata.")
    tags: list[str] = Field(default_factory=lambda: ["text-classification", "distilbert", "hpo"], description="Tags in the model card's metadata.")
    private: bool = Field(False, description="Create the Hub repo as private (also: hpo promote --private).")


# ------------------------------------------------------------------------------------------- sweep
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")


class SweepSpec(StrictModel):
    """One sweep: what to train, on what data, what to search, and how to run it."""

    name: str = Field(description="Experiment name: the folder under storage and the W&B group.", json_schema_extra={"pattern": _NAME.pattern})
    model: ModelSpec = Field(description="The base model to fine-tune.")
    data: DataSpec = Field(description="The labelled texts and how they are split.")
    training: TrainingSpec = Field(TrainingSpec(), description="Fixed training settings; search_space overrides the searchable ones.")
    search_space: dict[str, Param] = Field(
        min_length=1,
        description="The parameters to search, by name, with their distributions.",
        json_schema_extra={"propertyNames": {"enum": list(SEARCHABLE)}},
    )
    searcher: SearcherSpec = Field(default_factory=TPESearcher, description="How configurations are chosen: " + ", ".join(SEARCHERS) + ".")
    warm_start: list[str] = Field(
        default_factory=list,
        description="Experiment folders of earlier sweeps (local folders or URIs such as s3://BUCKET/PATH/NAME) with the same "
        "metric and mode: their ended trials enter the searcher before it draws, and their best configurations are "
        "tried first (hpo sweep --warm-start replaces this list).",
    )
    scheduler: SchedulerSpec = Field(default_factory=AshaScheduler, description="How weak trials are stopped early: " + ", ".join(SCHEDULERS) + " (and patience).")
    budget: BudgetSpec = Field(BudgetSpec(), description="How many trials, how many at once, for how long.")
    resources: ResourcesSpec = Field(ResourcesSpec(), description="CPUs, GPUs and workers per trial.")
    metric: Metric = Field("val_accuracy", description="Validation metric the search optimizes and the winner is chosen by.")
    mode: Literal["max", "min"] = Field("max", description="max or min of the metric (min only for val_loss).")
    objectives: list[Objective] = Field(
        default_factory=list,
        max_length=3,
        description="Objectives to trade off (at most 3), e.g. val_accuracy (max) against val_latency_ms_p95 (min): the "
        "searcher is Optuna's multi-objective sampler and hpo status shows the Pareto front. The first is the sweep's "
        "metric (it drives early stopping and picks the winner); metric and mode may be left out or must agree with it. "
        "val_latency_ms_p95 is measured by each trial every round (batch 1, p95 over the first 32 validation texts, on "
        "the trial's own device).",
    )
    tracking: TrackingSpec = Field(TrackingSpec(), description="Weights & Biases logging.")
    storage: str = Field("runs", description="Local folder or a URI Ray accepts (s3://, gs://).", json_schema_extra={"minLength": 1})
    checkpoints: CheckpointSpec = Field(CheckpointSpec(), description="Checkpoints kept and the sweep's disk budget.")
    failures: FailureSpec = Field(FailureSpec(), description="Retries of trials that crash.")
    promotion: PromotionSpec = Field(PromotionSpec(), description="How hpo promote retrains, gates and publishes the winner.")

    @field_validator("name")
    @classmethod
    def _name_ok(cls, v: str) -> str:
        if not _NAME.fullmatch(v):
            raise ValueError("use letters, digits, '.', '_' and '-' (at most 96), starting with a letter or digit")
        return v

    @field_validator("storage")
    @classmethod
    def _storage_given(cls, v: str) -> str:
        if not v.removeprefix("file://").strip():
            raise ValueError("empty: give a folder (e.g. runs) or a URI (s3://BUCKET/PATH)")
        return v

    @field_validator("warm_start")
    @classmethod
    def _warm_start_paths(cls, v: list[str]) -> list[str]:
        problems = [f"item {i}: empty: give an earlier sweep's experiment folder" for i, path in enumerate(v) if not path.removeprefix("file://").strip()]
        problems += [f"{shown(path)} is given twice" for i, path in enumerate(v) if path in v[:i]]
        if problems:
            raise ValueError("; ".join(problems))
        return v

    @model_validator(mode="before")
    @classmethod
    def _metric_from_objectives(cls, raw: Any) -> Any:
        """Without ``metric`` and ``mode``, the first objective gives them (when it names them)."""
        if not isinstance(raw, dict) or not isinstance(raw.get("objectives"), list) or not raw["objectives"]:
            return raw
        first = raw["objectives"][0]
        if not isinstance(first, dict) or first.get("metric") not in typing.get_args(Metric):
            return raw  # the objective's own check says what is wrong
        taken = {key: first[key] for key in ("metric", "mode") if key not in raw and key in first}
        return {**raw, **taken}

    @model_validator(mode="after")
    def _consistent(self) -> SweepSpec:
        problems = self._objective_problems()
        for key, param in self.search_space.items():
            if key not in SEARCHABLE:
                problems.append(f"search_space.{key}: not searchable; allowed: {', '.join(SEARCHABLE)}")
                continue
            for value in param_values(param):
                try:
                    self.training.updated({key: value})
                except ValidationError as err:
                    msg = err.errors()[0]["msg"]
                    problems.append(f"search_space.{key}: value {value!r} is not a valid {key}: {msg}")
        if self.mode != direction(self.metric) and not self.objectives:
            problems.append(f"mode: {self.metric} should be {'minimized' if direction(self.metric) == 'min' else 'maximized'}")
        if self.budget.max_concurrent > self.budget.num_trials:
            problems.append(
                f"budget.max_concurrent: {self.budget.max_concurrent} is more than budget.num_trials "
                f"({self.budget.num_trials}); at most {self.budget.num_trials} can run at once: lower it"
            )
        labels = self.data.label_names
        for i, ex in enumerate(self.promotion.gate.sanity_examples):
            if labels is not None and ex.label not in labels:
                problems.append(f"promotion.gate.sanity_examples.{i}.label: {ex.label!r} not in label_names {labels}")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _objective_problems(self) -> list[str]:
        problems = []
        for i, o in enumerate(self.objectives):
            if o.metric in [earlier.metric for earlier in self.objectives[:i]]:
                problems.append(f"objectives.{i}.metric: {o.metric} is already objective {[e.metric for e in self.objectives].index(o.metric)}; give each metric once")
            elif o.mode != direction(o.metric):
                problems.append(f"objectives.{i}.mode: {o.metric} is {'minimized' if direction(o.metric) == 'min' else 'maximized'}: mode {direction(o.metric)} (got {o.mode})")
        if not self.objectives:
            return problems
        first = self.objectives[0]
        allowed = typing.get_args(Metric)
        if first.metric not in allowed:
            problems.append(
                f"objectives.0.metric: the first objective is the sweep's metric, which drives early stopping and picks the winner; "
                f"allowed: {', '.join(allowed)} (got {first.metric}; put it second)"
            )
        elif (self.metric, self.mode) != (first.metric, first.mode):
            problems.append(
                f"metric: {self.metric} ({self.mode}) and objectives.0: {first.metric} ({first.mode}) disagree; the first objective is the "
                "sweep's metric: leave metric and mode out, or make them the first objective's"
            )
        if len(self.objectives) > 1 and self.warm_start:
            problems.append("warm_start: not available for a sweep with several objectives; leave warm_start out (or keep one objective)")
        return problems

    @property
    def multi_objective(self) -> bool:
        """More than one objective: a multi-objective search with a Pareto front."""
        return len(self.objectives) > 1

    def objective_pairs(self) -> list[tuple[str, str]]:
        """(metric, mode) of each objective, the sweep's metric first (just it for a single-objective sweep)."""
        return [(o.metric, o.mode) for o in self.objectives] or [(self.metric, self.mode)]

    def trial_settings(self) -> TrialSettings:
        """What each trial needs of this sweep, typed (the trainables know nothing of the sweep spec)."""
        return TrialSettings(
            name=self.name,
            metric=self.metric,
            mode=self.mode,
            objectives=self.objectives,
            training=self.training,
            resources=self.resources,
            max_rounds=self.scheduler.max_rounds,
            patience=self.scheduler.patience,
            patience_from=self.scheduler.patience_from(),
        )

    def planned_rounds(self, epochs: int) -> int:
        """Evaluation rounds a trial with ``epochs`` epochs runs when nothing stops it."""
        return self.trial_settings().planned_rounds(epochs)

    def max_length_bound(self) -> int:
        """The longest max_length any trial may use: texts are tokenized once to this length."""
        param = self.search_space.get("max_length")
        if param is None:
            return self.training.max_length
        return int(max(param_values(param)))

    def truncations(self) -> tuple[str, ...]:
        """The truncation strategies any trial may use (``training.truncation``, or the values search_space
        chooses from), in ``TRUNCATIONS`` order: texts are tokenized once with what all of them need."""
        param = self.search_space.get("truncation")
        used = {self.training.truncation} if param is None else set(param_values(param))
        return tuple(t for t in TRUNCATIONS if t in used)


# ------------------------------------------------------------------------------------------ loading
def _loc(loc: tuple[Any, ...]) -> str:
    # pydantic puts union tags into the location ("loguniform"); they are not keys the user wrote.
    parts = [str(p) for p in loc if p not in _UNION_TAGS]
    return ".".join(parts) or "(top level)"


def _describe(err: dict[str, Any], raw: Any) -> list[str]:
    loc = _loc(err["loc"])
    kind, msg, value = err["type"], err["msg"], err.get("input")
    if kind == "extra_forbidden":
        allowed = _allowed_keys(err["loc"][:-1])
        return [f"{loc}: unknown key (check its spelling)" + (f"; allowed here: {', '.join(allowed)}" if allowed else "")]
    if kind == "missing":
        return [f"{loc}: required key is missing"]
    if kind == "value_error" and loc == "(top level)":
        # The cross-field check collects all its problems in one message, one per line.
        return msg.removeprefix("Value error, ").split("\n")
    got = "{...}" if isinstance(value, dict) else shown(value)
    return [f"{loc}: {msg.removeprefix('Value error, ')} (got {got})"]


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    """The keys the spec model at ``loc`` (a pydantic error location) accepts, for "unknown key"."""
    candidates: list[Any] = [SweepSpec]
    for part in loc:
        if part in _UNION_TAGS:  # a tagged union's member: keep the model whose ``type`` is this tag
            candidates = [m for m in candidates if "type" in m.model_fields and part in typing.get_args(m.model_fields["type"].annotation)]
            continue
        found = [m for m in candidates if part in m.model_fields]
        if found:
            candidates = [inner for m in found for inner in _models_in(m.model_fields[part].annotation)]
        # else: a key of a dict (a search space parameter's name); its value models are the candidates
    return sorted({k for m in candidates for k in m.model_fields})


_UNION_TAGS = ("loguniform", "uniform", "int", "choice", *SEARCHERS, *SCHEDULERS)


def _models_in(annotation: Any) -> list[Any]:
    """The pydantic models an annotation can hold (through Optional, Union, Annotated, dict values)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    out = []
    args = typing.get_args(annotation)
    origin = typing.get_origin(annotation)
    if origin is dict and len(args) == 2:
        args = (args[1],)
    for arg in args:
        out += _models_in(arg)
    return out


def parse_spec(raw: Any, source: str = "<spec>") -> SweepSpec:
    """Validate a spec mapping, collecting every problem into one ``SpecError``."""
    if not isinstance(raw, dict):
        raise SpecError(source, [f"(top level): expected a mapping of keys, got {type(raw).__name__}"])
    try:
        return SweepSpec.model_validate(raw)
    except ValidationError as err:
        problems: list[str] = []
        for e in err.errors():
            problems += _describe(e, raw)
        raise SpecError(source, problems) from None


MAX_SPEC_BYTES = 1_000_000  # a sweep spec is a page of YAML; anything far larger is not one


def load_spec(path: str | Path, overrides: dict[str, Any] | None = None, text: str | None = None) -> SweepSpec:
    """Read, override (``name``, ``storage``) and validate a spec file (``text``: its content, already
    read, e.g. from object storage; ``path`` then only names it).

    Relative local paths (data files, local model, storage) are resolved against the current working
    directory here, once, because Ray trials run in other directories.
    """
    source = str(path)
    if text is None:
        try:
            file = regular_file(str(path))  # never opened when it is a FIFO or a device: reading would wait forever
        except ValueError as err:
            raise SpecError(source, [f"cannot read the file: {err}"]) from None
        try:
            if file.stat().st_size > MAX_SPEC_BYTES:
                raise SpecError(source, [f"the file is {file.stat().st_size:,} bytes; a sweep spec is at most {MAX_SPEC_BYTES:,}"])
            text = file.read_text()
        except OSError as err:
            raise SpecError(source, [f"cannot read the file: {err.strerror}"]) from None
        except UnicodeDecodeError as err:
            raise SpecError(source, [f"not a UTF-8 text file (byte {err.start}): a sweep spec is YAML"]) from None
    if len(text.encode()) > MAX_SPEC_BYTES:
        raise SpecError(source, [f"the file is {len(text.encode()):,} bytes; a sweep spec is at most {MAX_SPEC_BYTES:,}"])
    try:
        raw = load_yaml(text)
    except yaml.YAMLError as err:
        raise SpecError(source, [describe_yaml_error(err)]) from None
    if isinstance(raw, dict):
        raw = {**raw, **{k: v for k, v in (overrides or {}).items() if v is not None}}
    try:
        spec = parse_spec(raw, source)
    except SpecError as err:  # a bad --name or --storage is the command line's, not the file's
        given = {k for k, v in (overrides or {}).items() if v is not None}
        if not given:
            raise
        raise SpecError(source, [_from_flag(p, given) for p in err.problems]) from None
    return resolve_paths(spec, source)


def _from_flag(problem: str, given: set[str]) -> str:
    """A problem with a key the command line gave (``--storage``, ``--warm-start``...), said so."""
    key = problem.split(":", 1)[0].split(".", 1)[0]
    return f"{problem} (from --{key.replace('_', '-')})" if key in given else problem


class _SpecLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping: YAML requires keys to be distinct, and
    PyYAML would keep the last one silently (a merge key ``<<`` may still be overridden)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, typing.Hashable):  # the base loader says so
                continue
            if key in first:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {shown(key)} appears twice in one mapping (first on line {first[key]}); remove one", key_node.start_mark
                )
            first[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


# ``1e-5`` is a number in YAML 1.2 but a string in PyYAML's YAML 1.1, which wants ``1.0e-5``; values are taken as
# they are written (no string becomes a number later), so the spec reads it as the number everyone means.
_SpecLoader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))


def load_yaml(text: str) -> Any:
    """A YAML document as Python values, refusing duplicate keys (``yaml.YAMLError``)."""
    return yaml.load(text, Loader=_SpecLoader)


def describe_yaml_error(err: yaml.YAMLError) -> str:
    """Where and what, in one line."""
    mark = getattr(err, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    return f"{where}not valid YAML: {getattr(err, 'problem', None) or err}"


_HUB_PART = r"[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?"


def is_hub_id(text: str, owner: bool = False) -> bool:
    """``NAME`` or ``OWNER/NAME`` as the Hub allows it (``owner``: ``OWNER/`` required)."""
    pattern = rf"{_HUB_PART}/{_HUB_PART}" if owner else rf"(?:{_HUB_PART}/)?{_HUB_PART}"
    return re.fullmatch(pattern, text) is not None and "--" not in text and ".." not in text and not text.endswith(".git")


def resolve_paths(spec: SweepSpec, source: str = "<spec>") -> SweepSpec:
    """Make local paths absolute (``~`` and ``~user`` expanded, links resolved), check that data files are files,
    and that a model or dataset that is not local is named as the Hub names one (before anything starts)."""
    problems = []
    data, model, storage = spec.data, spec.model, spec.storage
    if data.files is not None:
        files = dict(data.files)
        for split, f in data.files.items():
            if is_uri(f):  # object storage: read (and checked) where the data is loaded
                continue
            try:
                files[split] = str(regular_file(f))
            except ValueError as err:
                relative = "" if Path(f).is_absolute() or f.startswith("~") else f" (relative paths are from {Path.cwd()})"
                problems.append(f"data.files.{split}: {shown(f)}: {err}{relative}")
        data = data.model_copy(update={"files": files})
    if data.hub_id is not None and not is_hub_id(data.hub_id):
        problems.append(f"data.hub_id: {shown(data.hub_id)} is not a Hub dataset id (NAME or OWNER/NAME: letters, digits, '-', '_', '.')")
    if model.name is not None:
        try:
            folder = local_path(model.name)
        except ValueError as err:
            problems.append(f"model.name: {shown(model.name)}: {err}")
        else:
            if folder.is_dir():
                model = model.model_copy(update={"name": str(folder)})
            elif model.name.startswith((".", "/", "~")):
                problems.append(f"model.name: no such model directory {shown(model.name)}")
            elif not is_hub_id(model.name):
                problems.append(
                    f"model.name: {shown(model.name)} is neither a local model folder nor a Hub model id (NAME or OWNER/NAME: "
                    "letters, digits, '-', '_', '.')"
                )
    if not is_uri(storage):
        try:
            storage = str(local_path(storage))
        except ValueError as err:
            problems.append(f"storage: {shown(storage)}: {err}")
    warm_start = []
    for i, path in enumerate(spec.warm_start):
        if not is_uri(path):
            try:
                path = str(local_path(path))
            except ValueError as err:
                problems.append(f"warm_start.{i}: {shown(path)}: {err}")
        warm_start.append(path)
    if problems:
        raise SpecError(source, problems)
    return spec.model_copy(update={"data": data, "model": model, "storage": storage, "warm_start": warm_start})


def dump_spec(spec: SweepSpec) -> str:
    """The resolved spec as YAML (stored with the sweep, read back by promotion)."""
    return yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False)
