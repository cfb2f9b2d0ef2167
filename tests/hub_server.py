"""An in-process fake of the Hugging Face Hub HTTP API, for tests.

The server speaks the subset of the Hub API that the real ``huggingface_hub`` client (checked against
v2.4.0) uses to create a repo, push one commit (regular files inline, large/binary files through the
plain Git-LFS "basic" transfer), read repo info / file listings, and download a given revision with
``hf_hub_download`` / ``snapshot_download``. It runs on 127.0.0.1 on an ephemeral port, in a daemon
thread, and uses only the standard library.

Usage::

    hub = start_hub(token="hf_test_token")
    api = HfApi(endpoint=hub.url, token=hub.token)
    ...
    stop_hub(hub)

or, in pytest, the function-scoped ``fake_hub`` fixture defined at the bottom of this module (it also
points ``huggingface_hub`` at the server and keeps it away from the real Hub, see its docstring).

Implemented endpoints (model repos only; anything else answers 404 with a JSON error naming the route):

* ``GET  /api/whoami-v2``
* ``POST /api/repos/create``, ``DELETE /api/repos/delete``
* ``GET  /api/models/{repo}`` and ``/api/models/{repo}/revision/{rev}`` (``?blobs=true`` adds file sizes/LFS info)
* ``GET  /api/models/{repo}/tree/{rev}[/{path}]`` (``?recursive=true``), ``/commits/{rev}``, ``/refs``
* ``POST /api/models/{repo}/preupload/{rev}``: tells the client which files go through LFS
* ``POST /{repo}.git/info/lfs/objects/batch`` and ``/verify``; ``PUT /__lfs__/upload/{sig}`` (the "presigned" URL)
* ``POST /api/models/{repo}/commit/{rev}``: NDJSON commit, atomic
* ``HEAD|GET /{repo}/resolve/{rev}/{path}`` (with ``Range`` support)
* ``GET  /api/models/{repo}/xet-{read,write}-token/{rev}``: 501 with an explanation; xet is not implemented,
  the client must run with ``HF_HUB_DISABLE_XET`` (the ``fake_hub`` fixture does that).
* ``POST /api/validate-yaml``: called when README.md is committed; accepts any closed front matter.
* ``GET  /api/agent-harnesses``: an empty registry (the client may fetch it to build its User-Agent).

Behaviour that mirrors the real Hub and that tests may notice:

* A new repo starts with an ``"initial commit"`` holding a ``.gitattributes`` file (the LFS patterns).
* Files matching an LFS pattern of that ``.gitattributes``, files of 10 MiB or more and files whose first
  512 bytes contain a NUL byte are uploaded through LFS (unless ``start_hub(use_lfs=False)``).
* An invalid token gets ``401 Invalid credentials in Authorization header`` on every endpoint (the client
  raises a plain ``HfHubHTTPError``); a missing token on a write endpoint gets 401, on a private repo
  401 with ``X-Error-Code: RepoNotFound`` (the client raises ``RepositoryNotFoundError``).
* Any namespace may be written to with the right token (no per-namespace permissions).
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import secrets
import socket
import socketserver
import threading
import time
import traceback
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

__all__ = [
    "FakeHub",
    "HubCommit",
    "HubRepo",
    "RecordedRequest",
    "fake_hub",
    "loopback_only",
    "start_hub",
    "stop_hub",
]

DEFAULT_TOKEN = "hf_test_token"
DEFAULT_USER = "test-user"
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024  # the Hub routes files of 10 MiB or more through LFS

# Same LFS patterns as the `.gitattributes` the Hub puts in every new model repo (abridged).
DEFAULT_GITATTRIBUTES = "".join(
    f"{pattern} filter=lfs diff=lfs merge=lfs -text\n"
    for pattern in (
        "*.7z", "*.arrow", "*.bin", "*.bz2", "*.ckpt", "*.ftz", "*.gz", "*.h5", "*.joblib",
        "*.lfs.*", "*.mlmodel", "*.model", "*.msgpack", "*.npy", "*.npz", "*.onnx", "*.ot",
        "*.parquet", "*.pb", "*.pickle", "*.pkl", "*.pt", "*.pth", "*.rar", "*.safetensors",
        "saved_model/**/*", "*.tar.*", "*.tar", "*.tflite", "*.tgz", "*.wasm", "*.xz", "*.zip",
        "*.zst", "*tfevents*",
    )
)  # fmt: skip

AuthState = Literal["missing", "valid", "invalid"]


# --------------------------------------------------------------------------------------------------
# Public, read-only views of the server state
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HubCommit:
    """One commit of a fake repo (oldest commit first in ``HubRepo.commits``)."""

    oid: str
    parent: str | None
    title: str
    message: str
    files: tuple[str, ...]  # every path present at this commit, sorted


@dataclass(frozen=True)
class HubRepo:
    """Snapshot of a fake repo, as returned by ``FakeHub.repos()``."""

    repo_id: str
    private: bool
    commits: tuple[HubCommit, ...]  # oldest first; commits[0] is the Hub's "initial commit"
    branches: Mapping[str, str]  # branch name -> commit oid

    @property
    def head(self) -> str:
        """Commit oid of ``main``."""
        return self.branches["main"]


@dataclass(frozen=True)
class RecordedRequest:
    """One request the server received. The Authorization value is never stored: only ``auth``."""

    method: str
    path: str  # decoded path, without the query string
    query: str  # raw query string ("" if none)
    headers: Mapping[str, str]  # lower-cased names; "authorization" (if sent) is replaced by "<redacted>"
    auth: AuthState  # whether an Authorization header was sent, and whether it matched the hub's token
    body: bytes
    status: int  # status code of the response


# --------------------------------------------------------------------------------------------------
# Internal state
# --------------------------------------------------------------------------------------------------


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest()


def _now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass(frozen=True)
class _Blob:
    """A file's content at some commit, with the hashes the client expects."""

    data: bytes
    lfs: bool
    sha256: str
    git_oid: str  # git blob id: of the content, or of the LFS pointer file for LFS files
    pointer_size: int

    @classmethod
    def make(cls, data: bytes, lfs: bool) -> _Blob:
        sha256 = hashlib.sha256(data).hexdigest()
        if lfs:
            pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {len(data)}\n".encode()
            return cls(data, True, sha256, _git_blob_sha1(pointer), len(pointer))
        return cls(data, False, sha256, _git_blob_sha1(data), 0)

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.git_oid


