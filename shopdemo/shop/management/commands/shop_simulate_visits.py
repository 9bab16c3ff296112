"""Simulate a few weeks of visits so that the online-metrics dashboard has something to show.

    python manage.py shop_simulate_visits [--days 28] [--seed 1] [--control hybrid] [--treatment ease]
                                          [--customers N] [--remove]

Everything it writes is simulated and marked so: every interaction and exposure it writes
has a session key starting with ``sim-`` (``sim-<user pk>-<visit>``). A second run deletes
those rows and writes the same ones again (same seed, same day), so it adds nothing.
``--remove`` only deletes them.

What a simulated visit is (docs/online-metrics.md, "The demo simulation"):

- The visitors are the demo's real customers, the users with purchases that are not
  simulated. A customer makes Poisson(0.4 + orders / 10, at most 4) visits, on random
  days of the last ``--days`` days (today excluded).
- The home page shows 8 items of the "trending" block and 8 of "recommended_for_you".
  The latter come from the customer's published "for_user" list of the algorithm of their
  variant in the experiment "<control> vs <treatment> on recommended_for_you" (50/50,
  assigned with ``variant_for`` on ``u:<pk>``, as the site would).
- A customer clicks a shown item with a probability that grows with the share of their real
  purchases in the item's category and falls with its position. A clicked item opens its
  product page, which shows 8 "similar_items".
- A clicked item is added to the cart with probability 0.2 + 0.5 x that share, and bought
  after that with probability 0.6. The quantity is one of the customer's real quantities.
  A visit also buys one of the customer's past items without any click with probability 0.05.
- A list that was not published (no training yet) is replaced by the most bought items
  (the customer's own last), or by the most bought items of the category for
  "similar_items". Both variants then show the same items and their lift is about 0.

The rows go in with the write paths of the app: bulk INSERTs of ``Interaction`` rows whose
impressions and clicks carry ``"<block>:<algorithm>[@<run>]"``, and ``Exposure`` rows. Then
the days it touched are aggregated (``aggregates.rebuild_days``).
"""

import datetime as dt
import time
from collections import Counter, defaultdict

import numpy as np
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.db.models import Count, Max, Min
from django.utils import timezone

from recommender.analytics import aggregates, experiments
from recommender.analytics.attribution import format_context
from recommender.conf import rec_settings
from recommender.models import Experiment, Exposure, Interaction, ServedList, Variant
from shopdemo.shop.models import Product

PREFIX = "sim-"
BLOCK = "recommended_for_you"
SHOWN = 8
BASE_CTR = {"recommended_for_you": 0.04, "trending": 0.015, "similar_items": 0.03}
CART_BASE, CART_AFFINITY, BUY_AFTER_CART, ORGANIC_BUY = 0.2, 0.5, 0.6, 0.05


def experiment_name(control, treatment):
    return f"{control} vs {treatment} on {BLOCK} (simulated)"


