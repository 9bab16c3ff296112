"""System checks for the RECOMMENDER settings (ids recommender.E001...; docs/checks.md lists them)."""

import importlib
import numbers
import os
import re

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.core.exceptions import FieldDoesNotExist
from django.utils.module_loading import import_string

from recommender.conf import DEFAULTS, rec_settings

RATE_RE = re.compile(r"^\d+/(s|sec|m|min|h|hour|d|day)$")

#: Settings naming one algorithm of ALGORITHMS each.
ALGORITHM_SETTINGS = ("DEFAULT_ALGORITHM", "SIMILAR_ALGORITHM", "BOUGHT_TOGETHER_ALGORITHM",
                      "TRENDING_ALGORITHM", "POPULAR_ALGORITHM")

#: Integer settings: (key, lowest, highest or None, None allowed).
INTEGERS = (
    ("API_MAX_BATCH", 1, 10_000, False),
    ("IMPORT_BATCH_SIZE", 1, 100_000, False),
    ("SERVED_LIST_LENGTH", 1, None, False),
    ("REFRESH_CHUNK_SIZE", 1, None, False),
    ("KEEP_VERSIONS", 0, None, False),
    ("STALE_RUN_SECONDS", 1, None, False),
    ("QUEUED_RUN_SECONDS", 1, None, False),
    ("RETRAIN_AFTER_INTERACTIONS", 1, None, True),
    ("TRUSTED_PROXY_COUNT", 0, None, True),
    ("API_MAX_JSON_DEPTH", 3, None, True),
    ("SAME_LINE_CAP", 0, None, False),
)


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


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
    errors += _check_algorithms()
    errors += _check_caches()
    errors += _check_schedule()
    return errors


@register(Tags.caches, deploy=True)
def check_deploy_cache(app_configs=None, **kwargs):
    """``check --deploy``: a production site runs several processes, which must share the cache."""
    backend = _cache_backend(rec_settings.CACHE_ALIAS)
    if backend is None:
        return []
    from django.core.cache.backends.dummy import DummyCache
    from django.core.cache.backends.locmem import LocMemCache

    if issubclass(backend, LocMemCache):
        msg = ("The recommender's cache (CACHES[{alias!r}]) is a local-memory cache: each web and worker "
               "process keeps its own copy, so a process serves the lists it cached for up to CACHE_TIMEOUT "
               "after a retrain replaced them.")
    elif issubclass(backend, DummyCache):
        msg = ("The recommender's cache (CACHES[{alias!r}]) is the dummy cache: every recommendation block and "
               "API request reads its lists and items from the database, and the fast path stores nothing.")
    else:
        return []
    return [Warning(
        msg.format(alias=rec_settings.CACHE_ALIAS),
        hint='Use a cache all processes share, e.g. "recommender.fastpath.redis_cache.RedisCache" on Redis.',
        id="recommender.W051",
    )]


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
        if names is None:
            continue
        if role == "text":
            valid = isinstance(names, list | tuple) and all(isinstance(name, str) for name in names)
            hint = 'A list of field names, e.g. "text": ["description"] (a string is not a list).'
        else:
            valid = isinstance(names, str)
            hint = f'One field name, e.g. "{role}": "{DEFAULTS["ITEM_FIELDS"][role] or "sku"}", or None.'
        if not valid:
            errors.append(Error(
                f"RECOMMENDER['ITEM_FIELDS'][{role!r}] is {names!r}.", hint=hint, id="recommender.E007",
            ))
            continue
        for name in [names] if isinstance(names, str) else names:
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
            errors += _check_item_field(label, role, name, field)
    return errors


def _check_item_field(label, role, name, field):
    if role == "external_id" and not (field.unique or field.primary_key):
        return [Error(
            f"The external id field {label}.{name} is not unique.",
            hint="CSV import matches items by this field: it must be unique=True.",
            id="recommender.E006",
        )]
    if role in ("title", "price", "text") and field.is_relation:
        return [Error(
            f"RECOMMENDER['ITEM_FIELDS'][{role!r}] names {label}.{name}, a relation.",
            hint=f"The {role} is read as a value of the item's own row: name a column such as a CharField"
                 + (" or DecimalField." if role == "price" else "."),
            id="recommender.E008",
        )]
    if role == "available" and field.get_internal_type() != "BooleanField":
        return [Error(
            f"RECOMMENDER['ITEM_FIELDS']['available'] names {label}.{name}, a {field.get_internal_type()}.",
            hint="Items are filtered with available=True: name a BooleanField, or None if all items are for sale.",
            id="recommender.E009",
        )]
    return []


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
        if not _is_number(weight):
            errors.append(Error(
                f"The weight of event {name!r} is {weight!r}, not a number.",
                hint='Give a number, e.g. "wishlist": 3.0.',
                id="recommender.E012",
            ))
    excluded = rec_settings.EXCLUDE_EVENTS
    known = rec_settings.event_weights
    if excluded is not None and not isinstance(excluded, list | tuple | set | frozenset):
        unknown = [excluded]
    else:
        unknown = [name for name in excluded or () if name not in known]
    if unknown:
        errors.append(Error(
            f"RECOMMENDER['EXCLUDE_EVENTS'] names {', '.join(map(repr, unknown))}, not a known event type.",
            hint="A list of event types (built-in or in EVENT_WEIGHTS): " + ", ".join(known),
            id="recommender.E013",
        ))
    return errors


