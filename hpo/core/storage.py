"""One way to reach a sweep's files wherever they live: pyarrow's filesystem layer, as Ray Tune uses.

A ``Location`` is a local folder or a URI Ray and pyarrow accept (``s3://``, ``gs://``, with or
without query parameters such as ``?endpoint_override=HOST:PORT&scheme=http``). Every read and write
of a sweep folder goes through it, so a local folder and a bucket behave the same, and a child path is
always joined before the query string, never after it.

Credentials are never part of a location: they come from the environment (``AWS_ACCESS_KEY_ID``,
``AWS_ENDPOINT_URL``, ``GOOGLE_APPLICATION_CREDENTIALS``...), an instance profile or the cloud's own
login, exactly as Ray Tune reads them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import posixpath
import shutil
import tempfile
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hpo.core.errors import DamagedFile, ExperimentError, StorageError
from hpo.core.paths import is_uri
from hpo.core.paths import local_path
from trainables.errors import shown
from trainables.model import cache_root

__all__ = ["Location", "cache_root", "copy_files", "fetch", "is_remote"]

META_DIR = "hpo"  # a sweep's own files, beside Ray Tune's: STORAGE/NAME/hpo/
SPEC_FILE = "spec.yaml"
DATA_FILE = "data.json"
JOURNAL_FILE = "optuna.journal"  # the Optuna study behind the TPE searcher

# How many times a request to S3 is tried before its error is raised. The AWS SDK waits longer before each
# try (about doubling): 7 tries ride out a store that stalls or restarts for some 20-30 s (measured against a
# closed port: 27 s in all), where pyarrow's default of 3 gave up after 2 s, failing a sweep's upload of its
# state or a trial. The check before a sweep starts tries as often as pyarrow does, to say at once that a
# store cannot be reached. (pyarrow does not pickle a retry strategy: ``hpo.tune.trial_storage`` gives the
# filesystem Tune sends to a trial's process the same bound.)
S3_ATTEMPTS = 7
S3_CHECK_ATTEMPTS = 3


def fetch(path: str) -> str:
    """A file given by a local path or a URI in object storage, as a file on this machine (a stored file is
    downloaded once into the cache); FileNotFoundError when there is none. What data files are read through."""
    return str(Location.parse(path).fetched())


def is_remote(where: str | os.PathLike | Location) -> bool:
    """Whether ``where`` is in object storage, without contacting it (building an S3 filesystem from a
    URI may ask the bucket for its region)."""
    if isinstance(where, Location):
        return not where.is_local
    text = os.fspath(where)
    return is_uri(text) and not text.startswith("file://")


@dataclass(frozen=True, eq=False)
class Location:
    """A file or folder: the pyarrow filesystem, the path inside it, and how to write it back as a URI."""

    fs: Any  # pyarrow.fs.FileSystem
    path: str  # inside ``fs``: no scheme, no query
    scheme: str = ""  # "" for the local filesystem
    query: str = ""

    # ----------------------------------------------------------------------------------- naming
    @classmethod
    def parse(cls, where: str | os.PathLike | Location) -> Location:
        """A location from a local path or a URI; raises ``StorageError`` (exit 2) for one pyarrow cannot use."""
        if isinstance(where, Location):
            return where
        text = os.fspath(where)
        if not is_remote(text):
            import pyarrow.fs

            local = text[len("file://") :] if text.startswith("file://") else text
            try:
                return cls(pyarrow.fs.LocalFileSystem(), local_path(local).as_posix())
            except ValueError as err:
                raise StorageError(f"{shown(text)}: {err}") from None
        parts = urlsplit(text)
        if parts.username or parts.password:
            raise StorageError(
                f"{parts.scheme}://{parts.hostname}{parts.path}: credentials in a storage URI would be stored with the sweep "
                "and shown in logs; remove them and set them in the environment (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, "
                "GOOGLE_APPLICATION_CREDENTIALS) or use the cloud's own login"
            )
        import pyarrow.fs

        try:
            fs, path = pyarrow.fs.FileSystem.from_uri(text)
        except Exception as err:  # an invalid URI, a scheme this pyarrow lacks, OSError: say which URI and why
            raise StorageError(f"{text}: not a storage URI pyarrow can open: {err}") from None
        return cls(_retrying(fs, S3_ATTEMPTS), path.rstrip("/"), parts.scheme, parts.query)

    @classmethod
    def on(cls, fs: Any, path: str) -> Location:
        """A location on a filesystem built elsewhere (Tune's), named after the filesystem's type."""
        import pyarrow.fs

        scheme = "" if isinstance(fs, pyarrow.fs.LocalFileSystem) else {"gcs": "gs"}.get(fs.type_name, fs.type_name)
        return cls(fs, path.rstrip("/"), scheme)

    @property
    def is_local(self) -> bool:
        return not self.scheme

    @property
    def uri(self) -> str:
        """What a user types to come back here (``hpo status URI``); a local location is its absolute path."""
        if self.is_local:
            return self.path
        return f"{self.scheme}://{self.path}" + (f"?{self.query}" if self.query else "")

    def __str__(self) -> str:
        return self.uri

    def __repr__(self) -> str:
        return f"Location({self.uri!r})"

    @property
    def name(self) -> str:
        return posixpath.basename(self.path)

    @property
    def parent(self) -> Location:
        return Location(self.fs, posixpath.dirname(self.path), self.scheme, self.query)

    def child(self, *parts: str) -> Location:
        return Location(self.fs, posixpath.join(self.path, *parts), self.scheme, self.query)

    def __truediv__(self, part: str) -> Location:
        return self.child(part)

    def __fspath__(self) -> str:
        """A local location is usable wherever a path is (``open``, ``Path``); a remote one is not."""
        if not self.is_local:
            raise TypeError(f"{self.uri} is in object storage, not a local path; read it through hpo.core.storage.Location")
        return self.path

    def local_path(self) -> Path:
        """The path on this machine; only for a local location."""
        if not self.is_local:
            raise ValueError(f"{self.uri} is not on the local filesystem")
        return Path(self.path)

    def cache_key(self) -> str:
        """A short stable name for this location, for a local mirror of its files."""
        return hashlib.sha256(self.uri.encode()).hexdigest()[:16]

    # ------------------------------------------------------------------------------------ queries
    def _type(self) -> Any:
        try:
            return self.fs.get_file_info(self.path).type
        except OSError as err:
            raise ExperimentError(f"{self.uri}: cannot reach the storage: {_cause(err)}") from None

    def exists(self) -> bool:
        import pyarrow.fs

        return self._type() != pyarrow.fs.FileType.NotFound

    def is_file(self) -> bool:
        import pyarrow.fs

        return self._type() == pyarrow.fs.FileType.File

    def is_dir(self) -> bool:
        import pyarrow.fs

        return self._type() == pyarrow.fs.FileType.Directory

    def _entries(self, recursive: bool = False) -> list[Any]:
        import pyarrow.fs

        try:
            return self.fs.get_file_info(pyarrow.fs.FileSelector(self.path, recursive=recursive, allow_not_found=True))
        except OSError as err:
            raise ExperimentError(f"{self.uri}: cannot list it: {_cause(err)}") from None

    def list_dirs(self) -> list[Location]:
        """The folders directly inside, sorted by name."""
        import pyarrow.fs

        dirs = [i.path for i in self._entries() if i.type == pyarrow.fs.FileType.Directory]
        return [Location(self.fs, p.rstrip("/"), self.scheme, self.query) for p in sorted(dirs)]

    def list_files(self, recursive: bool = False) -> list[Location]:
        import pyarrow.fs

        files = [i.path for i in self._entries(recursive) if i.type == pyarrow.fs.FileType.File]
        return [Location(self.fs, p, self.scheme, self.query) for p in sorted(files)]

    def size(self) -> int:
        """Bytes in every file below (0 for a missing folder)."""
        import pyarrow.fs

        return sum(i.size or 0 for i in self._entries(recursive=True) if i.type == pyarrow.fs.FileType.File)

    # -------------------------------------------------------------------------------- read, write
    def read_bytes(self) -> bytes:
        try:
            with self.fs.open_input_stream(self.path) as f:
                return f.read()
        except FileNotFoundError:
            raise
        except OSError as err:
            if "not found" in str(err).lower() or "does not exist" in str(err).lower():
                raise FileNotFoundError(self.uri) from None
            raise ExperimentError(f"{self.uri}: cannot read it: {_cause(err)}") from None

    def read_text(self) -> str:
        return self.read_bytes().decode()

    def read_json(self) -> Any:
        """The JSON value in this file; ``DamagedFile`` names the file when it is not UTF-8 or not JSON."""
        try:
            return json.loads(self.read_text())
        except UnicodeDecodeError as err:
            raise DamagedFile(f"{self.uri}: damaged (not UTF-8 text, byte {err.start}); restore it from a copy or delete it") from None
        except ValueError as err:
            raise DamagedFile(f"{self.uri}: damaged (not valid JSON: {err}); restore it from a copy or delete it") from None

    def write_bytes(self, data: bytes) -> None:
        try:
            if self.is_local:
                self.fs.create_dir(posixpath.dirname(self.path), recursive=True)
            with self.fs.open_output_stream(self.path) as f:
                f.write(data)
        except OSError as err:
            raise ExperimentError(f"{self.uri}: cannot write it: {_cause(err)}") from None

    def write_text(self, text: str) -> None:
        self.write_bytes(text.encode())

    def write_json(self, obj: Any) -> None:
        self.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")

    def delete_dir(self) -> None:
        try:
            self.fs.delete_dir(self.path)
        except FileNotFoundError:
            pass

    def delete_file(self) -> None:
        try:
            self.fs.delete_file(self.path)
        except FileNotFoundError:
            pass

    # ------------------------------------------------------------------- to and from this machine
    def download_file(self, dest: Path) -> Path:
        """Copy this file to ``dest`` (written whole, then renamed: a reader never sees half a file)."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        if self.is_local and Path(self.path).resolve() == dest.resolve():
            return dest
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}")
        tmp.write_bytes(self.read_bytes())
        os.replace(tmp, dest)
        return dest

    def download_dir(self, dest: Path) -> Path:
        """Copy this folder's files below ``dest``, replacing what was there."""
        if self.is_local and Path(self.path).resolve() == dest.resolve():
            return dest
        files = self.list_files(recursive=True)
        if not files:
            raise FileNotFoundError(self.uri)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=_ensure(dest.parent)))
        try:
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda f: f.download_file(tmp / posixpath.relpath(f.path, self.path)), files))
            if dest.exists():
                shutil.rmtree(dest)
            os.replace(tmp, dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return dest

    def upload_file(self, src: Path) -> None:
        if self.is_local and Path(self.path).resolve() == src.resolve():
            return
        self.write_bytes(src.read_bytes())

    def upload_dir(self, src: Path) -> None:
        """Copy the files below ``src`` into this folder (existing files of the same name are replaced)."""
        if self.is_local and Path(self.path).resolve() == src.resolve():
            return
        files = [p for p in src.rglob("*") if p.is_file()]
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda p: self.child(*p.relative_to(src).parts).upload_file(p), files))

    def fetched(self) -> Path:
        """This file on this machine: itself when local, else a cached download (fetched again when
        the stored file's size or modification time changed)."""
        if self.is_local:
            return Path(self.path)
        try:
            info = self.fs.get_file_info(self.path)
        except OSError as err:
            raise ExperimentError(f"{self.uri}: cannot reach the storage: {_cause(err)}") from None
        import pyarrow.fs

        if info.type != pyarrow.fs.FileType.File:
            raise FileNotFoundError(self.uri)
        stamp = f"{info.size}-{info.mtime_ns or 0}"
        dest = self.mirror(stamp, self.name)
        return dest if dest.is_file() else self.download_file(dest)

    def mirror(self, *parts: str) -> Path:
        """A local folder dedicated to this location (itself when it is local), for files read or
        written on this machine and kept in step with it."""
        if self.is_local:
            return Path(self.path, *parts)
        return cache_root().joinpath("mirror", self.cache_key(), *parts)

    # ----------------------------------------------------------------------------------- checking
    def check_writable(self) -> None:
        """Fail fast, before data is loaded or Ray started: ``StorageError`` names the location and the cause."""
        if self.is_local:
            _check_local_dir(Path(self.path))
            return
        import pyarrow.fs

        bucket = self.path.split("/", 1)[0]
        fs = _retrying(self.fs, S3_CHECK_ATTEMPTS)
        try:
            kind = fs.get_file_info(bucket).type
        except OSError as err:
            raise StorageError(f"{self.uri}: cannot reach the storage: {_cause(err)}") from None
        if kind == pyarrow.fs.FileType.NotFound:
            raise StorageError(f"{self.uri}: the bucket {bucket!r} does not exist (or these credentials cannot see it); create it first")
        probe = self.child(META_DIR, f".write-probe-{uuid.uuid4().hex[:8]}")
        try:
            with fs.open_output_stream(probe.path) as f:
                f.write(b"")
            fs.delete_file(probe.path)
        except OSError as err:
            raise StorageError(f"{self.uri}: cannot write there: {_cause(err)}") from None