class Simulation:
    """The data a run reads once, and the rows it builds."""

    def __init__(self, rng, control, treatment):
        self.rng = rng
        self.rows, self.exposures = [], {}
        products = Product.objects.filter(is_active=True).values_list("pk", "category_id")
        self.category = dict(products)
        purchases = (Interaction.objects.filter(event="purchase", user__isnull=False)
                     .exclude(session_key__startswith=PREFIX).values_list("user_id", "item_id", "value"))
        self.bought, self.quantities, self.taste = defaultdict(set), defaultdict(list), defaultdict(Counter)
        popularity = Counter()
        for user_id, item_id, value in purchases.iterator(chunk_size=20000):
            self.bought[user_id].add(item_id)
            self.quantities[user_id].append(max(1, int(value or 1)))
            popularity[item_id] += 1
            if item_id in self.category:
                self.taste[user_id][self.category[item_id]] += 1
        self.popular = [pk for pk, _n in sorted(popularity.items(), key=lambda kv: (-kv[1], kv[0]))
                        if pk in self.category]
        if not self.popular:
            self.popular = sorted(self.category)
        self.popular_in = defaultdict(list)
        for pk in self.popular:
            self.popular_in[self.category[pk]].append(pk)
        self.for_user = {alg: self._lists("for_user", alg) for alg in {control, treatment}}
        self.similar = self._lists("similar", rec_settings.SIMILAR_ALGORITHM)
        trending = self._lists("trending", rec_settings.TRENDING_ALGORITHM).get(0)
        self.trending = trending or ([pk for pk in self.popular[:SHOWN]], None)

    def _lists(self, kind, algorithm):
        found = ServedList.objects.filter(kind=kind, algorithm=algorithm).values_list("subject", "items", "run_id")
        return {subject: ([entry[0] for entry in items if entry[0] in self.category], run)
                for subject, items, run in found.iterator(chunk_size=2000)}

    def affinity(self, user_id, item_id):
        taste = self.taste[user_id]
        total = sum(taste.values())
        return taste[self.category.get(item_id)] / total if total else 0.0

    def add(self, user_id, session, item, event, when, context="", value=None):
        self.rows.append(Interaction(user_id=user_id, session_key=session, item_id=item, event=event, value=value,
                                     timestamp=when, context=context))

    def show(self, user_id, session, block, algorithm, run, items, when):
        """Impressions of ``items`` in ``block``; returns the clicked items with their click times."""
        context = format_context(block, algorithm, run)
        items = items[:SHOWN]
        for item in items:
            self.add(user_id, session, item, "impression", when, context)
        chances = np.array([BASE_CTR[block] * (0.3 + 6 * self.affinity(user_id, item)) / (1 + 0.2 * position)
                            for position, item in enumerate(items)])
        clicked = []
        for item, hit in zip(items, self.rng.random(len(items)) < np.minimum(chances, 0.9), strict=True):
            if hit:
                click_at = when + dt.timedelta(seconds=int(self.rng.integers(5, 120)))
                self.add(user_id, session, item, "click", click_at, context)
                clicked.append((item, click_at))
        return clicked

    def consider(self, user_id, session, item, when):
        """Add to the cart, then buy, with the customer's appetite for the item's category."""
        if self.rng.random() < CART_BASE + CART_AFFINITY * self.affinity(user_id, item):
            cart_at = when + dt.timedelta(seconds=int(self.rng.integers(10, 300)))
            self.add(user_id, session, item, "add_to_cart", cart_at, value=1)
            if self.rng.random() < BUY_AFTER_CART:
                quantity = float(self.rng.choice(self.quantities[user_id] or [1]))
                self.add(user_id, session, item, "purchase", cart_at + dt.timedelta(minutes=int(
                    self.rng.integers(2, 60))), value=quantity)

    def visit(self, user_id, number, when, experiment):
        session = f"{PREFIX}{user_id}-{number}"
        key = f"u:{user_id}"
        variant = experiments.variant_for(experiment, key)
        self.exposures.setdefault(user_id, (variant.name, when, key))
        bought = self.bought[user_id]
        items, run = self.for_user[variant.algorithm].get(user_id, (None, None))
        if items is None:  # not published: the most bought items, the customer's own last
            top = self.popular[:SHOWN + len(bought)]
            items = [pk for pk in top if pk not in bought] + [pk for pk in top if pk in bought]
        trending_items, trending_run = self.trending
        clicked = self.show(user_id, session, "trending", rec_settings.TRENDING_ALGORITHM, trending_run,
                            trending_items, when)
        clicked += self.show(user_id, session, BLOCK, variant.algorithm, run, items, when)
        for item, click_at in clicked:
            similar, similar_run = self.similar.get(item, (None, None))
            if similar is None:
                similar = [pk for pk in self.popular_in[self.category[item]][:SHOWN + 1] if pk != item]
            page_at = click_at + dt.timedelta(seconds=2)
            self.consider(user_id, session, item, page_at)
            for other, other_at in self.show(user_id, session, "similar_items", rec_settings.SIMILAR_ALGORITHM,
                                             similar_run, similar, page_at):
                self.consider(user_id, session, other, other_at)
        if bought and self.rng.random() < ORGANIC_BUY:
            item = int(self.rng.choice(sorted(bought)))
            if item in self.category:
                self.add(user_id, session, item, "purchase", when + dt.timedelta(minutes=int(self.rng.integers(
                    3, 30))), value=float(self.rng.choice(self.quantities[user_id])))


