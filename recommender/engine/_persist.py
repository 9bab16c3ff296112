"""Saving and loading engines as a directory of plain files.

Layout of a saved engine directory::

    model.json      class path, recommender version, hyperparameters, scalar learned attributes
    arrays.npz      numpy arrays (learned attributes ending in ``_``)
    <name>.npz      scipy.sparse matrices (``scipy.sparse.save_npz``)
    <name>.joblib   other Python objects (scikit-learn transformers)
    <name>/         nested engines (hybrid components)

Engines may add files through ``_save_extra(path)`` / ``_load_extra(path)`` (the deep
engine writes its Keras ``.keras`` file that way).

Loading refuses, with a ``ValueError`` naming them, hyperparameters that the engine class
does not take: a model trained by a newer version read by a process not yet upgraded.
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

import numpy as np
import scipy.sparse as sp

_SCALARS = (bool, int, float, str, type(None))


def _version() -> str:
    from recommender import __version__

    return __version__


def _is_engine(obj) -> bool:
    from recommender.engine.base import RecommenderBase
    return isinstance(obj, RecommenderBase)


def _jsonable(value) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def save_engine(model, path: str | os.PathLike) -> None:
    import joblib

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    meta: dict = {"class": f"{type(model).__module__}.{type(model).__qualname__}",
                  "format": 1, "version": _version(), "scalars": {}, "engines": {}, "engine_lists": {}}
    params = model.get_params()
    if _jsonable(params):
        meta["params"] = params
    else:
        joblib.dump(params, path / "params.joblib")
    arrays = {}
    for name, value in model._state().items():
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, _SCALARS):
            meta["scalars"][name] = value
        elif isinstance(value, np.ndarray) and value.dtype != object:
            arrays[name] = value
        elif sp.issparse(value):
            sp.save_npz(path / f"{name}.npz", sp.csr_matrix(value))
            meta.setdefault("sparse", []).append(name)
        elif _is_engine(value):
            save_engine(value, path / name)
            meta["engines"][name] = True
        elif isinstance(value, (list, tuple)) and value and all(_is_engine(v) for v in value):
            for i, sub in enumerate(value):
                save_engine(sub, path / name / str(i))
            meta["engine_lists"][name] = len(value)
        elif isinstance(value, (list, dict)) and _jsonable(value):
            meta["scalars"][name] = value
        else:
            joblib.dump(value, path / f"{name}.joblib")
            meta.setdefault("objects", []).append(name)
    np.savez(path / "arrays.npz", **arrays)
    if hasattr(model, "_save_extra"):
        model._save_extra(path)
    with open(path / "model.json", "w", encoding="utf-8") as fh:
        json.dump(meta, fh, indent=1, sort_keys=True)


def load_engine(path: str | os.PathLike, allowed: frozenset[str] = frozenset()):
    """Load a saved engine; classes outside ``recommender.engine`` must be in ``allowed``
    (dotted paths), so a tampered artifact cannot import arbitrary modules."""
    import joblib

    path = Path(path)
    if not (path / "model.json").exists():
        raise FileNotFoundError(f"No saved engine in {path} (model.json is missing).")
    with open(path / "model.json", encoding="utf-8") as fh:
        meta = json.load(fh)
    module, _, name = meta["class"].rpartition(".")
    if not module.startswith("recommender.engine") and meta["class"] not in allowed:
        raise ValueError(f"Refusing to load engine class {meta['class']!r} from {path}.")
    cls = getattr(importlib.import_module(module), name)
    params = meta["params"] if "params" in meta else joblib.load(path / "params.joblib")
    unknown = sorted(set(params) - set(cls._param_names()))
    if unknown:
        saved_by = meta.get("version", "an unknown version")
        raise ValueError(
            f"{path} holds a {name} saved by recommender {saved_by} with parameters that this "
            f"process's recommender {_version()} does not know: {', '.join(unknown)}. Upgrade this "
            f"process (web server or worker) to the version that trained the model.")
    model = cls(**params)
    for key, value in meta["scalars"].items():
        setattr(model, key, value)
    with np.load(path / "arrays.npz", allow_pickle=False) as data:
        for key in data.files:
            setattr(model, key, data[key])
    for key in meta.get("sparse", []):
        setattr(model, key, sp.load_npz(path / f"{key}.npz").tocsr())
    for key in meta.get("objects", []):
        setattr(model, key, joblib.load(path / f"{key}.joblib"))
    for key in meta["engines"]:
        setattr(model, key, load_engine(path / key, allowed))
    for key, count in meta["engine_lists"].items():
        setattr(model, key, [load_engine(path / key / str(i), allowed) for i in range(count)])
    if hasattr(model, "_load_extra"):
        model._load_extra(path)
    return model