@dataclass
class _Commit:
    oid: str
    parent: str | None
    title: str
    message: str
    author: str
    date: str
    files: dict[str, _Blob]


@dataclass
class _Repo:
    repo_id: str
    private: bool
    created_at: str
    commits: dict[str, _Commit] = field(default_factory=dict)  # insertion order = chronological
    branches: dict[str, str] = field(default_factory=dict)
    lfs_objects: dict[str, bytes] = field(default_factory=dict)  # sha256 -> content ("S3"); not a revision


class _HttpError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers or {}


# --------------------------------------------------------------------------------------------------
# FakeHub
# --------------------------------------------------------------------------------------------------


class FakeHub:
    """State and HTTP server of one fake Hub. Create it with ``start_hub``; stop it with ``stop_hub``.

    Attributes:
        url: base URL of the server, e.g. ``"http://127.0.0.1:54321"`` (pass it as ``endpoint=``).
        token: the only token accepted (``Authorization: Bearer <token>``).
        user: the user name ``whoami`` returns; repos created without a namespace go under it.
        requests: every request received so far, in order (see ``RecordedRequest``).
        errors: tracebacks of exceptions raised inside the server (a bug in the fake); the ``fake_hub``
            fixture fails the test at teardown if this is not empty.
    """

    def __init__(self, token: str = DEFAULT_TOKEN, *, user: str = DEFAULT_USER, use_lfs: bool = True) -> None:
        self.token = token
        self.user = user
        self.use_lfs = use_lfs
        self.requests: list[RecordedRequest] = []
        self.errors: list[str] = []
        self.url = ""
        self._lock = threading.RLock()
        self._repos: dict[str, _Repo] = {}
        self._pending_uploads: dict[str, tuple[str, str, int]] = {}  # signature -> (repo_id, sha256, size)
        self._fail_next_commit: int | None = None
        self._fail_commits_left = 0
        self._counter = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- test-facing API ---------------------------------------------------------------------------

    def repos(self) -> dict[str, HubRepo]:
        """Snapshot of every repo: ``repo_id -> HubRepo`` (private flag, commits oldest first, branches)."""
        with self._lock:
            return {
                repo_id: HubRepo(
                    repo_id=repo_id,
                    private=repo.private,
                    commits=tuple(
                        HubCommit(c.oid, c.parent, c.title, c.message, tuple(sorted(c.files)))
                        for c in repo.commits.values()
                    ),
                    branches=dict(repo.branches),
                )
                for repo_id, repo in self._repos.items()
            }

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        """Content of every file of ``repo_id`` at ``revision`` (a branch name or a commit oid).

        Raises ``KeyError`` if the repo or the revision does not exist.
        """
        with self._lock:
            repo = self._repos[repo_id]
            commit = self._resolve(repo, revision)
            if commit is None:
                raise KeyError(f"{repo_id}@{revision}")
            return {path: blob.data for path, blob in sorted(commit.files.items())}

    def fail_next_commit(self, status: int = 500, times: int = 1) -> None:
        """Make the next ``times`` ``POST .../commit/...`` fail with ``status``.

        The failure happens after the request has been parsed and validated (so after every LFS upload
        of that commit), and leaves every repo unchanged. Uploaded LFS objects stay in storage, but no
        revision references them, as on the real Hub.
        """
        with self._lock:
            self._fail_next_commit = status
            self._fail_commits_left = times

    # -- helpers -----------------------------------------------------------------------------------

    def _new_oid(self, *parts: str) -> str:
        self._counter += 1
        seed = "\x00".join((*parts, str(self._counter), str(time.time_ns())))
        return hashlib.sha1(seed.encode()).hexdigest()

    def _resolve(self, repo: _Repo, revision: str) -> _Commit | None:
        if revision in repo.branches:
            return repo.commits[repo.branches[revision]]
        if revision in repo.commits:
            return repo.commits[revision]
        if len(revision) >= 7 and all(c in "0123456789abcdef" for c in revision):
            matches = [oid for oid in repo.commits if oid.startswith(revision)]
            if len(matches) == 1:
                return repo.commits[matches[0]]
        return None

    def _add_commit(self, repo: _Repo, branch: str, title: str, message: str, files: dict[str, _Blob]) -> _Commit:
        parent = repo.branches.get(branch)
        oid = self._new_oid(repo.repo_id, parent or "", title, *sorted(f"{p}:{b.git_oid}" for p, b in files.items()))
        commit = _Commit(oid, parent, title, message, self.user, _now_iso(), files)
        repo.commits[oid] = commit
        repo.branches[branch] = oid
        return commit

    def _is_lfs_path(self, files: Mapping[str, _Blob], path: str, size: int, sample: bytes) -> bool:
        if not self.use_lfs or size == 0:
            return False
        if size >= LFS_SIZE_THRESHOLD or b"\x00" in sample:
            return True
        gitattributes = files.get(".gitattributes")
        if gitattributes is None:
            return False
        name = path.rsplit("/", 1)[-1]
        for line in gitattributes.data.decode(errors="replace").splitlines():
            parts = line.split()
            if len(parts) < 2 or "filter=lfs" not in parts[1:]:
                continue
            pattern = parts[0]
            if fnmatch.fnmatchcase(path if "/" in pattern else name, pattern):
                return True
        return False


