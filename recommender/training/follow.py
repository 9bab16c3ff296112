"""Following a logged-in shopper: their "recommended for you" list is re-scored after what they do.

An interaction of a logged-in user that changes their history (an event whose weight is not
zero: views, clicks, cart changes, purchases, ratings; not impressions) queues the task
``recommender.refresh_user`` after the database commit. The task re-scores the user's list
of each followed algorithm (FOLLOW_ALGORITHMS, default DEFAULT_ALGORITHM) from their current
history with the active model (:func:`recommender.training.refresh.refresh_user`) and
publishes it: the list's cache value changes, and with it every stored response and block
built from it.

- Debounce: a cache key per user marks a task as pending (``cache.add``). The first event
  of a burst adds it and sends the task, delayed by FOLLOW_DEBOUNCE_SECONDS; later events
  find the key and send nothing. The task deletes the key *before* it reads the history,
  so an event committed after that read sends a new task, and one committed before it is
  in the history read. A lost task blocks its user for :data:`PENDING_SECONDS` at most.
- The request path only adds the key and sends the message; with the cache unreachable
  nothing is sent. The send has no publish retries; when it fails (broker down) the event
  is stored all the same, one warning is logged, and this process sends nothing for
  :data:`BROKER_RETRY_SECONDS` (so an outage costs no request a failed connection each).
- Bulk inserts send no ``post_save``: their callers call :func:`events_recorded`.
"""

import logging
import threading
import time

from django.db import transaction
from django.db.models.signals import post_save

from recommender.conf import rec_settings
from recommender.models import Interaction
from recommender.serving import published
from recommender.training import dispatch

logger = logging.getLogger(__name__)

#: Lifetime of a user's pending mark (seconds): how long a lost task can hold back the
#: next one for that user.
PENDING_SECONDS = 60
#: After a failed send, this process sends no task for this many seconds.
BROKER_RETRY_SECONDS = 30.0


class _Broker:
    """Whether the last send failed, and until when this process sends nothing."""

    def __init__(self):
        self.down = False
        self.retry_at = 0.0
        self.lock = threading.Lock()


_broker = _Broker()


def pending_key(user_pk):
    return f"recommender:follow:pending:{user_pk}"


def algorithms():
    """The algorithms whose "for you" lists follow the user."""
    return list(rec_settings.FOLLOW_ALGORITHMS or [rec_settings.list_algorithm("for_user")])


def changes_history(event):
    """Whether an event of this type changes the user's row (a non-zero weight)."""
    return bool(rec_settings.event_weights.get(event))


def events_recorded(user_pk, events=None):
    """Queue the re-scoring of a user's lists after the current transaction commits.

    ``events``: the event types just stored (None: the history changed anyway, e.g. an
    anonymous history merged at login). Nothing is queued for anonymous visitors, for
    events that change no row, or with FOLLOW_USERS off.
    """
    if not user_pk or not rec_settings.FOLLOW_USERS:
        return
    if events is not None and not any(changes_history(event) for event in events):
        return
    transaction.on_commit(lambda: schedule(user_pk))


def schedule(user_pk):
    """Send the user's task unless one is pending; returns whether a task was sent."""
    if _broker.down and time.monotonic() < _broker.retry_at:
        return False
    if published.cache_down():
        return False
    cache, key = published.get_cache(), pending_key(user_pk)
    try:
        if not cache.add(key, 1, PENDING_SECONDS):
            return False  # a task for this user has not started yet: it will read this event
    except published.CACHE_ERRORS:
        return False
    try:
        dispatch.refresh_user(user_pk, countdown=rec_settings.FOLLOW_DEBOUNCE_SECONDS)
    except Exception as exc:  # noqa: BLE001  (any broker error: the event is stored, the list waits)
        _sent(False, exc)
        try:
            cache.delete(key)
        except published.CACHE_ERRORS:
            pass
        return False
    _sent(True)
    return True


def _sent(ok, exc=None):
    with _broker.lock:
        if ok:
            if _broker.down:
                logger.warning("task broker reachable again: logged-in users' lists follow their events again")
            _broker.down = False
            return
        if not _broker.down:
            logger.warning("sending recommender.refresh_user failed (%s: %s); events are stored, users' lists "
                           "are not re-scored until the broker answers again", type(exc).__name__, exc)
        _broker.down = True
        _broker.retry_at = time.monotonic() + BROKER_RETRY_SECONDS


def run(user_pk):
    """The task: re-score the user's lists. Returns ``{algorithm: list length or None}``."""
    from recommender.training import refresh

    try:
        published.get_cache().delete(pending_key(user_pk))  # events from now on send a new task
    except published.CACHE_ERRORS:
        pass
    started = time.perf_counter()
    done = {algorithm: refresh.refresh_user(algorithm, user_pk) for algorithm in algorithms()}
    logger.debug("user %s: lists re-scored in %.1f ms: %s", user_pk, (time.perf_counter() - started) * 1000, done)
    return done


def _interaction_saved(sender, instance, created, raw=False, **kwargs):
    if created and not raw and instance.user_id:
        events_recorded(instance.user_id, [instance.event])


def connect():
    """Connect the receiver (call from ``AppConfig.ready()``); safe to call twice."""
    post_save.connect(_interaction_saved, sender=Interaction, dispatch_uid="recommender.training.follow")
