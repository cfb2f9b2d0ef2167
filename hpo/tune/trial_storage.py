"""The sweep's object storage as the trials' processes reach it.

Ray sends each trial's process the filesystem Tune stores the sweep with, pickled, and pyarrow pickles an S3
filesystem without its retry strategy: a trial's requests were tried pyarrow's default 3 times (2-3 s against
a store that is down) where the driver's are tried ``S3_ATTEMPTS`` times, so a storage hiccup of seconds that
the driver rode out failed the trials that were storing a checkpoint. And Ray stores files (a checkpoint, the
experiment folder) with ``pyarrow.fs.copy_files``, which can return without an error when the file was not
stored (``hpo.core.storage.copy_files``): a trial reported a round whose checkpoint had no weights in the
bucket, and each restart from it failed until the trial was given up.

``send_s3_with_retries`` (called once Ray runs) has Ray send an S3 filesystem as its options and the driver's
retry bound, rebuilt with both on arrival. Rebuilding one, and the call itself in the driver, route Ray's
copies into storage in that process through ``hpo.core.storage.copy_files``, which raises such a failure: the
round is then not reported, and the trial is restarted from its last stored checkpoint and runs that round
again.
"""

from __future__ import annotations

from typing import Any

from hpo.core import storage
from hpo.tune._internals import route_ray_uploads


def as_sent(fs: Any) -> dict[str, Any]:
    """What Ray sends of an S3 filesystem: its options and this process's retry bound."""
    return {"options": storage.s3_options(fs), "attempts": storage.S3_ATTEMPTS}


def rebuilt(sent: dict[str, Any]) -> Any:
    """An S3 filesystem arriving in a process from Ray, with the sender's retry bound; Ray's uploads in this
    process checked from now on."""
    route_ray_uploads(storage.copy_files)
    return storage.s3_filesystem(sent["options"], sent["attempts"])


def send_s3_with_retries() -> None:
    """How Ray sends S3 filesystems to its workers from now on (Ray must be running), and this process's own
    copies into storage checked."""
    import pyarrow.fs
    import ray.util

    ray.util.register_serializer(pyarrow.fs.S3FileSystem, serializer=as_sent, deserializer=rebuilt)
    route_ray_uploads(storage.copy_files)
