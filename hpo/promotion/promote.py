"""Promotion: pick the sweep's winner, retrain it on the full balanced training set with the same
training code, evaluate on the held-out test split, gate, publish in one commit, verify the copy.

Everything heavy is kept in ``WORK`` (default ``EXPERIMENT/hpo/promotion``; for a sweep in object
storage, a folder on this machine whose model is also stored at ``EXPERIMENT/hpo/promotion/model``): a
retry after a failed upload or verification, from this machine or another, reuses the retrained model
instead of training again.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from hpo.core.errors import ExperimentError, GateError, HpoError, OutOfMemory, PromotionError, UsageError, is_out_of_memory
from hpo.core.paths import folder_or_nothing
from hpo.core.results import PROMOTED_MARKER, Sweep, load_sweep, stored_model
from hpo.core.spec import is_hub_id
from hpo.core.storage import META_DIR, Location
from hpo.promotion.gates import Measured, pipeline_labels, run_gates
from hpo.tune.run import check_address
from trainables.errors import shown
from trainables.report import LATENCY



@dataclass
class PromoteOptions:
    repo_id: str | None = None
    dry_run_dir: str | None = None
    private: bool = False
    work_dir: str | None = None
    wandb_mode: str | None = None
    gpus: int | None = None  # GPUs for the retrain; None: all of this machine's
    address: str | None = None  # Ray cluster for the finalists' run; default: an embedded local Ray
    hub: Any = None  # a huggingface_hub.HfApi; the default client when None
    wandb_module: Any = None


@dataclass
class PromotionResult:
    trial_id: str
    best_round: int
    model_dir: Path
    metrics: dict[str, Any]
    published_metrics: dict[str, Any]
    gates: list[tuple[str, str, bool]]
    url: str | None = None
    commit: str | None = None
    files: list[str] = field(default_factory=list)
    evidence: dict[str, Any] = field(default_factory=dict)  # hpo.promotion.evidence.collect: baselines, leakage, latency, cost
    finalists: Any = None  # hpo.promotion.finalists.Outcome, when finalists ran
    comparison: Any = None  # hpo.promotion.champion.Comparison, when the repo held a model


# ------------------------------------------------------------------------------------ the steps
def _check_target(opts: PromoteOptions) -> PromoteOptions:
    """The command line's targets, before anything is read: a Hub repo id, and folders that can be folders
    (returned as absolute paths, ``~`` expanded)."""
    if opts.repo_id is not None and not is_hub_id(opts.repo_id, owner=True):
        raise UsageError(
            f"--repo-id {shown(opts.repo_id)} is not a Hub repo id: use OWNER/NAME (letters, digits, '-', '_', '.'; at most 96 each)"
        )
    folders = {}
    for flag, key in (("--dry-run", "dry_run_dir"), ("--work-dir", "work_dir")):
        given = getattr(opts, key)
        try:
            folders[key] = given if given is None else str(folder_or_nothing(given))
        except ValueError as err:
            raise UsageError(f"{flag} {shown(given)}: {err}; give a new or empty folder") from None
    return dataclasses.replace(opts, **folders)


def check_dry_run_dir(target: Path, sweep: Sweep) -> None:
    """``--dry-run DIR`` replaces DIR's content: only a new or empty folder, or an earlier dry run of this
    sweep's promotion, may be replaced; never the sweep itself or a folder inside it."""
    from hpo.promotion.card import MODEL_FILES

    target = target.resolve()
    if sweep.path.is_local:
        home = sweep.path.local_path()
        if target == home or home in target.parents or target in home.parents:
            raise UsageError(f"--dry-run {target}: that is the sweep folder {home}, inside it or above it; give a folder of its own, e.g. promoted/{sweep.spec.name}")
    if not target.exists():
        return
    if not target.is_dir():
        raise UsageError(f"--dry-run {target}: a file is there; give a new or empty folder")
    names = {p.name for p in target.iterdir()}
    if not names:
        return
    release = {*MODEL_FILES, "special_tokens_map.json", "vocab.txt", "README.md", "provenance.json"}
    try:
        earlier = json.loads((target / "provenance.json").read_text()).get("sweep") == sweep.spec.name
    except (OSError, ValueError, AttributeError):
        earlier = False
    if not earlier or not names <= release:
        raise UsageError(
            f"--dry-run {target}: the folder holds files that are not an earlier dry run of this promotion "
            f"({', '.join(sorted(names - release)[:5]) or 'no provenance.json of sweep ' + repr(sweep.spec.name)}); "
            "it would be replaced, so give a new or empty folder"
        )


