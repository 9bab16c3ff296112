"""Experiments: validation, deterministic assignment and exposures.

Assignment (docs/online-metrics.md):

- The assignment key is ``"u:<user pk>"`` for a logged-in user and ``"s:<session key>"``
  for an anonymous visitor. A site keeps a visitor's variant across login by calling
  :func:`carry_at_login` in its ``user_logged_in`` receiver: the anonymous key is kept in
  the session (Django's ``login()`` keeps the session's data), :func:`assignment_key`
  returns it for the rest of that session, and the visitor's exposure row gets the user.
- ``variant_for(experiment, key)``: SHA-256 of ``"<salt>:<key>"`` mapped to [0, 1) and
  walked along the variants' cumulative shares (in id order). The same key always gets the
  same variant; different salts give independent splits.
- :func:`algorithm_for` reads the running experiments from a per-process copy, reloaded
  when the cache token changes (saving or deleting an experiment or a variant changes it),
  checked at most every ``EXPERIMENT_CACHE_SECONDS``: no query per request once warm.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from typing import NamedTuple

from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.translation import gettext as _

from recommender.conf import rec_settings
from recommender.serving import published

TOKEN_KEY = "recommender:experiments:token"
#: Session entry holding the assignment key carried across login.
SESSION_KEY = "_recommender_xp_key"
SHARE_TOLERANCE = 1e-6


class VariantSpec(NamedTuple):
    name: str
    algorithm: str  # "" for a control that shows no block
    share: float


class ExperimentSpec(NamedTuple):
    """What assignment needs of an experiment, without the ORM."""

    id: int
    salt: str
    blocks: tuple
    variants: tuple  # of VariantSpec, in id order
    start: object  # aware datetime or None
    stop: object


class Assignment(NamedTuple):
    """A visitor's variant for a block: ``algorithm`` is None for a control that shows no block."""

    algorithm: str | None
    experiment_id: int
    variant: str


# Validation -------------------------------------------------------------------------


def validate_experiment(experiment, variants=None):
    """Raise ``ValidationError`` unless ``experiment`` (with ``variants``, default its saved
    ones) can run: blocks named, at least two variants with distinct names, known
    algorithms, shares in [0, 1] adding up to 1, and, when it is running, none of its
    blocks governed by another running experiment."""
    from recommender.models import Experiment

    errors = {}
    blocks = experiment.blocks
    if not isinstance(blocks, list) or not blocks or not all(isinstance(b, str) and b for b in blocks):
        errors["blocks"] = _("Name at least one block, as a list of block names.")
    if variants is None:
        variants = list(experiment.variants.all()) if experiment.pk else []
    problems = []
    if len(variants) < 2:
        problems.append(_("An experiment needs at least two variants."))
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        problems.append(_("Variant names must differ."))
    known = rec_settings.ALGORITHMS
    for v in variants:
        if v.algorithm and v.algorithm not in known:
            problems.append(_("Variant “%(name)s”: unknown algorithm “%(algorithm)s”.")
                            % {"name": v.name, "algorithm": v.algorithm})
        if not 0 <= v.share <= 1:
            problems.append(_("Variant “%(name)s”: the share must be between 0 and 1, not %(share)s.")
                            % {"name": v.name, "share": v.share})
    total = sum(v.share for v in variants)
    if variants and abs(total - 1) > SHARE_TOLERANCE:
        problems.append(_("The variants' shares add up to %(total)s, not 1.") % {"total": round(total, 6)})
    if problems:
        errors["variants"] = problems
    if experiment.status == Experiment.Status.RUNNING and isinstance(blocks, list):
        others = Experiment.objects.filter(status=Experiment.Status.RUNNING).exclude(pk=experiment.pk)
        taken = {b: other.name for other in others for b in (other.blocks or [])}
        clash = [f"{b} ({taken[b]})" for b in blocks if b in taken]
        if clash:
            errors["blocks"] = _("Already governed by a running experiment: %(blocks)s.") % {
                "blocks": ", ".join(clash)}
    if experiment.start and experiment.stop and experiment.stop <= experiment.start:
        errors["stop"] = _("The stop must come after the start.")
    if errors:
        raise ValidationError(errors)


def start(experiment, when=None):
    """Validate and start ``experiment`` now (or at ``when``)."""
    from recommender.models import Experiment

    experiment.status = Experiment.Status.RUNNING
    experiment.start = experiment.start or when or timezone.now()
    validate_experiment(experiment)
    experiment.save()
    return experiment


def stop(experiment, when=None):
    from recommender.models import Experiment

    experiment.status = Experiment.Status.STOPPED
    experiment.stop = when or timezone.now()
    experiment.save()
    return experiment


# Assignment -------------------------------------------------------------------------


