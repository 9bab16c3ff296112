"""Recording interactions from Python: ``track()`` and the login merge."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db.models import Model
from django.http import HttpRequest
from django.utils import timezone

from recommender.conf import rec_settings
from recommender.models import Interaction
from recommender.tracking.csvformat import MAX_TEXT_LENGTH, clean_context, clean_value

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser

#: Session entry that remembers the anonymous session key across login, where
#: Django gives the session a new key.
ANON_SESSION_KEY = "_recommender_anon"


class TrackingError(ValueError):
    """A ``track()`` call with an unknown event, a refused value or no visitor."""


def visitor_of(request):
    """``(user, session_key)`` for a request: the user if logged in, else the session.

    Creates the session of a first-time anonymous visitor (one write, once).
    Returns ``(None, "")`` when anonymous tracking is off.
    """
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return user, ""
    if not rec_settings.TRACK_ANONYMOUS or not hasattr(request, "session"):
        return None, ""
    session = request.session
    if session.session_key is None:
        session.save()
    if session.get(ANON_SESSION_KEY) != session.session_key:
        session[ANON_SESSION_KEY] = session.session_key
    return None, session.session_key


def check_event(event):
    if event not in rec_settings.event_weights:
        known = ", ".join(sorted(rec_settings.event_weights))
        raise TrackingError(f"Unknown event type {event!r}; known types: {known}.")


def track(who: HttpRequest | AbstractBaseUser | str, item: Model | Any, event: str, value: float | None = None,
          context: str = "", timestamp: datetime | None = None) -> Interaction | None:
    """Record one interaction with a single INSERT and return it.

    Parameters
    ----------
    who : HttpRequest, user instance or session key (str)
        A request records its logged-in user, or its anonymous session.
    item : item instance or primary key
        Passing the key avoids loading the item.
    event : str
        ``view``, ``click``, ``add_to_cart``, ``remove_from_cart``, ``purchase``,
        ``rating`` or a type named in ``RECOMMENDER["EVENT_WEIGHTS"]``.
    value : float, optional
        Rating, quantity or amount; refused (``TrackingError``) when
        :func:`recommender.tracking.csvformat.clean_value` refuses it.
    context : str, optional
        The page or recommendation block that led to the event
        (``"<block>:<algorithm>@<run>"``); an impression's or a click's run that is not
        an integer from 0 to :data:`~recommender.tracking.csvformat.MAX_RUN` is refused
        (``TrackingError``).

    Returns ``None`` (and records nothing) for an anonymous request when
    anonymous tracking is off.
    """
    check_event(event)
    try:
        value = clean_value(event, value)
        context = clean_context(event, context)
    except ValueError as exc:
        raise TrackingError(f"track(): {exc}.") from None
    if isinstance(who, HttpRequest):
        user, session_key = visitor_of(who)
        if user is None and not session_key:
            return None
    elif isinstance(who, str):
        user, session_key = None, who
    elif who is not None and getattr(who, "is_authenticated", False):
        user, session_key = who, ""
    else:
        raise TrackingError("track() needs a request, an authenticated user or a session key.")
    item_id = getattr(item, "pk", item)
    if item_id is None:
        raise TrackingError("track() needs a saved item or its primary key.")
    return Interaction.objects.create(
        user=user,
        session_key=session_key or "",
        item_id=item_id,
        event=event,
        value=value,
        context=context[:MAX_TEXT_LENGTH],
        timestamp=timestamp or timezone.now(),
    )


def merge_anonymous(request, user):
    """Give the user the history their anonymous session built before login."""
    anon_key = request.session.get(ANON_SESSION_KEY) if hasattr(request, "session") else None
    if not anon_key:
        return 0
    merged = Interaction.objects.filter(user__isnull=True, session_key=anon_key).update(user=user)
    request.session.pop(ANON_SESSION_KEY, None)
    return merged