def _hub(opts: PromoteOptions) -> Any:
    if opts.hub is None:
        from huggingface_hub import HfApi

        opts.hub = HfApi()
    return opts.hub


def _check_token(opts: PromoteOptions) -> None:
    """Fail before retraining when publishing is impossible. The token itself is never printed."""
    if opts.repo_id is None:
        return
    api = _hub(opts)
    token = api.token
    if token is None:
        from huggingface_hub import get_token

        token = get_token()
    if not token:
        raise PromotionError("no Hugging Face token: set HF_TOKEN or run `hf auth login`, then rerun the same command")
    from hpo.promotion.hub import is_network_error

    try:  # reachable, and the token valid: found now, not after the retrain
        api.whoami(token=token)
    except Exception as err:
        if is_network_error(err):
            raise PromotionError(
                f"cannot reach the Hugging Face Hub at {api.endpoint}: {' '.join(str(err).split())[:200]}; nothing was retrained; "
                "check the network (or HF_ENDPOINT) and rerun the same command"
            ) from None
        raise PromotionError(f"the Hub at {api.endpoint} refused the token ({type(err).__name__}); set a valid HF_TOKEN or run `hf auth login`") from None


def show_top(sweep: Sweep, echo: Callable[[str], None], n: int = 5) -> None:
    from hpo.analysis.report import make_console, trials_table

    echo(f"winner rule: best {sweep.spec.metric} ({sweep.spec.mode}) over every evaluation round of every trial")
    budget = sweep.latency_budget()
    if budget is not None:
        echo(f"  among the trials whose {LATENCY} at that round is within promotion.gate.max_latency_ms_p95 ({budget:g} ms)")
    make_console().print(trials_table(sweep, limit=n))


def _work_dir(sweep: Sweep, opts: PromoteOptions) -> Path:
    return Path(opts.work_dir) if opts.work_dir else sweep.path.mirror(META_DIR, "promotion")


def _trained_marker(work: Path, stored: Location) -> dict[str, Any] | None:
    """The kept model's marker; a model kept only in the sweep's storage is brought here first."""
    marker = work / "model" / PROMOTED_MARKER
    if not marker.is_file() and stored.child(PROMOTED_MARKER).is_file():
        stored.download_dir(work / "model")
    if marker.is_file() and (work / "model" / "config.json").is_file():
        return json.loads(marker.read_text())
    return None


def _keep(model_dir: Path, stored: Location, names: list[str] | None = None) -> None:
    """Store the model folder (or just ``names`` in it) with the sweep; a no-op for a local sweep."""
    if names is None:
        stored.upload_dir(model_dir)
    else:
        for name in names:
            stored.child(name).upload_file(model_dir / name)


def prepared_data(sweep: Sweep, echo: Callable[[str], None]) -> Any:
    """The sweep's data, loaded, checked against the sweep's fingerprint and tokenized (``Prepared``)."""
    from hpo.sweep.prepare import prepare

    prepared = prepare(sweep.spec, echo)
    stored = sweep.data.get("fingerprint")
    if stored and stored != prepared.splits.fingerprint:
        raise PromotionError(
            f"the data changed since the sweep (fingerprint {prepared.splits.fingerprint[:12]} != {stored[:12]}); "
            "promote from the data the sweep saw"
        )
    return prepared