def s3_options(fs: Any) -> dict[str, Any]:
    """The options an S3 filesystem was built with (region, endpoint, scheme...: what its pickling lists;
    not its retry strategy, which pyarrow leaves out)."""
    return fs.__reduce__()[1][0]


def s3_filesystem(options: dict[str, Any], attempts: int | None = None) -> Any:
    """An S3 filesystem with these ``s3_options`` that tries each request ``attempts`` times (``S3_ATTEMPTS``)."""
    import pyarrow.fs

    attempts = attempts or S3_ATTEMPTS
    return pyarrow.fs.S3FileSystem(**options, retry_strategy=pyarrow.fs.AwsStandardS3RetryStrategy(max_attempts=attempts))


def _retrying(fs: Any, attempts: int) -> Any:
    """An S3 filesystem like ``fs`` that tries each request ``attempts`` times; another kind as it is."""
    import pyarrow.fs

    if not isinstance(fs, pyarrow.fs.S3FileSystem):
        return fs
    return s3_filesystem(s3_options(fs), attempts)


COPY_CHUNK_BYTES = 64 * 2**20


def copy_files(source: str, destination: str, source_filesystem: Any = None, destination_filesystem: Any = None, chunk_size: int = COPY_CHUNK_BYTES, **_: Any) -> None:
    """Copy a file, or a folder's files, as ``pyarrow.fs.copy_files`` does (its keywords; a filesystem left out
    is the local one), raising every failure.

    pyarrow's own copy into object storage can return without an error while a file was not stored: with the
    store going down during an upload, most copies returned normally and left the file out (a trial's
    checkpoint stored without its weights, and every restart from it failed). Each file is written here
    through an output stream and closed, which raises when the store did not take it."""
    import pyarrow.fs

    local = pyarrow.fs.LocalFileSystem()
    src_fs, dst_fs = source_filesystem or local, destination_filesystem or local
    if source_filesystem is None:
        source = os.path.abspath(source)
    if destination_filesystem is None:
        destination = os.path.abspath(destination)
    kind = src_fs.get_file_info(source).type
    if kind == pyarrow.fs.FileType.File:
        pairs = [(source, destination)]
    elif kind == pyarrow.fs.FileType.Directory:
        dst_fs.create_dir(destination, recursive=True)
        pairs = []
        for info in src_fs.get_file_info(pyarrow.fs.FileSelector(source, recursive=True)):
            target = posixpath.join(destination, posixpath.relpath(info.path, source))
            if info.type == pyarrow.fs.FileType.Directory:
                dst_fs.create_dir(target, recursive=True)
            elif info.type == pyarrow.fs.FileType.File:
                pairs.append((info.path, target))
    else:
        raise FileNotFoundError(f"{source}: nothing to copy there")
    for src, dst in pairs:
        with src_fs.open_input_stream(src) as reader:
            out = dst_fs.open_output_stream(dst)
            try:
                while chunk := reader.read(chunk_size):
                    out.write(chunk)
            except BaseException:
                with contextlib.suppress(OSError):  # the write's own error is the one to raise
                    out.close()
                raise
            out.close()


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _check_local_dir(path: Path) -> None:
    existing = path
    while not existing.exists():
        existing = existing.parent
    if existing != path and not existing.is_dir():
        raise StorageError(f"{path}: cannot create the sweep folder: {existing} is a file, not a folder")
    if existing == path and not path.is_dir():
        raise StorageError(f"{path}: storage must be a folder, and this is a file; pick another --storage")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise StorageError(f"{path}: cannot write there ({existing} is not writable for this user); pick another --storage")


def _cause(err: BaseException) -> str:
    """pyarrow's message without the AWS request id (different every call) and on one line."""
    text = " ".join(str(err).split())
    return text.split(" (Request ID:")[0]
