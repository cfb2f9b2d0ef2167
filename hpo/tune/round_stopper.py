"""The Tune stopper of the finalists' run (kept apart so that ``hpo.promotion.finalists`` loads without Ray)."""

from __future__ import annotations

import json
from typing import Any

from ray.tune import Stopper


class RoundStopper(Stopper):
    """Ends each finalist trial at its configuration's winning round; nothing else stops it early."""

    def __init__(self, rounds: dict[str, int]):
        self.rounds = rounds  # Tune's config (with the seed) as sorted JSON -> rounds

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        target = self.rounds.get(json.dumps(result.get("config", {}), sort_keys=True))
        return target is not None and int(result.get("training_iteration", 0)) >= target

    def stop_all(self) -> bool:
        return False