def retrain(
    sweep: Sweep, trial_id: str, params: dict, rounds: int, work: Path, echo: Callable[[str], None], prepared: Any = None, gpus: int | None = None
) -> dict[str, Any]:
    """Retrain from the base model on train+validation (balanced), with the trials' training loop, on
    ``gpus`` GPUs (default: all of this machine's; 0: the CPU; above 1: data-parallel)."""
    import torch

    from trainables.data import Tokenized, balance
    from trainables.trial import build_state
    from trainables.training import pick_device, train_rounds

    spec = sweep.spec
    gpus = available_gpus(gpus)
    prepared = prepared or prepared_data(sweep, echo)
    data = prepared.data
    full = Tokenized.concat([data.train, data.validation])
    idx, weights, report = balance(full.labels, data.label_names, spec.promotion.balance, spec.data.seed)
    if report["dropped"]:
        echo(f"warning: balance '{report['strategy']}' drops {report['dropped']} of {len(full)} training texts: {report['before']} -> {report['after']}")
    train = full.select(idx)
    hp = spec.training.updated(params)
    out = work / "model"
    if out.exists():
        shutil.rmtree(out)
    started = time.perf_counter()
    if gpus > 1:  # data-parallel, one worker per GPU, through the same training loop as the trials
        from trainables.parallel import retrain_parallel

        device_type = "cuda"
        echo(f"retraining {trial_id} for {rounds} round(s) on {len(train)} texts ({gpus} GPUs, data-parallel)")
        try:
            curve = retrain_parallel(source=prepared.source, label_names=data.label_names, hp=hp, train=train, special=data.special, rounds=rounds,
                                     schedule_rounds=spec.planned_rounds(hp.epochs), class_weights=weights, out=out, workers=gpus, use_gpu=True)
        except Exception as err:
            if is_out_of_memory(err):
                raise OutOfMemory(f"the retrain of {trial_id}", "rerun the same command: the finalists' runs are kept, the retrain starts again") from err
            raise
        for i, figures in enumerate(curve, 1):
            echo(f"  round {i}/{rounds}: train_loss {figures['train_loss']:.4f} ({figures['train_seconds']:.0f}s)")
    else:
        device = pick_device(gpus > 0)
        device_type = device.type
        state = build_state(prepared.source, data.label_names, hp, len(train), spec.planned_rounds(hp.epochs), device)
        echo(f"retraining {trial_id} for {rounds} round(s) on {len(train)} texts ({device.type})")
        class_weights = torch.from_numpy(weights) if weights is not None else None
        for figures in train_rounds(state, hp, train, data.special, rounds, device, class_weights):
            echo(f"  round {state.rounds_done}/{rounds}: train_loss {figures['train_loss']:.4f} ({figures['train_seconds']:.0f}s)")
        state.model.to("cpu").save_pretrained(out)
    retrain_seconds = time.perf_counter() - started
    truncate_as_trained(prepared.tokenizer, hp)
    prepared.tokenizer.save_pretrained(out)
    marker = {
        "trial_id": trial_id,
        "round": rounds,
        "params": params,
        "training": hp.model_dump(),
        "fingerprint": prepared.splits.fingerprint,
        "balance": report,
        "retrain": {"seconds": round(retrain_seconds, 1), "device": device_type, "gpus": gpus},  # its share of the cost
    }
    (out / PROMOTED_MARKER).write_text(json.dumps(marker, indent=2, default=str))
    return marker


def truncate_as_trained(tokenizer: Any, hp: Any) -> None:
    """Make the tokenizer saved with the model truncate where training did: at ``max_length``, keeping the tail
    of a long text for ``truncation: tail`` (``truncation_side: left`` in its config), else its head. A pipeline
    has no head_tail: with it, a user keeps both ends as the model card shows."""
    tokenizer.model_max_length = hp.max_length
    tokenizer.truncation_side = "left" if hp.truncation == "tail" else "right"
    if hp.truncation == "tail":
        tokenizer.init_kwargs["truncation_side"] = "left"  # what save_pretrained writes
    else:
        tokenizer.init_kwargs.pop("truncation_side", None)


def available_gpus(wanted: int | None) -> int:
    """The GPUs a retrain uses: ``wanted`` (checked against this machine's), or all of them."""
    import torch

    have = torch.cuda.device_count()
    if wanted is None:
        return have
    if wanted > have:
        raise UsageError(f"--gpus {wanted}: this machine has {have} GPU(s); give at most {have} (0: retrain on the CPU)")
    return wanted