def _check_numbers():
    errors = []
    for key, low, high, none_ok in INTEGERS:
        if key not in DEFAULTS:
            continue
        value = getattr(rec_settings, key)
        if value is None and none_ok:
            continue
        if not _is_int(value) or value < low or (high is not None and value > high):
            span = f"in [{low}, {high}]" if high is not None else f">= {low}"
            errors.append(Error(
                f"RECOMMENDER[{key!r}] is {value!r}; it must be an integer {span}"
                + (" or None." if none_ok else "."),
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
    if days is not None and (not _is_int(days) or days < 1):
        errors.append(Error(
            f"RECOMMENDER['ANONYMOUS_RETENTION_DAYS'] is {days!r}.",
            hint="A positive number of days, or None to keep anonymous history.",
            id="recommender.E022",
        ))
    for key in ("AUTH_CACHE_TIMEOUT", "BLOCK_CACHE_TIMEOUT", "ITEM_CACHE_TIMEOUT", "CACHE_TIMEOUT"):
        timeout = getattr(rec_settings, key)
        if timeout is not None and (not _is_int(timeout) or timeout < 0):
            errors.append(Error(
                f"RECOMMENDER[{key!r}] is {timeout!r}.",
                hint=("Seconds (an integer >= 0); None keeps the lists until they are replaced."
                      if key == "CACHE_TIMEOUT" else "Seconds (an integer >= 0); 0 or None turns this cache off."),
                id="recommender.E023",
            ))
    interval = rec_settings.THROTTLE_SYNC_INTERVAL
    if interval is not None and (not _is_number(interval) or not 0 <= interval <= 10):
        errors.append(Error(
            f"RECOMMENDER['THROTTLE_SYNC_INTERVAL'] is {interval!r}.",
            hint="Seconds between 0 and 10 (e.g. 0.05); 0 or None counts every request in Redis at once.",
            id="recommender.E024",
        ))
    margin = rec_settings.GATE_MARGIN
    if not _is_number(margin) or not 0 <= margin < 1:
        errors.append(Error(
            f"RECOMMENDER['GATE_MARGIN'] is {margin!r}.",
            hint="A share in [0, 1): 0.05 activates a new version reaching 95% of the active one's NDCG@10.",
            id="recommender.E025",
        ))
    fraction = rec_settings.EVALUATION_FRACTION
    if not _is_number(fraction) or not 0 < fraction < 1:
        errors.append(Error(
            f"RECOMMENDER['EVALUATION_FRACTION'] is {fraction!r}.",
            hint="A share in (0, 1): 0.2 holds out the latest 20% of each user's interactions.",
            id="recommender.E025",
        ))
    half_life = rec_settings.HALF_LIFE_DAYS
    if half_life is not None and (not _is_number(half_life) or half_life <= 0):
        errors.append(Error(
            f"RECOMMENDER['HALF_LIFE_DAYS'] is {half_life!r}.",
            hint="A positive number of days, or None for no recency decay.",
            id="recommender.E026",
        ))
    return errors


def _check_artifact_dir():
    path = rec_settings.ARTIFACT_DIR
    if path is None:
        media_root = str(getattr(settings, "MEDIA_ROOT", "") or "")
        if not media_root or not os.path.isabs(media_root):
            return [Warning(
                "RECOMMENDER['ARTIFACT_DIR'] is not set and MEDIA_ROOT is "
                + (f"the relative path {media_root!r}" if media_root else "empty")
                + ": trained models are written to a 'recommender' folder under each process's working "
                  "directory, where a worker started elsewhere does not find them.",
                hint="Set ARTIFACT_DIR (or MEDIA_ROOT) to an absolute path that every worker shares.",
                id="recommender.W031",
            )]
        path = os.path.join(media_root, "recommender")
    elif not os.path.isabs(os.fspath(path)):
        return [Warning(
            f"RECOMMENDER['ARTIFACT_DIR'] {os.fspath(path)!r} is a relative path: each process resolves it "
            "against its own working directory.",
            hint="Give an absolute path that every worker shares.",
            id="recommender.W031",
        )]
    probe = os.fspath(path)
    while probe and not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if probe and not (os.path.isdir(probe) and os.access(probe, os.W_OK)):
        return [Error(
            f"RECOMMENDER['ARTIFACT_DIR'] {os.fspath(path)!r} is not a writable directory.",
            hint="Give the worker processes write access, or choose another directory.",
            id="recommender.E030",
        )]
    return []


def _check_algorithms():
    known = rec_settings.ALGORITHMS if isinstance(rec_settings.ALGORITHMS, dict) else {}
    hint = "Names of RECOMMENDER['ALGORITHMS']: " + ", ".join(known)
    errors = []
    for key in ALGORITHM_SETTINGS:
        name = getattr(rec_settings, key)
        if not isinstance(name, str) or name not in known:
            errors.append(Error(f"RECOMMENDER[{key!r}] is {name!r}, not an algorithm of ALGORITHMS.",
                                hint=hint, id="recommender.E040"))
    names = rec_settings.TRAIN_ALGORITHMS
    if not isinstance(names, list | tuple):
        errors.append(Error(f"RECOMMENDER['TRAIN_ALGORITHMS'] is {names!r}, not a list of algorithm names.",
                            hint=hint, id="recommender.E040"))
    else:
        unknown = [name for name in names if not isinstance(name, str) or name not in known]
        if unknown:
            errors.append(Error(
                f"RECOMMENDER['TRAIN_ALGORITHMS'] names {', '.join(map(repr, unknown))}, not in ALGORITHMS.",
                hint=hint, id="recommender.E040"))
    return errors


def _cache_backend(alias, errors=None):
    """The backend class of ``CACHES[alias]``, or None when it is missing or cannot be imported
    (the ImportError is then added to ``errors``)."""
    config = getattr(settings, "CACHES", {}).get(alias)
    if not isinstance(config, dict):
        return None
    try:
        return import_string(config.get("BACKEND", ""))
    except ImportError as exc:
        if errors is not None:
            errors.append(exc)
        return None


def _runs_celery_workers():
    """Whether the settings send tasks to a broker that other processes (workers) read."""
    broker = getattr(settings, "CELERY_BROKER_URL", None) or getattr(settings, "BROKER_URL", None)
    if not broker or getattr(settings, "CELERY_TASK_ALWAYS_EAGER", False):
        return False
    return not str(broker).startswith("memory://")


def _check_caches():
    from django.core.cache.backends.locmem import LocMemCache
    from django.core.cache.backends.redis import RedisCache

    caches = getattr(settings, "CACHES", {})
    alias = rec_settings.CACHE_ALIAS
    if alias not in caches:
        return [Error(
            f"RECOMMENDER['CACHE_ALIAS'] is {alias!r}, which is not in CACHES.",
            hint="Name a cache of settings.CACHES: " + ", ".join(caches),
            id="recommender.E050",
        )]
    errors = []
    for name, config in caches.items():
        path = config.get("BACKEND", "") if isinstance(config, dict) else ""
        failed = []
        backend = _cache_backend(name, failed)
        if failed and getattr(failed[0], "name", None) != "redis":
            errors.append(Error(f"CACHES[{name!r}]['BACKEND'] {path!r} cannot be imported: {failed[0]}",
                                hint="Give the dotted path of a cache backend class.", id="recommender.E051"))
        elif failed or (backend is not None and issubclass(backend, RedisCache) and not _importable("redis")):
            errors.append(Error(
                f"CACHES[{name!r}] uses {path}, but the redis package is not installed.",
                hint='Install it ("pip install redis hiredis"), or choose another cache backend.',
                id="recommender.E052",
            ))
    backend = _cache_backend(alias)
    if backend is not None and issubclass(backend, LocMemCache) and _runs_celery_workers():
        errors.append(Warning(
            f"The recommender's cache (CACHES[{alias!r}]) is a local-memory cache while Celery sends tasks to "
            "worker processes: lists a worker publishes after a retrain land in the worker's own memory, and a "
            "web process keeps serving the lists it cached, for up to CACHE_TIMEOUT (a day by default).",
            hint='Use a cache the processes share (e.g. "recommender.fastpath.redis_cache.RedisCache"), or '
                 '"django.core.cache.backends.dummy.DummyCache" to read the lists from the database each time.',
            id="recommender.W050",
        ))
    return errors


def _importable(module):
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def _check_schedule():
    schedule = rec_settings.SCHEDULE
    if schedule is None:
        return []
    if not isinstance(schedule, dict):
        return [Error(f"RECOMMENDER['SCHEDULE'] is {schedule!r}, not a dict.", id="recommender.E060")]
    try:
        from recommender.training.schedules import TASKS, parse_crontab
    except ImportError:  # Celery is not installed: no beat entries to check
        return []
    errors = []
    for key, expression in schedule.items():
        if key not in TASKS:
            problem, hint = "is not a known entry", "Entries: " + ", ".join(TASKS)
        elif expression is None:
            continue
        elif not isinstance(expression, str):
            problem, hint = f"is {expression!r}", 'A crontab string such as "0 3 * * *", or None to disable it.'
        else:
            try:
                parse_crontab(expression)
                continue
            except ValueError as exc:
                problem = f"is {expression!r}: {exc}"
                hint = 'Five fields, "minute hour day-of-month month day-of-week", e.g. "30 4 * * *".'
        errors.append(Error(
            f"RECOMMENDER['SCHEDULE'][{key!r}] {problem}; beat_schedule() raises on it, so Celery beat gets "
            "none of the recommender's entries.",
            hint=hint, id="recommender.E060",
        ))
    return errors
