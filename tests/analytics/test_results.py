"""Experiment results from exposures and the interactions after them: counts, known lift, SRM."""

import datetime as dt

import numpy as np
import pytest
from django.utils import timezone

from recommender.analytics import results, stats
from recommender.models import Experiment, Exposure, Interaction, Variant


def make_experiment(shares=(0.5, 0.5)):
    experiment = Experiment.objects.create(name="xp", blocks=["recommended_for_you"])
    Variant.objects.create(experiment=experiment, name="control", algorithm="itemknn", share=shares[0])
    Variant.objects.create(experiment=experiment, name="treatment", algorithm="hybrid", share=shares[1])
    return experiment


def fill(experiment, item, visitors, rates, seed=0, price=None):
    """Anonymous visitors per variant, each with 10 impressions and Bernoulli(rate) clicks,
    and one purchase of quantity 1 for a clicker with probability 0.5."""
    rng = np.random.default_rng(seed)
    start = timezone.now() - dt.timedelta(days=3)
    rows, exposures = [], []
    for variant, n in visitors.items():
        for k in range(n):
            session = f"{variant}-{k}"
            exposures.append(Exposure(experiment=experiment, variant=variant, key=f"s:{session}",
                                      session_key=session, first_seen=start))
            context = f"recommended_for_you:{variant}"
            clicks = int(rng.binomial(10, rates[variant]))
            rows += [Interaction(session_key=session, item=item, event="impression", context=context,
                                 timestamp=start + dt.timedelta(minutes=1)) for _ in range(10)]
            rows += [Interaction(session_key=session, item=item, event="click", context=context,
                                 timestamp=start + dt.timedelta(minutes=2)) for _ in range(clicks)]
            if clicks and rng.random() < 0.5:
                rows.append(Interaction(session_key=session, item=item, event="purchase", value=1,
                                        timestamp=start + dt.timedelta(minutes=3)))
    Exposure.objects.bulk_create(exposures)
    Interaction.objects.bulk_create(rows)


@pytest.mark.django_db
def test_counts_only_what_follows_the_exposure_in_the_experiments_blocks(catalog, alice):
    experiment = make_experiment()
    mug = catalog[0]  # price 2.50
    seen = timezone.now() - dt.timedelta(days=1)
    Exposure.objects.create(experiment=experiment, variant="treatment", key=f"u:{alice.pk}", user=alice,
                            first_seen=seen)
    Exposure.objects.create(experiment=experiment, variant="control", key="s:anon", session_key="anon",
                            first_seen=seen)
    before, after = seen - dt.timedelta(hours=1), seen + dt.timedelta(hours=1)
    for when in (before, after):
        Interaction.objects.create(user=alice, item=mug, event="impression", context="recommended_for_you:hybrid",
                                   timestamp=when)
        Interaction.objects.create(user=alice, item=mug, event="purchase", value=2, timestamp=when)
    Interaction.objects.create(user=alice, item=mug, event="impression", context="trending:trending", timestamp=after)
    Interaction.objects.create(user=alice, item=mug, event="click", context="recommended_for_you:hybrid",
                               timestamp=after)
    Interaction.objects.create(session_key="anon", item=mug, event="impression", context="recommended_for_you",
                               timestamp=after)
    found = results.outcomes(experiment)
    assert list(found) == ["control", "treatment"]
    assert found["treatment"].totals() == {"visitors": 1, "impressions": 1, "clicks": 1, "converting": 1,
                                           "purchases": 1, "revenue": 5.0}
    assert found["control"].totals() == {"visitors": 1, "impressions": 1, "clicks": 0, "converting": 0,
                                         "purchases": 0, "revenue": 0.0}


@pytest.mark.django_db
def test_known_lift_is_inside_the_interval(catalog):
    experiment = make_experiment()
    fill(experiment, catalog[0], {"control": 1500, "treatment": 1500}, {"control": 0.10, "treatment": 0.15})
    report = results.analyse(experiment, n_resamples=500)
    assert report.control == "control"
    ctr = next(m for m in report.metrics if m.key == "ctr").result
    [comparison] = ctr.comparisons
    # true lift 0.15 / 0.10 - 1 = 0.5
    assert comparison.lift_low < 0.5 < comparison.lift_high
    assert comparison.significant and comparison.p_value < 0.001
    assert 0.09 < ctr.variants[0].estimate < 0.11
    assert ctr.variants[0].visitors == 1500
    # per-visitor clustering is used (not the "independent impressions" fallback)
    assert stats.INDEPENDENT_TRIALS not in comparison.warnings
    assert not report.warnings  # 1,500 / 1,500 on 50/50: no SRM


@pytest.mark.django_db
def test_sample_ratio_mismatch_is_surfaced(catalog):
    experiment = make_experiment()
    fill(experiment, catalog[0], {"control": 1300, "treatment": 1000}, {"control": 0.1, "treatment": 0.1})
    report = results.analyse(experiment, n_resamples=200)
    assert stats.SRM in report.warnings
    assert report.srm_p_value < 0.001
    # a variant that is no longer configured is reported with share 0
    Exposure.objects.create(experiment=experiment, variant="old", key="s:old", session_key="old")
    report = results.analyse(experiment, n_resamples=200)
    assert [v["name"] for v in report.variants] == ["control", "treatment", "old"]
    assert report.variants[2]["share"] == 0.0


@pytest.mark.django_db
def test_results_are_cached_until_something_new_arrives(catalog, django_assert_num_queries):
    experiment = make_experiment()
    fill(experiment, catalog[0], {"control": 20, "treatment": 20}, {"control": 0.1, "treatment": 0.2})
    first = results.experiment_results(experiment)
    assert stats.FEW_VISITORS in next(m for m in first.metrics if m.key == "ctr").result.variants[0].warnings
    again = results.experiment_results(experiment)
    assert again.variants == first.variants
    Interaction.objects.create(session_key="control-0", item=catalog[0], event="purchase", value=3,
                               timestamp=timezone.now())
    third = results.experiment_results(experiment)
    assert third.variants[0]["purchases"] == first.variants[0]["purchases"] + 1
