# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # What a sweep did
#
# The trials, their learning curves against ASHA's rungs, the best configuration, which
# hyperparameters mattered, the class balance of the data and, once `hpo promote` ran, the test
# confusion matrix. Works on a finished sweep and on one still running.
#
# Point it at a sweep with `HPO_EXPERIMENT=runs/NAME` (or papermill's `-p EXPERIMENT runs/NAME`).
# Each figure is also saved, under a stable name, into `HPO_FIGURES` (default `EXPERIMENT/hpo/figures`;
# for a sweep in object storage, a folder on this machine).
# The `.ipynb` is stored without outputs and paired with `sweep_analysis.py` (jupytext): edit either,
# then `jupytext --sync notebooks/sweep_analysis.ipynb`.

# %% tags=["parameters"]
import os

EXPERIMENT = os.environ.get("HPO_EXPERIMENT", "../runs/quickstart")
FIGURES = os.environ.get("HPO_FIGURES", "")  # empty: EXPERIMENT/hpo/figures

# %%
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless; each figure is saved, then shown from its file
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Image, display

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm, imported by optuna, without ipywidgets
import optuna
from optuna.trial import TrialState

from hpo.sweep.baseline import describe as describe_baselines
from hpo.sweep.baseline import read as read_baselines
from hpo.analysis.dashboard import open_storage
from hpo.core.errors import HpoError
from hpo.core.results import stored_model
from hpo.core.results import CONVERGED, FINISHED, STOPPED, load_sweep

sweep = load_sweep(EXPERIMENT)  # a local folder or s3:// / gs:// URI
spec = sweep.spec
METRIC, MODE = spec.metric, spec.mode
figures = Path(FIGURES or sweep.path.mirror("hpo", "figures"))  # on this machine, also for a remote sweep
figures.mkdir(parents=True, exist_ok=True)
COLORS = {FINISHED: "tab:green", CONVERGED: "tab:blue", STOPPED: "tab:orange"}  # anything else (errored, running): grey


def save(fig, name: str) -> None:
    """Keep the figure as FIGURES/name and show that file."""
    fig.savefig(figures / name, dpi=110, bbox_inches="tight")
    plt.close(fig)
    display(Image(filename=str(figures / name)))


print(f"sweep {spec.name!r} at {EXPERIMENT}: {len(sweep.trials)} trials, metric {METRIC} ({MODE}); figures in {figures}")

# %% [markdown]
# ## Trials
#
# Best first. `rounds` counts evaluation rounds; ASHA stopped the `stopped (ASHA)` trials before
# `rounds_planned`.

# %%
names = list(spec.search_space)
order = [t for t, _, _ in sweep.ranked()] + [t for t in sweep.trials if t.best(METRIC, MODE) is None]
rows = []
for t in order:
    best = t.best(METRIC, MODE)
    rows.append(
        {
            "trial_id": t.trial_id,
            **{n: t.params.get(n) for n in names},
            "rounds": t.rounds_done,
            "rounds_planned": t.rounds_planned,
            f"best_{METRIC}": best[0] if best else None,
            "best_round": best[1] if best else None,
            "outcome": t.outcome,
        }
    )
trials = pd.DataFrame(rows, columns=["trial_id", *names, "rounds", "rounds_planned", f"best_{METRIC}", "best_round", "outcome"])
trials.to_csv(figures / "trials_table.csv", index=False)
print(", ".join(f"{n} {outcome}" for outcome, n in trials["outcome"].value_counts().items()))
trials

# %% [markdown]
# ## Learning curves and ASHA's rungs
#
# ASHA compares trials at its rungs (`grace_period * reduction_factor**k` rounds, below `max_rounds`)
# and stops the weaker ones there, and any trial still predicting one class; a cross marks where a
# stopped trial ended. With `patience`, a trial whose metric stopped improving ends `converged`.
# The horizontal lines are the sweep's baselines on the same validation split (`hpo/baselines.json`):
# TF-IDF + logistic regression and the majority class.

# %%
sched = spec.scheduler
rungs = sched.rungs()  # the rounds at which Ray's ASHAScheduler compares trials (none for fifo)
winner_id = order[0].trial_id if sweep.ranked() else None
print(f"ASHA rungs at rounds {', '.join(f'{r:g}' for r in rungs)}" if rungs else f"no rungs: scheduler {sched.type}")
print("stopped by ASHA: " + (", ".join(f"{t.trial_id} at round {t.rounds_done}" for t in order if t.outcome == STOPPED) or "none"))

baselines = read_baselines(EXPERIMENT)
if baselines is None:
    print("no baselines stored for this sweep (hpo/baselines.json)")
