"""Who is asking, without the user query: the session's claim checked against a cached record.

Django resolves ``request.user`` by loading the session, querying the user row and
comparing the session's auth hash with ``user.get_session_auth_hash()``. On the
recommendations endpoint that user query cost more than the rest of the response
(docs/serving.md). This module lets the endpoint's fast path do the same check
without the query:

- :func:`claim` reads what the session says (user key, backend, auth hash). It is
  *unverified*.
- After Django itself resolved a logged-in user from the session, :func:`remember`
  caches ``backend + user.get_session_auth_hash()`` under the user's key, for
  ``RECOMMENDER['AUTH_CACHE_TIMEOUT']`` seconds.
- :func:`verify` accepts a claim only when the cached record holds the same backend
  and, compared in constant time, the same hash. Anything else (no record, another
  hash, a hash from ``SECRET_KEY_FALLBACKS``) goes through Django's own resolution.

Saving or deleting a user removes the record and blocks it from being written again
for :data:`TOMBSTONE_SECONDS`, so a password change, a deactivation or a deletion takes
effect at once, even against a request that resolved the user just before the change.
Changes that bypass model signals (``QuerySet.update()``, raw SQL) take effect when the
record expires; a custom authentication backend whose ``get_user`` depends on more
than the user row likewise. Set ``AUTH_CACHE_TIMEOUT`` to ``None`` to turn this off.
"""

from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.core.exceptions import ValidationError
from django.db.models.signals import post_delete, post_save
from django.utils.crypto import constant_time_compare

from recommender.conf import rec_settings
from recommender.serving import published

__all__ = ["Claim", "claim", "auth_key", "verify", "remember", "forget", "connect"]

#: After a user changed, no record is written for them for this long (seconds).
TOMBSTONE_SECONDS = 60
_TOMBSTONE = b"-"


def auth_key(user_pk):
    return f"recommender:auth:{user_pk}"


class Claim:
    """What a session says about its user; not yet verified."""

    __slots__ = ("pk", "backend", "session_hash")

    def __init__(self, pk, backend, session_hash):
        self.pk, self.backend, self.session_hash = pk, backend, session_hash

    def __repr__(self):
        return f"Claim(pk={self.pk!r}, backend={self.backend!r})"


def enabled():
    return bool(rec_settings.AUTH_CACHE_TIMEOUT) and bool(rec_settings.FAST_PATH)


def claim(request):
    """The logged-in user the request's session names, or None (anonymous, odd or no session)."""
    session = getattr(request, "session", None)
    if session is None:
        return None
    try:
        raw_pk = session[SESSION_KEY]
        backend = session[BACKEND_SESSION_KEY]
        session_hash = session[HASH_SESSION_KEY]
    except KeyError:
        return None
    if not session_hash or not isinstance(session_hash, str) or backend not in settings.AUTHENTICATION_BACKENDS:
        return None
    try:
        pk = get_user_model()._meta.pk.to_python(raw_pk)
    except ValidationError:
        return None
    return Claim(pk, backend, session_hash)


def _record(backend, auth_hash):
    return f"{backend}\n{auth_hash}".encode()


def verify(claim, raw):
    """Whether the cached record ``raw`` (bytes or None) confirms ``claim``."""
    if claim is None or not isinstance(raw, bytes) or raw == _TOMBSTONE:
        return False
    backend, sep, auth_hash = raw.decode(errors="replace").partition("\n")
    return bool(sep) and backend == claim.backend and constant_time_compare(auth_hash, claim.session_hash)


def remember(request, user):
    """Cache the record of ``user``, whom Django just resolved from this request's session.

    Written only if absent: an existing record or a tombstone (the user changed a
    moment ago) is left alone.
    """
    timeout = rec_settings.AUTH_CACHE_TIMEOUT
    session = getattr(request, "session", None)
    if not timeout or session is None or not getattr(user, "is_authenticated", False):
        return
    backend = session.get(BACKEND_SESSION_KEY)
    if backend is None or str(session.get(SESSION_KEY)) != str(user.pk):
        return
    auth_hash = user.get_session_auth_hash()
    if session.get(HASH_SESSION_KEY) != auth_hash:
        return  # resolved through a fallback secret: let Django keep handling it
    value = _record(backend, auth_hash)

    def add():
        cache, client = published.backend()
        if client is not None:
            key = cache.make_key(auth_key(user.pk))
            client.set(key, value, ex=int(timeout), nx=True)
            published.forget_near([key])
        else:
            cache.add(auth_key(user.pk), value, timeout)

    published.write("auth record", add)  # skipped while the cache is unreachable: Django checks the session


def forget(user_pk):
    """Drop the user's record and keep it from being re-written for a minute.

    With the cache unreachable the tombstone is written when it answers again, so a
    record cached before the outage is not trusted after it.
    """
    def tombstone():
        cache, client = published.backend()
        if client is not None:
            key = cache.make_key(auth_key(user_pk))
            client.set(key, _TOMBSTONE, ex=TOMBSTONE_SECONDS)
            published.forget_near([key])
        else:
            cache.set(auth_key(user_pk), _TOMBSTONE, TOMBSTONE_SECONDS)

    published.write("auth tombstone", tombstone, replay_key=auth_key(user_pk))


def _user_changed(sender, instance, created=False, update_fields=None, **kwargs):
    if created:
        return  # a new user has no record yet (a deleted user's record was dropped with them)
    if update_fields is not None and set(update_fields) <= {"last_login"}:
        return  # a login: neither the auth hash nor the account's state changed
    if instance.pk is not None:
        forget(instance.pk)


def connect():
    """Forget a user's record whenever the user is saved or deleted (from ``AppConfig.ready()``)."""
    model = get_user_model()
    post_save.connect(_user_changed, sender=model, dispatch_uid="recommender.fastpath.identity.user_saved")
    post_delete.connect(_user_changed, sender=model, dispatch_uid="recommender.fastpath.identity.user_deleted")
