"""Services a sweep depends on, checked in seconds before any data is loaded or Ray is started.

* The Hugging Face Hub, when the spec names a Hub model or dataset that is not already in the local
  cache: unreachable is a network problem (exit 1) with the cause; a missing repo is a bad spec (exit 2).
* Weights & Biases, when runs would go online: unreachable means stop (``tracking.mode: online``) or
  fall back to offline with a warning and the ``wandb sync`` command (``auto``), so that no trial ever
  waits on a W&B time-out.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from hpo.core.errors import SpecError, Unreachable

__all__ = ["Unreachable", "check_hub", "check_wandb"]

TIMEOUT_S = 8.0


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _short(err: BaseException) -> str:
    return " ".join(f"{type(err).__name__}: {err}".split())[:300]


def check_hub(model_name: str | None, dataset_id: str | None, api: Any = None) -> None:
    """Each Hub repo the sweep reads must be reachable now, unless it is already cached."""
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    wanted = []
    if model_name and not os.path.isdir(model_name) and not isinstance(try_to_load_from_cache(model_name, "config.json"), str):
        wanted.append(("model", model_name, "model.name"))
    if dataset_id:
        wanted.append(("dataset", dataset_id, "data.hub_id"))
    if not wanted or _offline():  # offline: the cache is all there is, and the loaders say what is missing
        return
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi()
    for kind, repo_id, key in wanted:
        try:
            (api.model_info if kind == "model" else api.dataset_info)(repo_id, timeout=TIMEOUT_S)
        except HfHubHTTPError as err:
            if isinstance(err, RepositoryNotFoundError) or getattr(getattr(err, "response", None), "status_code", None) == 404:
                raise SpecError(key, [f"{key}: no {kind} {repo_id!r} on the Hub at {api.endpoint} (or it is private and no token is set)"]) from None
            raise Unreachable(f"the Hugging Face Hub answered {_short(err)} for {kind} {repo_id!r}; rerun when it answers") from None
        except Exception as err:  # connection refused, DNS, time-out, TLS: the network
            raise Unreachable(
                f"cannot reach the Hugging Face Hub at {api.endpoint} for {kind} {repo_id!r}: {_short(err)}; check the network "
                "(or HF_ENDPOINT), or use files already on this machine (a local model folder, data.files, HF_HUB_OFFLINE=1 with a filled cache)"
            ) from None


def wandb_url() -> str:
    return os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").rstrip("/")


def check_wandb(mode: str, requested: str, echo: Callable[[str], None], probe: Callable[[str], None] | None = None) -> str:
    """The W&B mode the sweep will really use. ``mode`` is the resolved one, ``requested`` what the spec or
    the command line asked for (``auto``, ``online``...)."""
    if mode != "online":
        return mode
    url = wandb_url()
    try:
        (probe or _http_probe)(url)
    except Exception as err:
        cause = _short(err)
        if requested == "auto":
            echo(
                f"warning: cannot reach W&B at {url} ({cause}); logging offline instead. Upload the runs later with "
                "`wandb sync` (the sweep prints the command at the end)"
            )
            return "offline"
        raise Unreachable(f"cannot reach W&B at {url}: {cause}; rerun with --wandb-mode offline and `wandb sync` later") from None
    return mode


def _http_probe(url: str) -> None:
    """Any HTTP answer means W&B is there; only a failure to connect (or a time-out) raises."""
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=TIMEOUT_S).close()
    except urllib.error.HTTPError:
        pass
