"""Tests of tests/hub_server.py, driven by the real huggingface_hub client."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from huggingface_hub import CommitOperationAdd, HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

try:
    from tests.hub_server import FakeHub, fake_hub, loopback_only, start_hub, stop_hub  # noqa: F401
except ImportError:  # tests/ is not a package: plain `pytest` puts tests/ itself on sys.path
    from hub_server import FakeHub, fake_hub, loopback_only, start_hub, stop_hub  # type: ignore[no-redef]  # noqa: F401

REPO = "test-user/tiny-model"

# huggingface_hub's LFS upload passes a file object as `data=` to httpx2, which warns about it.
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>' to upload raw bytes/text content:DeprecationWarning")


@pytest.fixture(autouse=True)
def _no_network_but_loopback(loopback_only: None) -> None:
    """Every test in this module fails if anything tries to reach a host other than 127.0.0.1."""


def _payload(seed: int = 0) -> dict[str, bytes]:
    rng = random.Random(seed)
    return {
        "model.safetensors": rng.randbytes(3 * 1024 * 1024),
        "notes.txt": f"trained with seed {seed}\n".encode(),
        "config.json": json.dumps({"hidden_size": 32, "seed": seed}).encode(),
    }


def _commit(api: HfApi, files: dict[str, bytes], message: str = "upload model"):
    ops = [CommitOperationAdd(path_in_repo=path, path_or_fileobj=data) for path, data in files.items()]
    return api.create_commit(REPO, operations=ops, commit_message=message)


def _read_dir(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and ".cache" not in p.relative_to(root).parts
    }


def test_create_repo_private_and_public(fake_hub: FakeHub) -> None:
    api = HfApi(endpoint=fake_hub.url, token=fake_hub.token)
    assert api.whoami()["name"] == "test-user"

    public = api.create_repo("test-user/public-model", repo_type="model", private=False, exist_ok=True)
    private = api.create_repo("private-model", private=True, exist_ok=True)  # no namespace: the token's user
    assert public.repo_id == "test-user/public-model"
    assert private.repo_id == "test-user/private-model"
    again = api.create_repo("test-user/public-model", private=False, exist_ok=True)
    assert again.repo_id == "test-user/public-model"

    repos = fake_hub.repos()
    assert (repos["test-user/public-model"].private, repos["test-user/private-model"].private) == (False, True)
    # Like the Hub, a new repo has an initial commit holding .gitattributes.
    assert [c.title for c in repos["test-user/private-model"].commits] == ["initial commit"]
    assert api.list_repo_files("test-user/private-model") == [".gitattributes"]

    info = api.model_info("test-user/private-model")
    assert info.private is True and info.sha == repos["test-user/private-model"].head
    # Private repo without a token: the client turns the 401 into RepositoryNotFoundError.
    with pytest.raises(RepositoryNotFoundError):
        HfApi(endpoint=fake_hub.url, token=False).model_info("test-user/private-model")
    assert HfApi(endpoint=fake_hub.url, token=False).model_info("test-user/public-model").private is False


def test_commit_then_download_exact_revision(fake_hub: FakeHub, tmp_path: Path) -> None:
    api = HfApi(endpoint=fake_hub.url, token=fake_hub.token)
    api.create_repo(REPO, repo_type="model", private=True, exist_ok=True)
    files = _payload()

    info = _commit(api, files)

    repo = fake_hub.repos()[REPO]
    assert info.oid == repo.head and len(info.oid) == 40
    assert repo.commits[-1].title == "upload model"
    assert fake_hub.files(REPO, info.oid) == {**files, ".gitattributes": fake_hub.files(REPO)[".gitattributes"]}
    assert sorted(api.list_repo_files(REPO, revision=info.oid)) == sorted([*files, ".gitattributes"])

    # The binary file went through the LFS batch + presigned PUT; the small ones inline in the commit.
    paths = [(r.method, r.path) for r in fake_hub.requests]
    assert ("POST", f"/{REPO}.git/info/lfs/objects/batch") in paths
    assert sum(1 for m, p in paths if m == "PUT" and p.startswith("/__lfs__/upload/")) == 1
    assert not any("xet" in p for _, p in paths)
    siblings = {s.rfilename: s for s in api.model_info(REPO, revision=info.oid, files_metadata=True).siblings}
    assert siblings["model.safetensors"].lfs is not None and siblings["model.safetensors"].lfs.size == 3 * 1024 * 1024
    assert siblings["config.json"].lfs is None

    snap = snapshot_download(REPO, revision=info.oid, endpoint=fake_hub.url, token=fake_hub.token, local_dir=tmp_path / "snap")
    assert _read_dir(Path(snap)) == fake_hub.files(REPO, info.oid)

    single = hf_hub_download(
        REPO, "model.safetensors", revision=info.oid, endpoint=fake_hub.url, token=fake_hub.token, cache_dir=tmp_path / "cache"
    )
    assert Path(single).read_bytes() == files["model.safetensors"]

    # The token only ever travels in the Authorization header: never in a body, a URL or a stored file.
    secret = fake_hub.token.encode()
    assert all(secret not in r.body and fake_hub.token not in r.path + r.query for r in fake_hub.requests)
    assert all(secret not in data for data in fake_hub.files(REPO, info.oid).values())
    assert all(r.headers.get("authorization") in (None, "<redacted>") for r in fake_hub.requests)
    assert {r.auth for r in fake_hub.requests if r.method == "PUT"} == {"missing"}  # presigned upload


def test_wrong_or_missing_token_is_a_clear_401(fake_hub: FakeHub) -> None:
    api = HfApi(endpoint=fake_hub.url, token=fake_hub.token)
    api.create_repo(REPO, private=True)
    bad = HfApi(endpoint=fake_hub.url, token="hf_wrong_token")

    with pytest.raises(HfHubHTTPError) as err:
        bad.create_repo("test-user/other-model", private=True, exist_ok=True)
    assert err.value.response.status_code == 401
    assert "Invalid credentials" in str(err.value)

    with pytest.raises(HfHubHTTPError) as err:
        _commit(bad, {"notes.txt": b"hello"})
    assert err.value.response.status_code == 401

    with pytest.raises(HfHubHTTPError) as err:
        _commit(HfApi(endpoint=fake_hub.url, token=False), {"notes.txt": b"hello"})
    assert err.value.response.status_code == 401

    assert list(fake_hub.repos()) == [REPO]
    assert len(fake_hub.repos()[REPO].commits) == 1
    assert {r.auth for r in fake_hub.requests} == {"valid", "invalid", "missing"}


def test_failed_commit_leaves_repo_unchanged(fake_hub: FakeHub) -> None:
    api = HfApi(endpoint=fake_hub.url, token=fake_hub.token)
    api.create_repo(REPO, private=False, exist_ok=True)
    first = _commit(api, _payload(0), "v1")
    before_repo, before_files = fake_hub.repos()[REPO], fake_hub.files(REPO)

    fake_hub.fail_next_commit()
    with pytest.raises(HfHubHTTPError) as err:
        _commit(api, {**_payload(1), "extra.bin": b"\x00" * 1024}, "v2")
    assert err.value.response.status_code == 500

    # The new LFS objects were uploaded before the commit call failed...
    assert sum(1 for r in fake_hub.requests if r.method == "PUT") == 3  # v1 weights, v2 weights, extra.bin
    # ...but nothing of the failed commit is visible in any revision.
    assert fake_hub.repos()[REPO] == before_repo
    assert fake_hub.files(REPO) == before_files
    assert api.model_info(REPO).sha == first.oid
    assert "extra.bin" not in api.list_repo_files(REPO)

    # The failure is one-shot: retrying publishes everything at once.
    retry = _commit(api, {**_payload(1), "extra.bin": b"\x00" * 1024}, "v2")
    assert fake_hub.repos()[REPO].head == retry.oid
    assert fake_hub.files(REPO)["model.safetensors"] == _payload(1)["model.safetensors"]


def test_second_commit_keeps_old_revision_downloadable(fake_hub: FakeHub, tmp_path: Path) -> None:
    api = HfApi(endpoint=fake_hub.url, token=fake_hub.token)
    api.create_repo(REPO, private=True, exist_ok=True)
    v1, v2 = _payload(0), {**_payload(1), "eval/results.json": b'{"accuracy": 0.9}'}
    first = _commit(api, v1, "v1")
    second = _commit(api, v2, "v2")

    repo = fake_hub.repos()[REPO]
    assert first.oid != second.oid
    assert [c.oid for c in repo.commits[1:]] == [first.oid, second.oid]
    assert repo.commits[-1].parent == first.oid
    assert repo.head == second.oid == api.model_info(REPO).sha
    assert [c.commit_id for c in api.list_repo_commits(REPO)][:2] == [second.oid, first.oid]

    old = Path(snapshot_download(REPO, revision=first.oid, token=fake_hub.token, local_dir=tmp_path / "v1"))
    new = Path(snapshot_download(REPO, revision=second.oid, token=fake_hub.token, local_dir=tmp_path / "v2"))
    assert {k: v for k, v in _read_dir(old).items() if k != ".gitattributes"} == v1
    assert {k: v for k, v in _read_dir(new).items() if k != ".gitattributes"} == v2

    old_weights = hf_hub_download(REPO, "model.safetensors", revision=first.oid, token=fake_hub.token, cache_dir=tmp_path / "c")
    assert Path(old_weights).read_bytes() == v1["model.safetensors"]
    with pytest.raises(Exception):  # the file did not exist at the first revision
        hf_hub_download(REPO, "eval/results.json", revision=first.oid, token=fake_hub.token, cache_dir=tmp_path / "c")


def test_inline_only_mode_and_plain_start_stop(tmp_path: Path) -> None:
    """start_hub/stop_hub without the fixture, with every file committed inline (no LFS at all)."""
    hub = start_hub(token="hf_other", use_lfs=False)
    try:
        api = HfApi(endpoint=hub.url, token=hub.token)
        api.create_repo(REPO, exist_ok=True)
        files = _payload()
        info = _commit(api, files)
        assert not any(".git/info/lfs" in r.path or r.method == "PUT" for r in hub.requests)
        assert {k: v for k, v in hub.files(REPO, info.oid).items() if k != ".gitattributes"} == files
        snap = snapshot_download(REPO, revision=info.oid, endpoint=hub.url, token=hub.token, local_dir=tmp_path / "s")
        assert _read_dir(Path(snap)) == hub.files(REPO, info.oid)
    finally:
        stop_hub(hub)
    assert hub.errors == []
