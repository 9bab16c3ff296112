"""The all-data fit of a Hybrid training run reuses the blend its evaluation fit chose."""

import datetime as dt

import numpy as np
import pytest
import scipy.sparse as sp
from django.utils import timezone

from recommender.engine.base import RecommenderBase
from recommender.engine.hybrid import Hybrid
from recommender.engine.popular import Popular
from recommender.models import Interaction, TrainingRun
from recommender.training import artifacts, services

FITS = []  # class names of the component fits, in order (the ``spy`` fixture)


class CountedPopular(Popular):
    """Popular under a name of its own, to count its fits."""


class Flat(Popular):
    """Scores every item alike: after normalisation it adds nothing to a blend."""

    def _score_block(self, user_indices, user_items):
        return np.zeros((len(user_indices), self.n_items_), dtype=np.float32)


SPIES = [f"{__name__}.CountedPopular", f"{__name__}.Flat"]


@pytest.fixture
def shoppers(catalog, django_user_model):
    """Twelve shoppers over ten items, the popular items bought last: a held-out split to tune on."""
    from shopdemo.shop.models import Product

    items = catalog[:3] + [Product.objects.create(stock_code=f"3000{i}", title=f"Extra {i}",
                                                  category=catalog[0].category, price=1) for i in range(7)]
    t0 = timezone.now() - dt.timedelta(days=30)
    rows = []
    for u in range(12):
        user = django_user_model.objects.create_user(f"shopper{u}")
        for step, i in enumerate(sorted({(u + s) % 10 for s in range(4)} | {0, 1}, key=lambda i: i in (0, 1))):
            rows.append(Interaction(user=user, item=items[i], event="purchase",
                                    timestamp=t0 + dt.timedelta(hours=u * 10 + step)))
    Interaction.objects.bulk_create(rows)


@pytest.fixture
def hybrid_settings(tmp_path, settings):
    def apply(params):
        settings.RECOMMENDER = {
            **settings.RECOMMENDER, "ARTIFACT_DIR": str(tmp_path / "artifacts"),
            "ALGORITHMS": {"hybrid": {"class": "recommender.engine.hybrid.Hybrid", "params": params},
                           **{path: {"class": path} for path in SPIES}},  # their artifacts load
        }
    return apply


@pytest.fixture
def spy(monkeypatch):
    """Counts the tuning rounds and component fits of every Hybrid."""
    FITS.clear()
    tunings = []
    real_tune, real_fit = Hybrid._tune, RecommenderBase.fit

    def tune(self, specs, *args):
        weights, best, engines = real_tune(self, specs, *args)
        tunings.append(([name for name, _ in specs], weights.tolist()))
        return weights, best, engines

    def fit(self, *args, **kwargs):
        if not isinstance(self, Hybrid):
            FITS.append(type(self).__name__)
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(Hybrid, "_tune", tune)
    monkeypatch.setattr(RecommenderBase, "fit", fit)
    return tunings


def trained(algorithm="hybrid"):
    run = services.train(TrainingRun.objects.create(algorithm=algorithm).pk, refresh=False)
    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    return run, artifacts.load(run.artifact_path)[0]


@pytest.mark.django_db
def test_the_all_data_fit_reuses_the_tuned_weights_and_skips_weight_zero(hybrid_settings, shoppers, spy):
    hybrid_settings({"components": SPIES})
    _run, model = trained()
    assert len(spy) == 1  # tuned once, in the evaluation fit
    names, weights = spy[0]
    kept = [i for i, w in enumerate(weights) if w]
    assert len(kept) < len(weights), weights  # the test needs a component weighed 0
    assert model.weights_.tolist() == [weights[i] for i in kept]
    assert model.component_names_ == [names[i] for i in kept]
    # tuning fits every component; the evaluation and all-data fits each fit the weighed ones
    assert len(FITS) == len(weights) + 2 * len(kept)
    assert FITS.count("Flat") == 1


@pytest.mark.django_db
def test_the_all_data_fit_reuses_the_default_components(hybrid_settings, shoppers, spy):
    hybrid_settings({})
    _run, model = trained()
    assert len(spy) == 1
    names, weights = spy[0]
    assert len(names) > 1  # the default components: a blend was tuned
    kept = [i for i, w in enumerate(weights) if w]
    assert model.component_names_ == [names[i] for i in kept]
    assert model.weights_.tolist() == [weights[i] for i in kept]
    assert len(FITS) == len(weights) + 2 * len(kept)


@pytest.mark.django_db
def test_fixed_weights_in_the_site_params_are_kept(hybrid_settings, shoppers, spy):
    hybrid_settings({"components": SPIES, "weights": [1.0, 0.0]})
    _run, model = trained()
    assert spy == []  # never tuned
    assert model.weights_.tolist() == [1.0]
    assert FITS == ["CountedPopular"] * 2  # evaluation and all-data fits; Flat weighs 0


def test_fixed_weights_leave_weight_zero_components_unfitted(tmp_path, spy):
    X = sp.random(40, 12, density=0.3, format="csr", random_state=0, dtype=np.float32)
    model = Hybrid(components=SPIES, weights=[1.0, 0.0]).fit(X)
    assert FITS == ["CountedPopular"]
    assert model.component_names_ == [SPIES[0]] and model.weights_.tolist() == [1.0]
    alone = Popular().fit(X)
    users = np.arange(10)
    np.testing.assert_array_equal(model.recommend_batch(users, X[users], n=5)[0],
                                  alone.recommend_batch(users, X[users], n=5)[0])
    model.save(tmp_path / "m")
    loaded = Hybrid.load(tmp_path / "m", allowed=SPIES)
    np.testing.assert_array_equal(loaded.recommend_batch(users, X[users], n=5)[0],
                                  alone.recommend_batch(users, X[users], n=5)[0])
    with pytest.raises(ValueError, match="non-zero"):
        Hybrid(components=SPIES, weights=[0.0, 0.0]).fit(X)