class Command(BaseCommand):
    help = "Simulate a few weeks of visits, impressions, clicks and purchases (rows marked 'sim-'), with an A/B test."

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=28, help="Days simulated, ending yesterday. Default: 28")
        parser.add_argument("--seed", type=int, default=1, help="Random seed. Default: 1")
        parser.add_argument("--control", default="hybrid", help="Control algorithm. Default: hybrid")
        parser.add_argument("--treatment", default="ease", help="Treatment algorithm. Default: ease")
        parser.add_argument("--customers", type=int, default=None, metavar="N",
                            help="Simulate only the first N customers (by id).")
        parser.add_argument("--remove", action="store_true", help="Only delete the simulated rows.")

    def handle(self, *args, **options):
        started = time.perf_counter()
        days, control, treatment = options["days"], options["control"], options["treatment"]
        if days < 1:
            raise CommandError("--days must be at least 1.")
        for algorithm in (control, treatment):
            if algorithm not in rec_settings.ALGORITHMS:
                raise CommandError(f"Unknown algorithm {algorithm!r}; known: {', '.join(rec_settings.ALGORITHMS)}.")
        old_days = self._simulated_days()
        with transaction.atomic():
            removed = self._remove()
            if options["remove"]:
                self._aggregate(old_days)
                self.stdout.write(f"Removed {removed} simulated interactions.")
                return
            experiment = self._experiment(control, treatment, days)
            simulation = self._simulate(experiment, control, treatment, days, options["seed"], options["customers"])
            Interaction.objects.bulk_create(simulation.rows, batch_size=5000)
            Exposure.objects.bulk_create(
                [Exposure(experiment=experiment, variant=variant, key=key, user_id=user_id,
                          session_key=f"{PREFIX}{user_id}", first_seen=seen)
                 for user_id, (variant, seen, key) in sorted(simulation.exposures.items())],
                batch_size=5000, ignore_conflicts=True)
        new_days = self._simulated_days()
        self._aggregate(old_days | new_days)
        counts = Counter(row.event for row in simulation.rows)
        self.stdout.write(
            f"Simulated {len(simulation.exposures)} customers over {days} days: "
            + ", ".join(f"{n} {event}" for event, n in sorted(counts.items()))
            + f"; experiment “{experiment.name}”; {time.perf_counter() - started:.1f} s.")

    def _simulated_days(self):
        bounds = Interaction.objects.filter(session_key__startswith=PREFIX).aggregate(
            first=Min("timestamp"), last=Max("timestamp"))
        if bounds["first"] is None:
            return set()
        first, last = timezone.localdate(bounds["first"]), timezone.localdate(bounds["last"])
        return {first + dt.timedelta(days=k) for k in range((last - first).days + 1)}

    def _remove(self):
        Exposure.objects.filter(session_key__startswith=PREFIX).delete()
        removed, _by_model = Interaction.objects.filter(session_key__startswith=PREFIX).delete()
        return removed

    def _aggregate(self, days):
        # the daily rows of the touched days are recomputed whole (deleted rows included)
        if days:
            aggregates.rebuild_days(sorted(days))

    def _experiment(self, control, treatment, days):
        """The simulation's experiment, running since the first simulated day unless another
        running experiment already governs the block (then it is left stopped)."""
        today = timezone.localdate()
        start = aggregates.day_bounds(today - dt.timedelta(days=days))[0]
        experiment, _created = Experiment.objects.get_or_create(
            name=experiment_name(control, treatment),
            defaults={"blocks": [BLOCK], "description": "Simulated by manage.py shop_simulate_visits."})
        wanted = [(control, control, 0.5), (treatment, treatment, 0.5)]
        if list(experiment.variants.order_by("id").values_list("name", "algorithm", "share")) != wanted:
            experiment.variants.all().delete()
            for name, algorithm, share in wanted:
                Variant.objects.create(experiment=experiment, name=name, algorithm=algorithm, share=share)
        experiment.blocks, experiment.start, experiment.stop = [BLOCK], start, None
        try:
            experiments.start(experiment)
        except ValidationError:
            experiment.status, experiment.stop = Experiment.Status.STOPPED, aggregates.day_bounds(today)[0]
            experiment.save()
        return experiment

    def _simulate(self, experiment, control, treatment, days, seed, limit):
        rng = np.random.default_rng(seed)
        simulation = Simulation(rng, control, treatment)
        # assignment as the site does it (variant_for), without a query per visit
        experiment = experiments.ExperimentSpec(
            experiment.pk, experiment.salt, tuple(experiment.blocks),
            tuple(experiments.VariantSpec(v.name, v.algorithm, v.share) for v in experiment.variants.order_by("id")),
            experiment.start, experiment.stop)
        customers = (Interaction.objects.filter(event="purchase", user__isnull=False)
                     .exclude(session_key__startswith=PREFIX).values("user_id")
                     .annotate(orders=Count("timestamp", distinct=True)).order_by("user_id")
                     .values_list("user_id", "orders"))
        if limit:
            customers = customers[:limit]
        first_day = timezone.localdate() - dt.timedelta(days=days)
        for user_id, orders in customers:
            visits = int(rng.poisson(min(0.4 + orders / 10, 4.0)))
            moments = sorted(
                aggregates.day_bounds(first_day + dt.timedelta(days=int(rng.integers(0, days))))[0]
                + dt.timedelta(seconds=int(rng.integers(8 * 3600, 22 * 3600))) for _visit in range(visits))
            for number, when in enumerate(moments):
                simulation.visit(user_id, number, when, experiment)
        return simulation
