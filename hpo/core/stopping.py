"""Whether the sweep in this process is being stopped by a signal (Ctrl-C, SIGTERM).

Set by the driver on the first signal. Tune then ends its run loop, saves the experiment state and
stops the running trials as if they had ended: while this is set the Tune callbacks wait seconds, not
minutes, for the W&B loggers, and delete no checkpoint (the resume needs the running trials' ones).
"""

from __future__ import annotations

import threading

STOPPING = threading.Event()
