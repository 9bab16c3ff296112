"""System checks for the RECOMMENDER settings (ids recommender.E001...)."""

import numbers
import os
import re

from django.core.checks import Error, Tags, Warning, register
from django.core.exceptions import FieldDoesNotExist

from recommender.conf import DEFAULTS, rec_settings

RATE_RE = re.compile(r"^\d+/(s|sec|m|min|h|hour|d|day)$")


@register(Tags.models)
def check_settings(app_configs=None, **kwargs):
    errors = []
    user = rec_settings.user_settings
    if not isinstance(user, dict):
        return [Error("settings.RECOMMENDER must be a dict.", id="recommender.E000")]
    for key in user:
        if key not in DEFAULTS:
            errors.append(Warning(
                f"Unknown key RECOMMENDER[{key!r}].",
                hint="Known keys: " + ", ".join(sorted(DEFAULTS)),
                id="recommender.W001",
            ))
    errors += _check_item_model()
    errors += _check_events()
    errors += _check_numbers()
    errors += _check_artifact_dir()
    return errors


def _check_item_model():
    label = rec_settings.ITEM_MODEL
    if not label:
        return [Error(
            "RECOMMENDER['ITEM_MODEL'] is not set.",
            hint='Name your product model, e.g. RECOMMENDER = {"ITEM_MODEL": "shop.Product"}.',
            id="recommender.E001",
        )]
    try:
        model = rec_settings.item_model()
    except (LookupError, ValueError):
        return [Error(
            f"RECOMMENDER['ITEM_MODEL'] refers to {label!r}, which is not an installed model.",
            hint="Use 'app_label.ModelName' of a model in INSTALLED_APPS.",
            id="recommender.E002",
        )]
    errors = []
    fields = rec_settings.ITEM_FIELDS
    if not isinstance(fields, dict):
        return [Error("RECOMMENDER['ITEM_FIELDS'] must be a dict.", id="recommender.E003")]
    for role, names in fields.items():
        if role not in DEFAULTS["ITEM_FIELDS"]:
            errors.append(Error(
                f"RECOMMENDER['ITEM_FIELDS'] has an unknown role {role!r}.",
                hint="Roles: " + ", ".join(DEFAULTS["ITEM_FIELDS"]),
                id="recommender.E004",
            ))
            continue
        for name in [names] if isinstance(names, str) else (names or []):
            try:
                field = model._meta.get_field(name)
            except FieldDoesNotExist:
                errors.append(Error(
                    f"RECOMMENDER['ITEM_FIELDS'][{role!r}] names {name!r}, "
                    f"which is not a field of {label}.",
                    hint=f"Set it to a field of {label}, or to None if the model has none.",
                    id="recommender.E005",
                ))
                continue
            if role == "external_id" and not (field.unique or field.primary_key):
                errors.append(Error(
                    f"The external id field {label}.{name} is not unique.",
                    hint="CSV import matches items by this field: it must be unique=True.",
                    id="recommender.E006",
                ))
    return errors


def _check_events():
    weights = rec_settings.EVENT_WEIGHTS
    if not isinstance(weights, dict):
        return [Error("RECOMMENDER['EVENT_WEIGHTS'] must be a dict.", id="recommender.E010")]
    errors = []
    for name, weight in weights.items():
        if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9_]{0,31}", name):
            errors.append(Error(
                f"Event type {name!r} in RECOMMENDER['EVENT_WEIGHTS'] is not a valid name.",
                hint="Use lower-case letters, digits and underscores, at most 32 characters.",
                id="recommender.E011",
            ))
        if isinstance(weight, bool) or not isinstance(weight, numbers.Real):
            errors.append(Error(
                f"The weight of event {name!r} is {weight!r}, not a number.",
                hint='Give a number, e.g. "wishlist": 3.0.',
                id="recommender.E012",
            ))
    return errors


def _check_numbers():
    errors = []
    for key, low, high in (("API_MAX_BATCH", 1, 10_000), ("IMPORT_BATCH_SIZE", 1, 100_000)):
        value = getattr(rec_settings, key)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            errors.append(Error(
                f"RECOMMENDER[{key!r}] is {value!r}; it must be an integer in [{low}, {high}].",
                id="recommender.E020",
            ))
    rates = rec_settings.THROTTLE_RATES
    for scope, rate in (rates or {}).items():
        if rate is not None and not (isinstance(rate, str) and RATE_RE.match(rate)):
            errors.append(Error(
                f"RECOMMENDER['THROTTLE_RATES'][{scope!r}] is {rate!r}.",
                hint='Write "<number>/<sec|min|hour|day>", e.g. "600/min", or None for no limit.',
                id="recommender.E021",
            ))
    days = rec_settings.ANONYMOUS_RETENTION_DAYS
    if days is not None and (isinstance(days, bool) or not isinstance(days, int) or days < 1):
        errors.append(Error(
            f"RECOMMENDER['ANONYMOUS_RETENTION_DAYS'] is {days!r}.",
            hint="A positive number of days, or None to keep anonymous history.",
            id="recommender.E022",
        ))
    for key in ("AUTH_CACHE_TIMEOUT", "BLOCK_CACHE_TIMEOUT", "ITEM_CACHE_TIMEOUT"):
        timeout = getattr(rec_settings, key)
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 0):
            errors.append(Error(
                f"RECOMMENDER[{key!r}] is {timeout!r}.",
                hint="Seconds (an integer >= 0); 0 or None turns this cache off.",
                id="recommender.E023",
            ))
    interval = rec_settings.THROTTLE_SYNC_INTERVAL
    if interval is not None and (isinstance(interval, bool) or not isinstance(interval, int | float)
                                 or not 0 <= interval <= 10):
        errors.append(Error(
            f"RECOMMENDER['THROTTLE_SYNC_INTERVAL'] is {interval!r}.",
            hint="Seconds between 0 and 10 (e.g. 0.05); 0 or None counts every request in Redis at once.",
            id="recommender.E024",
        ))
    return errors


def _check_artifact_dir():
    path = rec_settings.ARTIFACT_DIR
    if path is None:
        return []
    probe = path
    while probe and not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if probe and not (os.path.isdir(probe) and os.access(probe, os.W_OK)):
        return [Error(
            f"RECOMMENDER['ARTIFACT_DIR'] {path!r} is not a writable directory.",
            hint="Give the worker processes write access, or choose another directory.",
            id="recommender.E030",
        )]
    return []
