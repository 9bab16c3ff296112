"""What a running experiment adds to a recommendation block on the request path.

    .venv/bin/python bench/bench_experiments.py            # 20,000 calls per case
    .venv/bin/python bench/bench_experiments.py --smoke    # 500 calls

Times the template tags' assignment step (``recommender_tags._assigned``: the process's
copy of the running experiments, the visitor's variant, the exposure) with no running
experiment and with one whose exposure this process already recorded, on a fresh SQLite
database; and counts the queries of the warm case (0). Results: docs/benchmarks.md,
"Online metrics".
"""

import argparse
import timeit

from _django import add_smoke, setup


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    add_smoke(parser)
    args = parser.parse_args()
    calls = 500 if args.smoke else args.calls
    setup("sqlite")
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.template import Context
    from django.test import RequestFactory
    from django.test.utils import CaptureQueriesContext

    from recommender.analytics import experiments
    from recommender.models import Experiment, Variant
    from recommender.templatetags.recommender_tags import _assigned

    class Session(dict):
        session_key = "bench-session"

    request = RequestFactory().get("/")
    request.user = get_user_model().objects.create_user("bench")
    request.session = Session()
    context = Context({"request": request})

    def per_call():
        return timeit.timeit(lambda: _assigned(context, "recommended_for_you", None), number=calls) / calls * 1e6

    print(f"no running experiment: {per_call():.2f} us per block", flush=True)
    experiment = Experiment.objects.create(name="bench", blocks=["recommended_for_you"])
    Variant.objects.create(experiment=experiment, name="a", algorithm="hybrid", share=0.5)
    Variant.objects.create(experiment=experiment, name="b", algorithm="ease", share=0.5)
    experiments.start(experiment)
    _assigned(context, "recommended_for_you", None)  # loads the experiments, records the exposure
    with CaptureQueriesContext(connection) as queries:
        warm = per_call()
    print(f"a running experiment, exposure recorded: {warm:.2f} us per block, {len(queries)} queries", flush=True)


if __name__ == "__main__":
    main()