else:
    print(describe_baselines(baselines))

fig, ax = plt.subplots(figsize=(9, 5))
if baselines is not None and METRIC in baselines["tfidf"]:
    ax.axhline(baselines["tfidf"][METRIC], color="black", linestyle="-.", linewidth=1.2, label=f"TF-IDF baseline (C={baselines['tfidf']['C']:g})")
    ax.axhline(baselines["majority"][METRIC], color="black", linestyle=":", linewidth=1, label="majority-class baseline")
for k, rung in enumerate(rungs):
    ax.axvline(rung, color="grey", linestyle="--", linewidth=1, label="ASHA rung" if k == 0 else None)
for t in order:
    xs = [r["training_iteration"] for r in t.rounds if r.get(METRIC) is not None]
    ys = [r[METRIC] for r in t.rounds if r.get(METRIC) is not None]
    if not xs:
        continue
    color = COLORS.get(t.outcome, "grey")
    best = t.trial_id == winner_id
    ax.plot(xs, ys, marker="o", markersize=3, color=color, linewidth=2.5 if best else 1, alpha=1 if best else 0.7,
            label=f"{t.trial_id}: {t.outcome}{', best' if best else ''}")
    if t.outcome == STOPPED:
        ax.plot(xs[-1], ys[-1], marker="X", markersize=10, color="tab:red", linestyle="none")
ax.set_xlabel("round (training_iteration)")
ax.set_ylabel(METRIC)
ax.set_title(f"{spec.name}: {METRIC} per round; rungs at {', '.join(f'{r:g}' for r in rungs) or 'none (fifo)'}")
ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
save(fig, "learning_curves.png")

# %% [markdown]
# ## Best configuration
#
# The winner rule `hpo promote` uses: the (trial, round) with the best value of the sweep's metric.

# %%
if sweep.ranked():
    trial, value, rnd = sweep.winner()
    print(f"best: trial {trial.trial_id}, {METRIC}={value:.4f} at round {rnd} of {trial.rounds_done} ({trial.outcome})")
    display(pd.Series({**trial.params, "round": rnd, METRIC: value}, name=trial.trial_id, dtype=object).to_frame())
else:
    print("no trial has reported a round yet")

# %% [markdown]
# ## Hyperparameter importance
#
# From the Optuna study in `hpo/optuna.journal`, with Optuna's default evaluator (PED-ANOVA). Only
# trials that ran to the end (COMPLETE) count; ASHA's stopped trials are PRUNED and left out, so a
# sweep where ASHA stopped nearly everything has too few trials to say anything.

# %%
MIN_COMPLETE = 3  # PED-ANOVA compares its top trials (at least 2) with all of them: fewer says nothing
optuna.logging.set_verbosity(optuna.logging.WARNING)
importance: dict[str, float] = {}
try:
    study = optuna.load_study(study_name=spec.name, storage=open_storage(EXPERIMENT))
except (HpoError, KeyError) as err:  # KeyError: the journal holds no study of that name
    study = None
    print(f"no Optuna study to read: {err}")
if study is not None:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    pruned = study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))
    if len(complete) < MIN_COMPLETE:
        print(
            f"importance needs at least {MIN_COMPLETE} trials that ran to the end; the study has {len(complete)} "
            f"complete and {len(pruned)} pruned by ASHA. Run more trials (budget.num_trials) to see it."
        )
    else:
        importance = optuna.importance.get_param_importances(study)
if importance:
    fig, ax = plt.subplots(figsize=(7, 0.5 + 0.5 * len(importance)))
    ax.barh(list(importance)[::-1], list(importance.values())[::-1], color="tab:blue")
    ax.set_xlabel("importance (PED-ANOVA, normalized)")
    ax.set_title(f"{spec.name}: hyperparameter importance from {len(complete)} complete trials")
    save(fig, "importance.png")
    display(pd.Series(importance, name="importance").to_frame())

# %% [markdown]
# ## The metric against the most important hyperparameters
#
# Each trial's best value; learning rates (and other log-uniform parameters) on a log axis. Without
# importances, the first parameters of the search space.

# %%
top = [n for n in importance if n in names][:2] or names[:2]
scored = trials.dropna(subset=[f"best_{METRIC}"])
fig, axes = plt.subplots(1, len(top), figsize=(5.5 * len(top), 4), squeeze=False)
for ax, name in zip(axes[0], top):
    for outcome, group in scored.groupby("outcome"):
        ax.scatter(group[name], group[f"best_{METRIC}"], color=COLORS.get(outcome, "grey"), label=outcome, s=40)
    if winner_id is not None:
        w = scored[scored.trial_id == winner_id]
        ax.scatter(w[name], w[f"best_{METRIC}"], marker="*", s=250, facecolors="none", edgecolors="black", label="best")
    if getattr(spec.search_space[name], "type", "") == "loguniform":
        ax.set_xscale("log")
    ax.set_xlabel(name + (f" (importance {importance[name]:.2f})" if name in importance else ""))
    ax.set_ylabel(f"best {METRIC}")
    ax.legend(fontsize=8)
