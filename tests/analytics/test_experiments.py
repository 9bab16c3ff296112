"""Experiments: validation, deterministic sticky assignment, the per-process cache, exposures."""

from collections import Counter

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext

from recommender.analytics import experiments
from recommender.analytics.experiments import Assignment, ExperimentSpec, VariantSpec, algorithm_for, variant_for
from recommender.models import Experiment, Exposure, Variant


def make(name, blocks, shares=(("control", "", 0.5), ("als", "als", 0.5)), status="running"):
    experiment = Experiment.objects.create(name=name, blocks=blocks)
    for variant, algorithm, share in shares:
        Variant.objects.create(experiment=experiment, name=variant, algorithm=algorithm, share=share)
    if status == "running":
        experiments.start(experiment)
    return experiment


def spec(salt, shares):
    return ExperimentSpec(1, salt, ("b",), tuple(VariantSpec(n, n, s) for n, s in shares), None, None)


def test_assignment_is_deterministic_proportional_and_independent():
    a = spec("salt-a", [("x", 0.2), ("y", 0.8)])
    b = spec("salt-b", [("x", 0.5), ("y", 0.5)])
    keys = [f"s:{i}" for i in range(20_000)]
    first = [variant_for(a, k).name for k in keys]
    assert first == [variant_for(a, k).name for k in keys]
    share = Counter(first)["x"] / len(keys)
    assert 0.19 < share < 0.21
    # independent salts: being "x" in a says nothing about b
    in_x = [k for k, v in zip(keys, first, strict=True) if v == "x"]
    assert 0.47 < Counter(variant_for(b, k).name for k in in_x)["x"] / len(in_x) < 0.53


@pytest.mark.django_db
def test_validation():
    experiment = Experiment.objects.create(name="e", blocks=["trending"])
    Variant.objects.create(experiment=experiment, name="a", algorithm="trending", share=0.7)
    with pytest.raises(ValidationError, match="two variants"):
        experiments.start(experiment)
    Variant.objects.create(experiment=experiment, name="b", algorithm="nope", share=0.2)
    with pytest.raises(ValidationError) as error:
        experiments.start(experiment)
    assert "unknown algorithm" in str(error.value) and "add up to 0.9" in str(error.value)
    make("first", ["similar_items", "trending"])
    other = make("second", ["trending"], status="draft")
    with pytest.raises(ValidationError, match="first"):
        experiments.start(other)


@pytest.mark.django_db
def test_algorithm_for_is_cached_per_process_and_invalidated_by_saves(django_user_model):
    experiments._running.clear()
    assert algorithm_for("recommended_for_you", session_key="abc") is None
    experiment = make("fy", ["recommended_for_you"])
    user = django_user_model.objects.create_user("u1")
    choice = algorithm_for("recommended_for_you", user=user)
    assert choice.experiment_id == experiment.pk and choice.variant in {"control", "als"}
    assert choice.algorithm == (None if choice.variant == "control" else "als")
    with CaptureQueriesContext(connection) as queries:
        for i in range(50):
            algorithm_for("recommended_for_you", session_key=f"s{i}")
            algorithm_for("trending", session_key=f"s{i}")
    assert len(queries) == 0
    assert algorithm_for("recommended_for_you", user=user) == choice  # sticky
    experiments.stop(experiment)
    assert algorithm_for("recommended_for_you", user=user) is None
    assert algorithm_for("recommended_for_you") is None  # no key: not in the experiment


@pytest.mark.django_db
def test_exposure_is_written_once_and_the_key_survives_login(rf, django_user_model):
    from recommender.tracking.events import ANON_SESSION_KEY

    experiments._recorded.clear()
    experiment = make("fy", ["recommended_for_you"])
    choice = algorithm_for("recommended_for_you", session_key="anon-key")
    assert experiments.record_exposure(choice, "s:anon-key", session_key="anon-key")
    assert not experiments.record_exposure(choice, "s:anon-key", session_key="anon-key")
    experiments._recorded.clear()
    experiments.record_exposure(choice, "s:anon-key", session_key="anon-key")  # a second process
    assert Exposure.objects.get().variant == choice.variant
    user = django_user_model.objects.create_user("u2")
    request = rf.get("/")
    request.session = {ANON_SESSION_KEY: "anon-key"}
    key = experiments.carry_at_login(request, user)
    assert key == "s:anon-key" == experiments.assignment_key(user, session=request.session)
    assert algorithm_for("recommended_for_you", user=user, key=key) == choice
    assert Exposure.objects.get().user == user
    assert isinstance(choice, Assignment) and choice.experiment_id == experiment.pk