# --------------------------------------------------------------------------------------------------
# HTTP layer
# --------------------------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, hub: FakeHub) -> None:
        self.hub = hub
        self.open_sockets: set[socket.socket] = set()
        self.sockets_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind() would call socket.getfqdn() (a reverse DNS lookup): skip it.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def finish_request(self, request: Any, client_address: Any) -> None:
        with self.sockets_lock:
            self.open_sockets.add(request)
        try:
            super().finish_request(request, client_address)
        finally:
            with self.sockets_lock:
                self.open_sockets.discard(request)

    def close_open_connections(self) -> None:
        with self.sockets_lock:
            for sock in list(self.open_sockets):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def _error_body(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real Hub; every response carries Content-Length
    server: _Server

    # BaseHTTPRequestHandler dispatches on do_<METHOD>
    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence stderr logging
        pass

    # -- plumbing ----------------------------------------------------------------------------------

    @property
    def hub(self) -> FakeHub:
        return self.server.hub

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _auth_state(self) -> AuthState:
        value = self.headers.get("Authorization")
        if value is None:
            return "missing"
        return "valid" if secrets.compare_digest(value, f"Bearer {self.hub.token}") else "invalid"

    def _dispatch(self) -> None:
        body = self._read_body()  # always drain the body, so keep-alive connections stay in sync
        split = urlsplit(self.path)
        self._query = parse_qs(split.query)
        self._auth = self._auth_state()
        self._body = body
        status = 500
        try:
            if self._auth == "invalid":
                raise _HttpError(401, "Invalid credentials in Authorization header")
            status, payload, headers = self._route(self.command, split.path, body)
        except _HttpError as err:
            status = err.status
            headers = {"Content-Type": "application/json", "X-Error-Message": err.message, **err.headers}
            if err.code:
                headers["X-Error-Code"] = err.code
            payload = _error_body(err.message)
        except Exception:  # a bug in the fake: report it to the test, answer 500
            self.hub.errors.append(traceback.format_exc())
            status, headers = 500, {"Content-Type": "application/json"}
            payload = _error_body("FakeHub internal error (see FakeHub.errors)")
        self._respond(status, payload, headers)
        recorded_headers = {k.lower(): v for k, v in self.headers.items()}
        if "authorization" in recorded_headers:
            recorded_headers["authorization"] = "<redacted>"
        with self.hub._lock:
            self.hub.requests.append(
                RecordedRequest(
                    self.command, unquote(split.path), split.query, recorded_headers, self._auth, body, status
                )
            )

    def _respond(self, status: int, payload: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        headers = {"Content-Type": "application/json", **headers}
        headers.setdefault("Content-Length", str(len(payload)))
        headers.setdefault("X-Request-Id", secrets.token_hex(8))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD" and payload:
            self.wfile.write(payload)

    @staticmethod
    def _json(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
        return status, json.dumps(obj).encode(), {"Content-Type": "application/json", **(headers or {})}

    def _flag(self, name: str) -> bool:
        return self._query.get(name, ["false"])[-1].lower() in ("1", "true")

    def _require_write(self) -> None:
        if self._auth != "valid":
            raise _HttpError(401, "Authorization header with a valid token is required for this endpoint")

    def _get_repo(self, repo_id: str, *, write: bool = False) -> _Repo:
        if write:
            self._require_write()
        repo = self.hub._repos.get(repo_id)
        if repo is None or (repo.private and self._auth != "valid"):
            raise _HttpError(401 if self._auth != "valid" else 404, "Repository not found", "RepoNotFound")
        return repo

    def _get_commit(self, repo: _Repo, revision: str) -> _Commit:
        commit = self.hub._resolve(repo, revision)
        if commit is None:
            raise _HttpError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit

    # -- routing -----------------------------------------------------------------------------------

    def _route(self, method: str, raw_path: str, body: bytes) -> tuple[int, bytes, dict[str, str]]:
        seg = [unquote(s) for s in raw_path.split("/")[1:]]  # decode per segment: revisions may contain %2F
        hub = self.hub
        with hub._lock:
            if seg[:2] == ["api", "whoami-v2"] and method == "GET":
                return self._whoami()
            if seg[:2] == ["api", "agent-harnesses"] and method == "GET":
                return self._json({"standardEnvVars": [], "harnesses": {}})
            if seg[:2] == ["api", "validate-yaml"] and method == "POST":
                return self._validate_yaml(body)
            if seg[:3] == ["api", "repos", "create"] and method == "POST":
                return self._create_repo(body)
            if seg[:3] == ["api", "repos", "delete"] and method == "DELETE":
                return self._delete_repo(body)
            if len(seg) >= 4 and seg[0] == "api" and seg[1] in ("datasets", "spaces", "kernels", "buckets"):
                raise _HttpError(404, f"FakeHub only implements model repos, not {seg[1]}", "RepoNotFound")
            if len(seg) >= 4 and seg[:2] == ["api", "models"]:
                repo_id, op, rest = f"{seg[2]}/{seg[3]}", seg[4] if len(seg) > 4 else "", seg[5:]
                if op == "" and method == "GET":
                    return self._repo_info(repo_id, "main")
                if op == "revision" and rest and method == "GET":
                    return self._repo_info(repo_id, rest[0])
                if op == "tree" and rest and method == "GET":
                    return self._tree(repo_id, rest[0], "/".join(rest[1:]))
                if op == "commits" and rest and method == "GET":
                    return self._list_commits(repo_id, rest[0])
                if op == "refs" and method == "GET":
                    return self._refs(repo_id)
                if op == "preupload" and rest and method == "POST":
                    return self._preupload(repo_id, rest[0], body)
                if op == "commit" and rest and method == "POST":
                    return self._commit(repo_id, rest[0], body)
                if op in ("xet-read-token", "xet-write-token"):
                    raise _HttpError(
                        501,
                        "FakeHub does not implement Xet storage: run the client with HF_HUB_DISABLE_XET=1 "
                        "(and huggingface_hub.constants.HF_HUB_DISABLE_XET = True if it is already imported)",
                    )
            if len(seg) == 6 and seg[2:5] == ["info", "lfs", "objects"] and seg[1].endswith(".git"):
                repo_id = f"{seg[0]}/{seg[1][: -len('.git')]}"
                if seg[5] == "batch" and method == "POST":
                    return self._lfs_batch(repo_id, body)
                if seg[5] == "verify" and method == "POST":
                    return self._lfs_verify(repo_id, body)
            if len(seg) == 3 and seg[:2] == ["__lfs__", "upload"] and method == "PUT":
                return self._lfs_put(seg[2], body)
            if len(seg) >= 5 and seg[2] == "resolve" and method in ("GET", "HEAD"):
                return self._resolve_file(f"{seg[0]}/{seg[1]}", seg[3], "/".join(seg[4:]))
        raise _HttpError(404, f"FakeHub: no route for {method} {unquote(raw_path)}")

    # -- endpoints ---------------------------------------------------------------------------------

    def _whoami(self) -> tuple[int, bytes, dict[str, str]]:
        if self._auth != "valid":
            raise _HttpError(401, "Invalid credentials in Authorization header")
        return self._json(
            {
                "type": "user",
                "id": hashlib.sha1(self.hub.user.encode()).hexdigest()[:24],
                "name": self.hub.user,
                "fullname": "Fake Hub Test User",
                "email": None,
                "emailVerified": False,
                "canPay": False,
                "isPro": False,
                "periodEnd": None,
                "avatarUrl": "",
                "orgs": [],
                "auth": {"type": "access_token", "accessToken": {"displayName": "fake-hub", "role": "write"}},
            }
        )

    def _validate_yaml(self, body: bytes) -> tuple[int, bytes, dict[str, str]]:
        # Called by create_commit when README.md is committed. Only checks that a front matter is closed.
        content = json.loads(body or b"{}").get("content") or ""
        lines = content.splitlines()
        if lines and lines[0].strip() == "---" and not any(line.strip() == "---" for line in lines[1:]):
            return self._json({"errors": [{"message": "Unclosed YAML front matter"}], "warnings": []}, status=400)
        return self._json({"errors": [], "warnings": []})

    def _create_repo(self, body: bytes) -> tuple[int, bytes, dict[str, str]]:
        self._require_write()
        payload = json.loads(body or b"{}")
        repo_type = payload.get("type") or "model"
        if repo_type != "model":
            raise _HttpError(400, f"FakeHub only implements model repos, not {repo_type}")
        name = payload.get("name")
        if not isinstance(name, str) or not name or "/" in name:
            raise _HttpError(400, "Invalid repo name")
        repo_id = f"{payload.get('organization') or self.hub.user}/{name}"
        url = f"{self.hub.url}/{repo_id}"
        if repo_id in self.hub._repos:
            return self._json({"error": "You already created this model repo", "url": url}, status=409)
        repo = _Repo(repo_id=repo_id, private=payload.get("visibility") == "private", created_at=_now_iso())
        gitattributes = _Blob.make(DEFAULT_GITATTRIBUTES.encode(), lfs=False)
        self.hub._add_commit(repo, "main", "initial commit", "", {".gitattributes": gitattributes})
        self.hub._repos[repo_id] = repo
        return self._json({"url": url, "name": repo_id, "id": hashlib.sha1(repo_id.encode()).hexdigest()[:24]})

    def _delete_repo(self, body: bytes) -> tuple[int, bytes, dict[str, str]]:
        self._require_write()
        payload = json.loads(body or b"{}")
        repo_id = f"{payload.get('organization') or self.hub.user}/{payload.get('name')}"
        if repo_id not in self.hub._repos:
            raise _HttpError(404, "Repository not found", "RepoNotFound")
        del self.hub._repos[repo_id]
        return self._json({})

    def _file_entry(self, path: str, blob: _Blob) -> dict[str, Any]:
        entry: dict[str, Any] = {"type": "file", "oid": blob.git_oid, "size": len(blob.data), "path": path}
        if blob.lfs:
            entry["lfs"] = {"oid": blob.sha256, "size": len(blob.data), "pointerSize": blob.pointer_size}
        return entry

    def _repo_info(self, repo_id: str, revision: str) -> tuple[int, bytes, dict[str, str]]:
        repo = self._get_repo(repo_id)
        commit = self._get_commit(repo, revision)
        blobs = self._flag("blobs")
        siblings = []
        for path, blob in sorted(commit.files.items()):
            sibling: dict[str, Any] = {"rfilename": path}
            if blobs:
                sibling.update(size=len(blob.data), blobId=blob.git_oid)
                if blob.lfs:
                    sibling["lfs"] = {"sha256": blob.sha256, "size": len(blob.data), "pointerSize": blob.pointer_size}
            siblings.append(sibling)
        return self._json(
            {
                "_id": hashlib.sha1(repo_id.encode()).hexdigest()[:24],
                "id": repo_id,
                "modelId": repo_id,
                "author": repo_id.split("/")[0],
                "sha": commit.oid,
                "lastModified": commit.date,
                "createdAt": repo.created_at,
                "private": repo.private,
                "gated": False,
                "disabled": False,
                "downloads": 0,
                "likes": 0,
                "tags": [],
                "siblings": siblings,
                "spaces": [],
                "usedStorage": sum(len(b.data) for b in commit.files.values()),
            }
        )

    def _tree(self, repo_id: str, revision: str, path: str) -> tuple[int, bytes, dict[str, str]]:
        repo = self._get_repo(repo_id)
        commit = self._get_commit(repo, revision)
        recursive = self._flag("recursive")
        prefix = f"{path.strip('/')}/" if path.strip("/") else ""
        entries: list[dict[str, Any]] = []
        folders: set[str] = set()
        for file_path, blob in sorted(commit.files.items()):
            if not file_path.startswith(prefix):
                continue
            parts = file_path[len(prefix) :].split("/")
            for depth in range(1, len(parts)):  # folders on the way to this file
                if depth > 1 and not recursive:
                    break
                folders.add(prefix + "/".join(parts[:depth]))
            if recursive or len(parts) == 1:
                entries.append(self._file_entry(file_path, blob))
        if prefix and not entries and not folders:
            raise _HttpError(404, f"{path} does not exist on {revision}", "EntryNotFound")
        dirs = [
            {"type": "directory", "oid": hashlib.sha1(f"{commit.oid}:{d}".encode()).hexdigest(), "size": 0, "path": d}
            for d in sorted(folders)
        ]
        return self._json(dirs + entries)

    def _list_commits(self, repo_id: str, revision: str) -> tuple[int, bytes, dict[str, str]]:
        repo = self._get_repo(repo_id)
        commit: _Commit | None = self._get_commit(repo, revision)
        items = []
        while commit is not None:
            items.append(
                {
                    "id": commit.oid,
                    "title": commit.title,
                    "message": commit.message,
                    "authors": [{"user": commit.author, "avatar": ""}],
                    "date": commit.date,
                }
            )
            commit = repo.commits.get(commit.parent) if commit.parent else None
        return self._json(items)

    def _refs(self, repo_id: str) -> tuple[int, bytes, dict[str, str]]:
        repo = self._get_repo(repo_id)
        branches = [{"name": n, "ref": f"refs/heads/{n}", "targetCommit": oid} for n, oid in repo.branches.items()]
        return self._json({"branches": branches, "converts": [], "tags": []})

    def _branch_commit(self, repo: _Repo, revision: str) -> _Commit:
        if self._flag("create_pr"):
            raise _HttpError(400, "FakeHub does not implement create_pr")
        if revision not in repo.branches:
            raise _HttpError(404, f"Invalid rev id: {revision} (commits go to a branch)", "RevisionNotFound")
        return repo.commits[repo.branches[revision]]

    def _preupload(self, repo_id: str, revision: str, body: bytes) -> tuple[int, bytes, dict[str, str]]:
        repo = self._get_repo(repo_id, write=True)
        head = self._branch_commit(repo, revision)
        files_out = []
        for item in json.loads(body)["files"]:
            path, size = item["path"], int(item["size"])
            sample = base64.b64decode(item.get("sample") or "")
            lfs = self.hub._is_lfs_path(head.files, path, size, sample)
            out: dict[str, Any] = {"path": path, "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False}
            existing = head.files.get(path)
            if existing is not None:  # lets the client skip unchanged files
                out["oid"] = existing.sha256 if lfs else existing.git_oid
            files_out.append(out)
        return self._json({"files": files_out, "commitOid": head.oid})

    def _lfs_batch(self, repo_id: str, body: bytes) -> tuple[int, bytes, dict[str, str]]:
        repo = self._get_repo(repo_id, write=True)
        payload = json.loads(body)
        if payload.get("operation") != "upload":
            raise _HttpError(400, "FakeHub only implements LFS uploads (downloads go through /resolve)")
        objects = []
        for obj in payload["objects"]:
            oid, size = obj["oid"], int(obj["size"])
            out: dict[str, Any] = {"oid": oid, "size": size, "authenticated": True}
            if oid not in repo.lfs_objects:
                signature = secrets.token_hex(16)
                self.hub._pending_uploads[signature] = (repo_id, oid, size)
                out["actions"] = {
                    "upload": {"href": f"{self.hub.url}/__lfs__/upload/{signature}", "header": {}},
                    "verify": {"href": f"{self.hub.url}/{repo_id}.git/info/lfs/objects/verify", "header": {}},
                }
            objects.append(out)
        return self._json(
            {"transfer": "basic", "objects": objects}, headers={"Content-Type": "application/vnd.git-lfs+json"}
        )

    def _lfs_put(self, signature: str, body: bytes) -> tuple[int, bytes, dict[str, str]]:
        # Stands for a presigned storage URL: no Authorization header, the signature is the credential.
        pending = self.hub._pending_uploads.pop(signature, None)
        if pending is None:
            raise _HttpError(403, "Invalid or already used upload signature")
        repo_id, oid, size = pending
        if len(body) != size or hashlib.sha256(body).hexdigest() != oid:
            raise _HttpError(400, f"Uploaded content does not match oid {oid} / size {size}")
        repo = self.hub._repos.get(repo_id)
        if repo is not None:
            repo.lfs_objects[oid] = body
        return 200, b"", {"ETag": f'"{hashlib.md5(body).hexdigest()}"'}

    def _lfs_verify(self, repo_id: str, body: bytes) -> tuple[int, bytes, dict[str, str]]:
        repo = self._get_repo(repo_id, write=True)
        payload = json.loads(body)
        data = repo.lfs_objects.get(payload.get("oid", ""))
        if data is None or len(data) != int(payload.get("size", -1)):
            raise _HttpError(404, "LFS object not found")
        return self._json({"success": True})

    def _commit(self, repo_id: str, revision: str, body: bytes) -> tuple[int, bytes, dict[str, str]]:
        hub = self.hub
        repo = self._get_repo(repo_id, write=True)
        head = self._branch_commit(repo, revision)
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise _HttpError(400, "The first line of a commit must be its header")
        header = lines[0]["value"]
        title = header.get("summary") or ""
        if not title:
            raise _HttpError(400, "Commit summary is required")
        parent = header.get("parentCommit")
        if parent is not None and not head.oid.startswith(parent):
            raise _HttpError(412, "A commit has happened since the parent commit. Please retry.")
        files = dict(head.files)
        for line in lines[1:]:
            key, value = line.get("key"), line.get("value") or {}
            path = value.get("path", "")
            if key == "file":
                if value.get("encoding") != "base64":
                    raise _HttpError(400, f"Unsupported encoding for {path}")
                files[path] = _Blob.make(base64.b64decode(value["content"]), False)
            elif key == "lfsFile":
                data = repo.lfs_objects.get(value.get("oid", ""))
                if data is None or ("size" in value and len(data) != int(value["size"])):
                    raise _HttpError(422, f"LFS object for {path} ({value.get('oid')}) has not been uploaded")
                files[path] = _Blob.make(data, True)
            elif key == "deletedFile":
                if files.pop(path, None) is None:
                    raise _HttpError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
            elif key == "deletedFolder":
                folder = path.rstrip("/") + "/"
                for existing in [p for p in files if p.startswith(folder)]:
                    del files[existing]
            else:
                raise _HttpError(400, f"FakeHub does not implement commit operation {key!r}")
        if hub._fail_next_commit is not None:
            status = hub._fail_next_commit
            hub._fail_commits_left -= 1
            if hub._fail_commits_left <= 0:
                hub._fail_next_commit = None
            raise _HttpError(status, "FakeHub: injected commit failure")
        commit = hub._add_commit(repo, revision, title, header.get("description") or "", files)
        return self._json(
            {
                "success": True,
                "commitOid": commit.oid,
                "commitUrl": f"{hub.url}/{repo_id}/commit/{commit.oid}",
                "hookOutput": "",
            }
        )

    def _resolve_file(self, repo_id: str, revision: str, path: str) -> tuple[int, bytes, dict[str, str]]:
        repo = self._get_repo(repo_id)
        commit = self._get_commit(repo, revision)
        blob = commit.files.get(path)
        if blob is None:
            raise _HttpError(404, "Entry not found", "EntryNotFound", {"X-Repo-Commit": commit.oid})
        headers = {
            "Content-Type": "application/octet-stream",
            "ETag": f'"{blob.etag}"',
            "X-Repo-Commit": commit.oid,
            "Accept-Ranges": "bytes",
        }
        if blob.lfs:
            headers.update({"X-Linked-Etag": f'"{blob.sha256}"', "X-Linked-Size": str(len(blob.data))})
        data = blob.data
        range_header = self.headers.get("Range")
        if range_header and range_header.startswith("bytes=") and "," not in range_header:
            start_s, _, end_s = range_header[len("bytes=") :].partition("-")
            start = int(start_s) if start_s else max(len(data) - int(end_s), 0)
            end = int(end_s) if start_s and end_s else len(data) - 1
            if start >= len(data) or start > end:
                raise _HttpError(416, "Range not satisfiable", headers={"Content-Range": f"bytes */{len(data)}"})
            end = min(end, len(data) - 1)
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            return 206, data[start : end + 1], headers
        return 200, data, headers


# --------------------------------------------------------------------------------------------------
# Start / stop, pytest fixtures
# --------------------------------------------------------------------------------------------------


def start_hub(token: str = DEFAULT_TOKEN, *, user: str = DEFAULT_USER, use_lfs: bool = True) -> FakeHub:
    """Start a fake Hub on 127.0.0.1 (ephemeral port) in a daemon thread and return it.

    Args:
        token: the only token the server accepts.
        user: the user name of that token (``whoami``, default namespace of ``create_repo``).
        use_lfs: if False, every file is committed inline as a regular file (no LFS/xet path at all).
    """
    hub = FakeHub(token, user=user, use_lfs=use_lfs)
    server = _Server(hub)
    host, port = server.server_address[:2]
    hub.url = f"http://{host}:{port}"
    hub._server = server
    hub._thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"fake-hub-{port}", daemon=True
    )
    hub._thread.start()
    return hub


def stop_hub(hub: FakeHub) -> None:
    """Stop the server of ``hub`` and close its open (keep-alive) connections. Idempotent."""
    server, hub._server = hub._server, None
    if server is None:
        return
    server.shutdown()
    server.close_open_connections()
    server.server_close()
    if hub._thread is not None:
        hub._thread.join(timeout=5)


@pytest.fixture
def fake_hub(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeHub]:
    """A running ``FakeHub`` (token ``"hf_test_token"``), with ``huggingface_hub`` pointed at it.

    ``huggingface_hub`` reads its environment variables once, at import, into ``huggingface_hub.constants``;
    so on top of setting ``HF_ENDPOINT``, ``HF_HUB_DISABLE_TELEMETRY=1`` and ``HF_HUB_DISABLE_XET=1``, this
    fixture patches the matching constants for the duration of the test:

    * ``ENDPOINT`` and ``HUGGINGFACE_CO_URL_TEMPLATE`` -> the fake hub (both, or ``hf_hub_url`` builds
      huggingface.co URLs);
    * ``HF_HUB_DISABLE_XET`` (uploads then use the plain LFS path), ``HF_HUB_DISABLE_TELEMETRY`` (otherwise the
      client fetches ``{ENDPOINT}/api/agent-harnesses`` to build its User-Agent), ``HF_HUB_OFFLINE=False``;
    * ``HF_HUB_CACHE``, ``HF_TOKEN_PATH``, ``HF_STORED_TOKENS_PATH`` -> a fresh temporary folder, and the
      ``HF_TOKEN`` / ``HUGGING_FACE_HUB_TOKEN`` / ``HF_OIDC_*`` variables are removed: no real token or cached
      file leaks in, and calls without ``token=`` are anonymous (set ``HF_TOKEN`` to ``hub.token`` if needed).

    At teardown the server stops; the test fails if the server itself raised (``hub.errors``).
    """
    from huggingface_hub import constants

    hub = start_hub()
    home = tmp_path_factory.mktemp("fake-hub-home")
    for name, value in {
        "HF_ENDPOINT": hub.url,
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_OFFLINE": "0",
        "HF_HOME": str(home),
        "HF_HUB_CACHE": str(home / "hub"),
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE", "HF_OIDC_ID_TOKEN", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {
        "ENDPOINT": hub.url,
        "HUGGINGFACE_CO_URL_TEMPLATE": hub.url + "/{repo_id}/resolve/{revision}/{filename}",
        "HF_HUB_DISABLE_XET": True,
        "HF_HUB_DISABLE_TELEMETRY": True,
        "HF_HUB_OFFLINE": False,
        "HF_HUB_CACHE": str(home / "hub"),
        "HF_TOKEN_PATH": str(home / "token"),
        "HF_STORED_TOKENS_PATH": str(home / "stored_tokens"),
    }.items():
        monkeypatch.setattr(constants, name, value)
    try:
        yield hub
    finally:
        stop_hub(hub)
    if hub.errors:
        pytest.fail("FakeHub raised while serving requests:\n" + "\n".join(hub.errors), pytrace=False)


_LOOPBACK_HOSTS = {"127.0.0.1", "::1", "localhost"}


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any TCP/UDP connection or name lookup to a host other than loopback raise ``OSError``.

    Opt-in (not part of ``fake_hub``) since other tools in a test may legitimately use the network.
    """
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def _check(address: Any) -> None:
        if isinstance(address, tuple) and address and str(address[0]) not in _LOOPBACK_HOSTS:
            raise OSError(f"loopback_only: blocked connection to {address!r}")

    def connect(self: socket.socket, address: Any) -> None:
        _check(address)
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        _check(address)
        return real_connect_ex(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host is not None and (host.decode() if isinstance(host, bytes) else str(host)) not in _LOOPBACK_HOSTS:
            raise OSError(f"loopback_only: blocked name lookup of {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