def evaluate_folder(folder: Path, splits: Any, training: dict[str, Any], device_name: str = "cpu") -> dict[str, Any]:
    """Test metrics of a saved model folder, tokenized with that folder's own tokenizer: the same
    evaluation code as the trials' validation. ``splits`` is ``trainables.data.load_splits``'s result."""
    import torch

    from hpo.core.calibration import calibration_metrics
    from hpo.core.spec import TrainingSpec
    from trainables.data import special_ids, tokenize
    from trainables.model import load_classifier, load_tokenizer
    from trainables.training import classification_metrics, predict

    hp = TrainingSpec.model_validate(training)
    tokenizer = load_tokenizer(str(folder))
    test = tokenize(tokenizer, splits.test, hp.max_length, (hp.truncation,))
    model = load_classifier(str(folder), splits.label_names).to(device_name)
    device = torch.device(device_name)
    logits = predict(model, test, special_ids(tokenizer), hp.max_length, hp.eval_batch_size, device, truncation=hp.truncation)  # fp32
    metrics = classification_metrics(logits, test.labels, splits.label_names, "test")
    metrics.update(calibration_metrics(logits, test.labels, "test"))
    return metrics


def differing_metrics(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """The metrics whose values differ between ``a`` and ``b`` (one missing counts as differing)."""
    return [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def promote(path: str, opts: PromoteOptions, echo: Callable[[str], None] = print) -> PromotionResult:
    from hpo.promotion import card
    from hpo.promotion import evidence
    from hpo.promotion import hub

    opts = _check_target(opts)
    available_gpus(opts.gpus)  # a wrong --gpus is refused before anything is loaded
    check_address(opts.address)
    sweep = load_sweep(path)
    if sweep.damaged:
        raise ExperimentError(
            f"{sweep.path}: files of the sweep are damaged, so its winner is not known for sure: {'; '.join(sweep.damaged)}. "
            "Put them back from a copy, or delete the damaged trial's folder, then rerun the same command"
        )
    trial, value, rnd = sweep.winner(ended_only=True, within_budget=True)
    if opts.dry_run_dir:
        check_dry_run_dir(Path(opts.dry_run_dir), sweep)
    show_top(sweep, echo)
    echo(f"winner: {trial.trial_id} {sweep.spec.metric}={value:.4f} at round {rnd}, config {trial.params}")
    _check_token(opts)
    prepared: list[Any] = []  # loaded and tokenized once, when the finalists or the retrain need it

    def data() -> Any:
        if not prepared:
            prepared.append(prepared_data(sweep, echo))
        return prepared[0]

    from hpo.promotion.finalists import run_finalists

    finalists = run_finalists(sweep, data, opts.address, echo)
    if finalists is not None:
        trial, value, rnd = finalists.chosen.trial, finalists.chosen.sweep_value, finalists.chosen.rounds
    work = _work_dir(sweep, opts)
    work.mkdir(parents=True, exist_ok=True)
    # A sweep in object storage keeps its promoted model there too; a local one where WORK is.
    stored = stored_model(sweep.path) if not (opts.work_dir and sweep.path.is_local) else Location.parse(work / "model")
    from hpo.core.storage import fetch
    from trainables.data import load_splits

    splits = load_splits(sweep.spec.data, fetch)  # once: both the local and the published copy are scored on it
    model_dir = work / "model"
    marker = _trained_marker(work, stored)
    metrics = None
    if marker and marker["trial_id"] == trial.trial_id and marker["round"] == rnd:
        echo(f"reusing the retrained model in {model_dir} (delete it to retrain)")
        try:
            metrics = evaluate_folder(model_dir, splits, marker["training"])
        except HpoError as err:  # a truncated or corrupt file: retrain rather than fail
            echo(f"warning: the kept model is unreadable ({err}); retraining")
    if metrics is None:
        marker = retrain(sweep, trial.trial_id, trial.params, rnd, work, echo, data(), opts.gpus)
        _keep(model_dir, stored)
        metrics = evaluate_folder(model_dir, splits, marker["training"])
    measured = evidence.collect(sweep, splits, metrics, model_dir, marker, echo)
    labels = list(sweep.data.get("label_names") or sweep.spec.data.label_names)
    gates = run_gates(Measured(model_dir, metrics, labels, measured), sweep.spec.promotion.gate)
    card.print_metrics(metrics, sweep, echo)
    evidence.print_evidence(measured, sweep.spec.promotion.gate, echo)
    card.print_gates(gates, echo)
    failed = [g for g in gates if not g[2]]
    if failed:
        raise GateError("gate failed, nothing published: " + "; ".join(f"{n}: {v}" for n, v, _ in failed))
    comparison = None
    if opts.repo_id:
        from hpo.promotion.champion import compare_with_hub

        comparison = compare_with_hub(_hub(opts), opts.repo_id, model_dir, splits, sweep.spec.promotion.require_improvement, work, echo)
    extras = _card_extras(finalists, comparison)
    example = card.example_text(sweep.spec, splits.test.texts)
    files = card.write_release_files(
        model_dir, sweep, trial, value, rnd, marker, metrics, opts.repo_id or Path(opts.dry_run_dir).name, measured, extras, example
    )
    _keep(model_dir, stored, ["README.md", "provenance.json"])
    if opts.dry_run_dir:
        target = hub.copy_release(model_dir, Path(opts.dry_run_dir), files)
        url, commit = None, None
        echo(f"dry run: wrote {len(files)} files to {target}")
    else:
        url, commit, target = hub.publish(_hub(opts), opts.repo_id, model_dir, files, opts.private or sweep.spec.promotion.private, work, echo)
    published = evaluate_folder(target, splits, marker["training"])
    card.print_side_by_side(metrics, published, echo)
    differ = differing_metrics(metrics, published)
    if differ:
        raise PromotionError(f"the published copy scores differently from the local model on {differ}: see the table above")
    predicted = pipeline_labels(target, [sweep.spec.promotion.gate.sanity_examples[0].text] if sweep.spec.promotion.gate.sanity_examples else ["a test"])
    if any(label.startswith("LABEL_") for label in predicted):
        raise PromotionError(f"the published model's pipeline returns {predicted}, not the label names")
    echo("verified: the published copy's test metrics are identical to the local model's")
    result = PromotionResult(trial.trial_id, rnd, model_dir, metrics, published, gates, url, commit, files, measured, finalists, comparison)
    try:
        from hpo.sweep.tracking import dataset_ref, model_ref, tag_winner

        about = {"trial_id": trial.trial_id, "round": rnd, "params": trial.params, "fingerprint": sweep.data.get("fingerprint"), "hub_url": url, "hub_commit": commit}
        model = model_ref(sweep.spec.name, opts.repo_id, commit, opts.dry_run_dir, {**about, **card.scalar_metrics(metrics)})
        card.log_to_wandb(sweep, opts, result, work, {"trial_id": trial.trial_id, "round": rnd, **trial.params}, dataset=dataset_ref(sweep.spec, sweep.data), model=model)
        tag_winner(sweep, trial.trial_id, opts.wandb_mode, str(work), opts.wandb_module)
        if (work / "wandb").is_dir():
            stored.parent.child("wandb").upload_dir(work / "wandb")
    except Exception as err:  # the model is published (or written) and verified: W&B is a record of it
        echo(
            f"warning: the promotion succeeded, but logging it to W&B failed: {type(err).__name__}: {' '.join(str(err).split())[:200]}; "
            "check WANDB_API_KEY (or use --wandb-mode offline)"
        )
    return result


def _card_extras(finalists: Any, comparison: Any) -> list[Any]:
    """The card's sections (and provenance entries) for the finalists and the comparison with the Hub."""
    from hpo.promotion import champion
    from hpo.analysis import finalists as fin
    from hpo.promotion.card import CardExtra

    out = []
    if finalists is not None:
        out.append(CardExtra("finalists", fin.card_markdown(finalists), finalists.record()))
    if comparison is not None:
        out.append(CardExtra("previous_model", champion.card_markdown(comparison), comparison.record()))
    return out
