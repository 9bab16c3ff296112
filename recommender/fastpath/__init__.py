"""Request-path speed-ups, optional: the app serves the same answers without them.

- :mod:`~recommender.fastpath.views`: the recommendations endpoints answered from stored
  JSON before DRF is involved (one Redis round trip).
- :mod:`~recommender.fastpath.responses`: the stored responses, checked by a fingerprint
  of the lists and tokens they were made from.
- :mod:`~recommender.fastpath.identity`: the session's user checked against a cached auth
  record instead of a user query.
- :mod:`~recommender.fastpath.throttle_counts`: throttle counts kept in the process and
  added to Redis in batches.
- :mod:`~recommender.fastpath.blocks`: rendered blocks reused while their lists and items
  are unchanged.
- :mod:`~recommender.fastpath.redis_cache` and :mod:`~recommender.fastpath.near_cache`: a
  Redis cache backend that reuses its client and keeps a per-process copy of the keys it
  reads, invalidated by Redis (a site opts in by naming it in ``CACHES``).

``RECOMMENDER["FAST_PATH"] = False`` turns off all but the cache backend (chosen in
``CACHES``); each part also has its own setting (``AUTH_CACHE_TIMEOUT``,
``BLOCK_CACHE_TIMEOUT``, ``THROTTLE_SYNC_INTERVAL``).
"""

from recommender.conf import rec_settings


def enabled():
    """Whether the request-path speed-ups are on (``RECOMMENDER["FAST_PATH"]``)."""
    return bool(rec_settings.FAST_PATH)