fig.suptitle(f"{spec.name}: best {METRIC} per trial")
save(fig, "metric_vs_param.png")

# %% [markdown]
# ## Class balance of the data
#
# Per split, as the sweep prepared it (`hpo/data.json`). Promotion retrains on a balanced training
# set (`promotion.balance`).

# %%
counts = pd.DataFrame(sweep.data.get("class_counts", {}))
if counts.empty:
    print("no class counts stored for this sweep (hpo/data.json)")
else:
    counts = counts[sorted(counts, key=["train", "validation", "test"].index)]
    fig, ax = plt.subplots(figsize=(7, 4))
    counts.T.plot.bar(ax=ax, rot=0)
    for container in ax.containers:
        ax.bar_label(container, fontsize=8)
    ax.set_ylabel("examples")
    ax.set_title(f"{spec.name}: examples per class and split")
    save(fig, "class_balance.png")
    display(counts)

# %% [markdown]
# ## Test confusion matrix of the promoted model
#
# Only after `hpo promote` (dry run or published): read from the retrained model's
# `provenance.json` under `EXPERIMENT/hpo/promotion/model/`.

# %%
model_dir = stored_model(EXPERIMENT)
provenance = model_dir.child("provenance.json").read_json() if model_dir.child("provenance.json").is_file() else {}
test = provenance.get("test_metrics", {})
if not model_dir.child("promotion.json").is_file() or "test_confusion" not in test:
    print(f"not promoted yet (nothing in {model_dir}); run `hpo promote {EXPERIMENT} --dry-run DIR` first")
else:
    labels = provenance.get("spec", {}).get("data", {}).get("label_names") or sweep.data["label_names"]
    matrix = pd.DataFrame(test["test_confusion"], index=[f"true {n}" for n in labels], columns=[f"predicted {n}" for n in labels])
    fig, ax = plt.subplots(figsize=(1.6 * len(labels) + 2, 1.4 * len(labels) + 1.5))
    ax.imshow(matrix.values, cmap="Blues")
    for i in range(len(labels)):
        for j in range(len(labels)):
            v = matrix.values[i, j]
            ax.text(j, i, str(v), ha="center", va="center", color="white" if v > matrix.values.max() / 2 else "black")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    trial_id = provenance.get("best_trial", {}).get("trial_id", "?")
    ax.set_title(f"test accuracy {test['test_accuracy']:.3f} (trial {trial_id})")
    save(fig, "confusion_matrix.png")
    display(matrix)

# %% [markdown]
# ## Calibration of the promoted model
#
# The reliability diagram: test predictions grouped into 15 equal-width bins of confidence (the top
# class's probability); a calibrated model's bars sit on the diagonal. Expected calibration error is the
# bars' average distance from it, weighted by how many predictions each holds.

# %%
reliability = test.get("test_reliability")
if not reliability:
    print("no calibration to show: not promoted yet, or promoted before calibration was measured")
else:
    bins = reliability["bins"]
    edges = [k / bins for k in range(bins)]
    filled = [k for k, c in enumerate(reliability["count"]) if c]
    fig, (ax, ax_n) = plt.subplots(2, 1, figsize=(6, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.bar([edges[k] for k in filled], [reliability["accuracy"][k] for k in filled], width=1 / bins, align="edge",
           color="tab:blue", edgecolor="black", label="accuracy in the bin")
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="calibrated")
    ax.scatter([reliability["confidence"][k] for k in filled], [reliability["accuracy"][k] for k in filled], color="tab:red", s=15, zorder=3, label="mean confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(f"reliability on the test split: ECE {test['test_ece']:.3f}, Brier {test['test_brier']:.3f}")
    ax.legend(fontsize=8, loc="upper left")
    ax_n.bar(edges, reliability["count"], width=1 / bins, align="edge", color="tab:grey", edgecolor="black")
    ax_n.set_xlabel("confidence (probability of the predicted class)")
    ax_n.set_ylabel("texts")
    ax_n.set_xlim(0, 1)
    save(fig, "reliability.png")
    print(f"expected calibration error {test['test_ece']:.4f} ({bins} bins), Brier score {test['test_brier']:.4f}")

# %%
print("saved:", ", ".join(sorted(p.name for p in figures.iterdir())))