def bucket(salt: str, key: str) -> float:
    """A uniform number in [0, 1) from ``salt`` and ``key``, the same on every machine."""
    digest = hashlib.sha256(f"{salt}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def variant_for(experiment, visitor_key: str):
    """The variant (a ``Variant`` or ``VariantSpec``) that ``visitor_key`` gets in ``experiment``."""
    variants = experiment.variants if isinstance(experiment, ExperimentSpec) else list(experiment.variants.all())
    if not variants:
        return None
    point, edge = bucket(experiment.salt, visitor_key), 0.0
    for variant in variants:
        edge += variant.share
        if point < edge:
            return variant
    return variants[-1]  # shares add up to 1 within rounding


def assignment_key(user=None, session_key="", session=None):
    """The key a visitor is assigned by: the key carried across login, else ``u:<pk>`` or ``s:<key>``."""
    carried = session.get(SESSION_KEY) if session is not None else None
    if carried:
        return carried
    if user is not None and getattr(user, "is_authenticated", False):
        return f"u:{user.pk}"
    return f"s:{session_key}" if session_key else ""


def carry_at_login(request, user, anonymous_key=None):
    """Keep the anonymous visitor's assignment key for the rest of the session after login.

    Call it from a ``user_logged_in`` receiver, before ``merge_anonymous`` forgets the
    anonymous key (or pass ``anonymous_key``). Links the session's exposures to the user.
    """
    from recommender.models import Exposure
    from recommender.tracking.events import ANON_SESSION_KEY

    session = getattr(request, "session", None)
    if session is None:
        return None
    anonymous_key = anonymous_key or session.get(ANON_SESSION_KEY)
    if not anonymous_key or session.get(SESSION_KEY):
        return session.get(SESSION_KEY)
    key = session[SESSION_KEY] = f"s:{anonymous_key}"
    Exposure.objects.filter(key=key, user__isnull=True).update(user=user)
    return key


class _Running:
    """This process's copy of the running experiments, by block."""

    def __init__(self):
        self.lock = threading.Lock()
        self.token = None
        self.checked = 0.0
        self.by_block = {}

    def get(self):
        now = time.monotonic()
        if now - self.checked < float(rec_settings.EXPERIMENT_CACHE_SECONDS or 0) and self.token is not None:
            return self.by_block
        # through the serving's guarded reads: a cache outage reads nothing, never raises
        token = published.get_many([TOKEN_KEY]).get(TOKEN_KEY)
        if token is None:
            token = bump_token()
        if token != self.token:
            by_block = load_running()
            with self.lock:
                self.by_block, self.token = by_block, token
        self.checked = now
        return self.by_block

    def clear(self):
        with self.lock:
            self.token, self.checked, self.by_block = None, 0.0, {}


_running = _Running()



def bump_token():
    """Tell every process to reload the running experiments (on its next check)."""
    token = f"{time.time_ns()}"
    published.cache_set(TOKEN_KEY, token, None, replay=True)  # skipped (and replayed later) during an outage
    _running.checked = 0.0
    return token


def load_running():
    """``{block: ExperimentSpec}`` of the experiments whose status is running (one query each table)."""
    from recommender.models import Experiment

    by_block = {}
    for experiment in Experiment.objects.filter(status=Experiment.Status.RUNNING).prefetch_related("variants"):
        spec = ExperimentSpec(experiment.pk, experiment.salt, tuple(experiment.blocks or ()),
                              tuple(VariantSpec(v.name, v.algorithm, v.share)
                                    for v in sorted(experiment.variants.all(), key=lambda v: v.pk)),
                              experiment.start, experiment.stop)
        for block in spec.blocks:
            by_block[block] = spec
    return by_block


def algorithm_for(block, user=None, session_key="", key=None, now=None):
    """The visitor's :class:`Assignment` for ``block``, or None when no running experiment governs it.

    ``key`` (from :func:`assignment_key`) overrides the key built from ``user`` and
    ``session_key``. A visitor with no key (no session) is left out of experiments (None).
    """
    spec = _running.get().get(block)
    if spec is None:
        return None
    now = now or timezone.now()
    if (spec.start and now < spec.start) or (spec.stop and now >= spec.stop):
        return None
    key = key or assignment_key(user, session_key)
    if not key:
        return None
    variant = variant_for(spec, key)
    return Assignment(variant.algorithm or None, spec.id, variant.name)


_recorded = OrderedDict()
_RECORDED_MAX = 10_000


def record_exposure(assignment, key, user=None, session_key="", user_id=None):
    """Record that ``key`` was exposed to ``assignment``'s variant (one INSERT, ignored when known).

    ``user`` (a user object) or ``user_id`` names a logged-in visitor. A process remembers
    the last 10,000 exposures it recorded and skips them.
    """
    from recommender.models import Exposure

    if assignment is None or not key:
        return False
    seen = (assignment.experiment_id, key)
    if seen in _recorded:
        return False
    if user is not None and getattr(user, "is_authenticated", False):
        user_id = user.pk
    Exposure.objects.bulk_create([Exposure(experiment_id=assignment.experiment_id, variant=assignment.variant,
                                           key=key, user_id=user_id,
                                           session_key="" if user_id is not None else session_key)],
                                 ignore_conflicts=True)
    _recorded[seen] = True
    while len(_recorded) > _RECORDED_MAX:
        _recorded.popitem(last=False)
    return True


def governs(block):
    """Whether a running experiment governs ``block`` (this process's copy; no query once warm)."""
    return block in _running.get()


def assigned(request, block):
    """``(algorithm, show)`` of the visitor of ``request`` for ``block``.

    ``algorithm`` is the variant's algorithm when a running experiment governs the block
    (the exposure is recorded), else None (serve as usual); ``show`` is False for a
    "no block" control. A visitor with neither a login nor a session is left out. The
    template tags and the recommendation endpoints call it when they are not given an
    algorithm.
    """
    session = getattr(request, "session", None)
    session_key = getattr(session, "session_key", None) or ""
    user = getattr(request, "user", None)
    user = user if user is not None and getattr(user, "is_authenticated", False) else None
    key = assignment_key(user, session_key, session)
    assignment = algorithm_for(block, key=key)
    if assignment is None:
        return None, True
    record_exposure(assignment, key, user=user, session_key=session_key)
    return assignment.algorithm, assignment.algorithm is not None
