"""A real S3 API on loopback: moto's server in a child process, for the tests (the ``s3`` fixture) and the
soak benchmark (benchmarks/soak.py), which also takes it down and brings it back.

moto keeps every bucket in the memory of its server process, and its server has no option to save them.
So the server process here never exits during an outage: on SIGUSR1 it closes its port and every open
connection (clients are refused, as by a server that is down), on SIGUSR2 it listens again on the same
port, with the same buckets. SIGSTOP / SIGCONT (``pause``, ``resume``) freeze it instead: connections are
still accepted, by the kernel, and then nothing answers, as a hung server does; clients run into their
time-outs. On SIGHUP it reads FOLDER/refuse-completions: while that file is there, every request that completes
a multipart upload (the last step of storing a file) of a key holding the text in it is answered 503
(``refuse_completions``).

Run alone: ``python -m tests.s3_server PORT FOLDER``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

ACCESS_KEY = "hpo-test-access-key"
SECRET_KEY = "hpo-test-secret-key"
REPO = Path(__file__).resolve().parents[1]
REFUSE_FILE = "refuse-completions"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kill_tree(pid: int) -> None:
    import psutil

    try:
        procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for p in procs:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass


class S3Server:
    """moto's S3 server on ``127.0.0.1:port``, in a child process of its own, logging to ``folder/moto.log``."""

    def __init__(self, folder: Path, port: int | None = None):
        self.folder = Path(folder)
        self.port = port or free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self._log: Any = None

    @property
    def env(self) -> dict[str, str]:
        """What every node and client needs: dummy credentials and the endpoint, as a user of MinIO or Ceph
        would set them."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_EC2_METADATA_DISABLED": "true",  # never ask a cloud's metadata address for credentials
            "NO_PROXY": "127.0.0.1,localhost",
        }

    def filesystem(self) -> Any:
        import pyarrow.fs

        return pyarrow.fs.S3FileSystem(
            access_key=ACCESS_KEY, secret_key=SECRET_KEY, endpoint_override=self.endpoint, region="us-east-1", allow_bucket_creation=True
        )

    def start(self, timeout: float = 60) -> S3Server:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._log = open(self.folder / "moto.log", "a")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.s3_server", str(self.port), str(self.folder)],
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO, env=env,
        )
        self.wait_answering(timeout)
        return self

    def answers(self) -> bool:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            opener.open(self.endpoint, timeout=2).read()
            return True
        except OSError:
            return False

    def wait_answering(self, timeout: float = 60) -> None:
        deadline = time.time() + timeout
        while not self.answers():
            if self.proc is None or self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"moto's S3 server did not answer at {self.endpoint}:\n{self.log_tail()}")
            time.sleep(0.2)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join((self.folder / "moto.log").read_text().splitlines()[-lines:])
        except OSError:
            return ""

    def go_down(self, timeout: float = 30) -> None:
        """Close the port and every open connection; the buckets stay in the server's memory."""
        self._signal(signal.SIGUSR1)
        deadline = time.time() + timeout
        while self._listening():
            if time.time() > deadline:
                raise RuntimeError(f"moto's S3 server at {self.endpoint} did not close its port")
            time.sleep(0.1)

    def come_back(self, timeout: float = 60) -> None:
        """Listen again on the same port, with the same buckets."""
        self._signal(signal.SIGUSR2)
        self.wait_answering(timeout)

    def refuse_completions(self, containing: str = "") -> None:
        """Answer 503 to every request that completes the upload of a key holding ``containing``, until
        ``accept_completions``."""
        (self.folder / REFUSE_FILE).write_text(containing)
        self._told(signal.SIGHUP, "refusing completions")

    def accept_completions(self) -> None:
        (self.folder / REFUSE_FILE).unlink(missing_ok=True)
        self._told(signal.SIGHUP, "accepting completions")

    def _told(self, sig: int, answer: str, timeout: float = 10) -> None:
        """Send ``sig`` and wait for the server to log ``answer`` once more."""
        def said() -> int:
            return sum(line.endswith(answer) for line in self.log_tail(10**6).splitlines())

        before = said()
        self._signal(sig)
        deadline = time.time() + timeout
        while said() == before:
            if time.time() > deadline:
                raise RuntimeError(f"moto's S3 server did not say {answer!r}:\n{self.log_tail()}")
            time.sleep(0.05)

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections are accepted and never answered."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def _signal(self, sig: int) -> None:
        assert self.proc is not None and self.proc.poll() is None, f"moto's S3 server is not running:\n{self.log_tail()}"
        os.kill(self.proc.pid, sig)

    def _listening(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            _kill_tree(self.proc.pid)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ------------------------------------------------------------------------------ the server process
def serve(port: int, folder: Path) -> None:
    """moto's server on 127.0.0.1:PORT until SIGTERM; SIGUSR1 takes it down, SIGUSR2 brings it back, SIGHUP
    reads FOLDER/refuse-completions again."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    moto_app = DomainDispatcherApplication(create_backend_app)
    refusing: list[str] = []  # the text of the keys whose uploads are not completed (none: all are)

    def app(environ: dict, start_response: Any) -> Any:
        completes = environ.get("REQUEST_METHOD") == "POST" and "uploadId=" in environ.get("QUERY_STRING", "")
        if completes and refusing and refusing[0] in environ.get("PATH_INFO", ""):
            body = b"<Error><Code>SlowDown</Code><Message>refused by the test server</Message></Error>"
            start_response("503 Slow Down", [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))])
            return [body]
        return moto_app(environ, start_response)

    open_connections: set[socket.socket] = set()
    lock = threading.Lock()

    class Handler(MotoRequestHandler):
        def setup(self) -> None:
            super().setup()
            with lock:
                open_connections.add(self.connection)

        def finish(self) -> None:
            with lock:
                open_connections.discard(self.connection)
            super().finish()

    # Only this (main) thread takes the control signals: the serving threads inherit the mask.
    control = {signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP, signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, control)

    def up() -> tuple[Any, threading.Thread]:
        deadline = time.time() + 30
        while True:
            try:
                server = make_server("127.0.0.1", port, app, threaded=True, request_handler=Handler)
                break
            except OSError:  # the port not yet released
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        print(f"{time.strftime('%H:%M:%S')} listening on 127.0.0.1:{port}", flush=True)
        return server, thread

    server, thread = up()
    while True:
        sig = signal.sigwait(control)
        if sig in (signal.SIGTERM, signal.SIGINT):
            break
        if sig == signal.SIGUSR1 and server is not None:
            server.shutdown()
            server.server_close()
            thread.join()
            with lock:
                for conn in list(open_connections):
                    try:
                        conn.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
            server = None
            print(f"{time.strftime('%H:%M:%S')} down", flush=True)
        elif sig == signal.SIGUSR2 and server is None:
            server, thread = up()
        elif sig == signal.SIGHUP:
            refuse = folder / REFUSE_FILE
            refusing[:] = [refuse.read_text()] if refuse.is_file() else []
            print(f"{time.strftime('%H:%M:%S')} {'refusing' if refusing else 'accepting'} completions", flush=True)
    if server is not None:
        server.shutdown()
        server.server_close()


if __name__ == "__main__":
    serve(int(sys.argv[1]), Path(sys.argv[2]))
