"""Test-only engines: slow or failing versions of the popularity engine."""

import time
from pathlib import Path

from recommender.engine.popular import Popular


class SlowPopular(Popular):
    """Sleeps in ``fit`` (after touching ``marker``), so a test can kill its worker mid-training."""

    def __init__(self, *, by="users", sleep_seconds=0.0, marker=""):
        super().__init__(by=by)
        self.sleep_seconds = sleep_seconds
        self.marker = marker

    def _fit(self, X, item_features=None, **kwargs):
        if self.marker:
            Path(self.marker).touch()
        time.sleep(self.sleep_seconds)
        return super()._fit(X, item_features=item_features, **kwargs)


class FailingPopular(Popular):
    def _fit(self, X, item_features=None, **kwargs):
        raise RuntimeError("the engine broke on purpose")
