"""Publishing to the Hugging Face Hub in a single commit, and fetching back exactly what was pushed.

The client is passed in (an ``HfApi``), so tests point it at a local server. The token is the
client's: from ``HF_TOKEN`` or ``hf auth login``; it is never written anywhere by this module.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hpo.core.errors import PromotionError


def copy_release(model_dir: Path, target: Path, files: list[str]) -> Path:
    """Dry run: exactly the files that would be uploaded, in ``target``."""
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for name in files:
        shutil.copy2(model_dir / name, target / name)
    return target


def publish(api: Any, repo_id: str, model_dir: Path, files: list[str], private: bool, work: Path, echo: Callable[[str], None]) -> tuple[str, str, Path]:
    """Create the repo if needed, push ``files`` in one commit, download that commit back.

    Returns (repo url, commit id, folder holding the downloaded revision). A failure before the
    commit lands leaves the repo as it was; the local model in ``model_dir`` is kept for a retry.
    """
    from huggingface_hub import CommitOperationAdd
    from huggingface_hub.errors import HfHubHTTPError

    retry = f"the retrained model is kept in {model_dir}; rerun the same command to retry without retraining"
    try:
        repo = with_retries(lambda: api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True), f"creating {repo_id}", echo)
        ops = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(model_dir / name)) for name in files]
        info = with_retries(
            lambda: api.create_commit(repo_id, operations=ops, commit_message="hpo promote: retrained sweep winner", repo_type="model"),
            f"the commit to {repo_id}",
            echo,
        )
    except HfHubHTTPError as err:
        raise PromotionError(f"publishing to {repo_id} failed, nothing was published (the commit is atomic): {_short(err)}; {retry}") from None
    except Exception as err:
        if not is_network_error(err):
            raise
        raise PromotionError(f"cannot reach the Hub at {api.endpoint} to publish {repo_id}: {_short(err)}; {retry}") from None
    commit = info.oid
    url = str(getattr(repo, "url", "")) or f"{api.endpoint}/{repo_id}"
    echo(f"published {len(files)} files to {url} in commit {commit}")
    target = work / f"published-{commit[:12]}"
    try:
        with_retries(
            lambda: api.snapshot_download(repo_id=repo_id, revision=commit, repo_type="model", local_dir=str(target)),
            f"the download of {repo_id}@{commit[:12]}",
            echo,
        )
    except Exception as err:
        if not (isinstance(err, HfHubHTTPError) or is_network_error(err)):
            raise
        raise PromotionError(
            f"published {repo_id}@{commit} but could not download it back to verify: {_short(err)}; rerun the same command to verify "
            "(it republishes the kept model without retraining)"
        ) from None
    return url, commit, target


# Answers worth asking again: rate limited, or the server (or a proxy before it) failing for a while.
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_CONNECTION_ERRORS = {"RequestError", "TransportError", "ConnectionError", "TimeoutException", "Timeout", "RemoteProtocolError"}


def is_transient(err: BaseException) -> bool:
    """A failure the same request may not meet again: a transient HTTP status, a reset or refused connection,
    a time-out. (A missing local file or a 4xx answer is not.)"""
    status = getattr(getattr(err, "response", None), "status_code", None)
    if status is not None:
        return status in TRANSIENT_STATUS
    names = {c.__name__ for c in type(err).__mro__}
    return isinstance(err, (ConnectionError, TimeoutError)) or bool(names & _CONNECTION_ERRORS)


def with_retries(
    call: Callable[[], Any], what: str, echo: Callable[[str], None], attempts: int = 4, first_wait_s: float = 1.0, sleep: Callable[[float], None] = time.sleep
) -> Any:
    """``call()``, asked again after a transient failure, waiting 1, 2, 4 s between attempts; each retry is said
    in one line. Any other failure, or the last attempt's, is raised as it came."""
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except Exception as err:
            if attempt == attempts or not is_transient(err):
                raise
            wait = first_wait_s * 2 ** (attempt - 1)
            echo(f"the Hub failed {what} ({_short(err)[:160]}); retrying in {wait:g} s (attempt {attempt + 1} of {attempts})")
            sleep(wait)
    raise AssertionError("unreachable")  # the loop returns or raises


def is_network_error(err: BaseException) -> bool:
    """A connection, DNS, TLS or time-out failure, whichever HTTP client raised it (httpx, requests...)."""
    names = {c.__name__ for c in type(err).__mro__}
    return isinstance(err, (OSError, TimeoutError)) or bool(names & {"RequestError", "TransportError", "ConnectionError", "TimeoutException", "Timeout"})


def _short(err: Exception) -> str:
    return str(err).splitlines()[0][:300]
