"""How different "Similar items" and "Customers also bought" are, and how varied the reasons.

On the UCI Online Retail data (datasets/online-retail), cleaned like the demo loader
(``shop_load_retail``: identified customers, no cancellations, quantity and price > 0,
product stock codes only) with the demo's categories (``shopdemo.shop.categories``):

* overlap of the first 11 items of the similar and bought-together lists of each item,
  old engines (ItemKNN / Cooccurrence) and new ones (SimilarItems / Complements);
* intra-list category diversity: share of distinct categories in a list and
  1 - the share of same-category pairs;
* catalogue coverage of each block (items that appear in some item's list);
* bought-together cards (the first 5 of each list) of the item's own product line (another
  design of it: ``recommender.engine.complements.product_line_keys``), and lists whose
  first 5 hold two designs of one line, with Complements' product-line rule off and on;
* product pages (5 similar + 5 bought-together cards, filled as ``serving`` fills them)
  whose two rows show the same title, with and without the page's title rule, and the
  cards left in the second row;
* the share of recommended-for-you cards (Hybrid, 10 per user, users with >= 3 history
  items) whose reason differs from every earlier card's reason in the same list, with the
  old reason rule (weighted history, top contributor) and the new one (``refresh._because``),
  and on category pages with the one-reason share held before and after the category filter;
* blocks of 5 with 3 or more designs of one product line, in recommended-for-you and in
  each category's trending block, and the recommended-for-you NDCG@10, with and without
  the serving's ``SAME_LINE_CAP`` of 2;
* NDCG@10 of each algorithm on the held-out split of bench/engine/accuracy.py (per user,
  the latest 20% held out; users with < 5 interactions stay in train).

Baskets are a customer's purchases on one day, as ``recommender.training.dataset.basket_matrix``
builds them; the data has no views, so SimilarItems is content only here.

Usage::

    .venv/bin/python bench/bench_shelf.py            # about 3 minutes on 2 cores
    .venv/bin/python bench/bench_shelf.py --users 400
    .venv/bin/python bench/bench_shelf.py --smoke    # 300 customers x 300 products, 50 users: seconds
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import os
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench" / "engine"))

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402
from common import SMOKE_ITEMS, SMOKE_USERS, subsample, temporal_split  # noqa: E402
from django.conf import settings  # noqa: E402

from recommender.engine import build_engine  # noqa: E402
from recommender.engine.complements import product_line_keys  # noqa: E402
from recommender.engine.evaluation import ranking_metrics  # noqa: E402
from recommender.engine.neighbors import capped_reason_order, varied_reasons  # noqa: E402

settings.configure(USE_I18N=False)  # the demo's category names are marked for translation
from shopdemo.shop.categories import categorize  # noqa: E402

DATA = ROOT / "datasets" / "online-retail" / "online_retail.csv.gz"
NON_PRODUCT = {"next day carriage", "packing charge", "high resolution image"}
LIST = 11
#: ``--smoke``: users sampled for the reasons figure.
SMOKE_REASON_USERS = 50


def load(path=DATA):
    users, items, ts, qty = [], [], [], []
    names = {}
    with io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="") as fh:
        for r in csv.DictReader(fh):
            code, desc = r["StockCode"], (r["Description"] or "").strip()
            if (not r["CustomerID"] or r["InvoiceNo"].startswith("C") or int(r["Quantity"]) <= 0
                    or float(r["UnitPrice"]) <= 0 or not code[:1].isdigit() or desc.lower() in NON_PRODUCT):
                continue
            users.append(int(float(r["CustomerID"])))
            items.append(code)
            ts.append(datetime.strptime(r["InvoiceDate"], "%Y-%m-%d %H:%M").replace(tzinfo=UTC).timestamp())
            qty.append(int(r["Quantity"]))
            if desc:
                names.setdefault(code, Counter())[desc] += 1
    codes, items = np.unique(np.array(items), return_inverse=True)
    users = np.unique(np.array(users), return_inverse=True)[1]
    original = [names[c].most_common(1)[0][0] if c in names else c for c in codes]
    features = {"title": [o.title() for o in original], "category": [categorize(o) for o in original]}
    features["description"] = [f"{o} (stock code {c}). Category: {g}." for o, c, g in
                               zip(original, codes, features["category"], strict=True)]
    return users, items, np.array(ts), np.array(qty, float), len(codes), features


def smoke_subset(users, items, ts, qty, n_items, features):
    """``--smoke``: the order lines of the first customers and their most bought products
    (``common.subsample``, SMOKE_USERS x SMOKE_ITEMS), re-indexed."""
    users, items, lines, n_items, features = subsample(users, items, np.arange(len(users)), n_items, features,
                                                       SMOKE_USERS, SMOKE_ITEMS)
    return users, items, ts[lines], qty[lines], n_items, features


def first_seen(users, items, ts):
    order = np.lexsort((ts, items, users))
    u, i, t = users[order], items[order], ts[order]
    first = np.ones(len(u), bool)
    first[1:] = (u[1:] != u[:-1]) | (i[1:] != i[:-1])
    return u[first], i[first], t[first]


def baskets_of(users, items, ts, n_items):
    day = (ts // 86_400).astype(np.int64)
    keys, group = np.unique(np.column_stack([users, day]), axis=0, return_inverse=True)
    B = sp.csr_matrix((np.ones(len(items), np.float32), (group.ravel(), items)), shape=(len(keys), n_items))
    B.data[:] = 1.0
    return B, keys[:, 0]


def lists(model, n_items):
    return [model.similar_items(i, n=LIST)[0] for i in range(n_items)]


def diversity(all_lists, cats):
    distinct, pairs = [], []
    for lst in all_lists:
        if len(lst) < 2:
            continue
        c = cats[lst]
        distinct.append(len(set(c.tolist())) / len(c))
        same = (c[:, None] == c[None, :]).sum() - len(c)
        pairs.append(1 - same / (len(c) * (len(c) - 1)))
    return float(np.mean(distinct)), float(np.mean(pairs))


def overlap(a_lists, b_lists):
    shares = [len(set(a.tolist()) & set(b.tolist())) / min(len(a), len(b))
              for a, b in zip(a_lists, b_lists, strict=True) if len(a) and len(b)]
    return float(np.mean(shares))


def coverage(all_lists, n_items):
    return len(set(np.concatenate([lst for lst in all_lists if len(lst)]).tolist())) / n_items


def same_line(all_lists, lines, n=5):
    """(share of the first ``n`` cards of each non-empty list that are of the list item's own
    product line, share of lists whose first ``n`` hold two items of one line)."""
    own = cards = twice = shown = 0
    for item, lst in enumerate(all_lists):
        first = lines[np.asarray(lst[:n], dtype=np.int64)]
        if not len(first):
            continue
        shown += 1
        cards += len(first)
        if lines[item] >= 0:
            own += int((first == lines[item]).sum())
        keyed = first[first >= 0]
        twice += len(np.unique(keyed)) < len(keyed)
    return own / max(cards, 1), twice / max(shown, 1)


def page_rows(similar, complements, titles, n=5, page_rule=True):
    """A product page's two rows as ``serving`` fills them from the lists: ``n`` items each,
    none with the product's own title or a title already in the row, and the second row
    without the first row's items (and, with ``page_rule``, without their titles).

    Returns (share of pages whose rows share a title, mean length of the second row).
    """
    keys = [" ".join(t.casefold().split()) for t in titles]  # folded as serving.candidates.title_key
    repeats, second = [], []
    for item, (sim, comp) in enumerate(zip(similar, complements, strict=True)):
        rows, taken, seen = [], set(), {keys[item]}
        for candidates in (sim, comp):
            row, own = [], {keys[item]}
            for j in candidates.tolist():
                if j in taken or keys[j] in own or (page_rule and keys[j] in seen):
                    continue
                row.append(j)
                own.add(keys[j])
                if len(row) == n:
                    break
            rows.append(row)
            taken.update(row)
            seen.update(keys[j] for j in row)
        if not rows[0] or not rows[1]:
            continue
        repeats.append(bool({keys[j] for j in rows[0]} & {keys[j] for j in rows[1]}))
        second.append(len(rows[1]))
    return float(np.mean(repeats)), float(np.mean(second))


def distinct_reason_share(model, X, users, cats, n=10, served=50, category_n=5):
    """Distinct reasons per card of each user's top ``n``: the old rule, ``refresh._because``'s
    rule, and what the serving shows (the top ``served`` list with those reasons, reordered
    by ``engine.neighbors.capped_reason_order`` as ``serving.candidates.Pipeline`` does
    for a block of ``n``); and the share of blocks in which one history item is the reason
    of more than half of the cards, for the last two.

    Category pages: for each category with at least 2 items in a user's top ``served``, the
    block of its first ``category_n`` cards, with the share capped before the category
    filter (on the whole list) and after it (as ``Pipeline.run`` does): the
    share of blocks in which one history item names more cards than the cap (half of
    ``category_n``, rounded up).
    """
    old_total = new_total = shown_total = cards = shown_cards = 0
    dominated_new = dominated_shown = blocks = 0
    category_blocks = category_before = category_after = 0
    for u in users:
        row = X[u]
        recs, _s = model.recommend(u, row, n=served)
        binary = row.copy()
        binary.data[:] = 1.0
        reasons = varied_reasons(model.explain_many(u, binary, recs, n=3), 0.5)
        old = [r[0][0] if r else None for r in model.explain_many(u, row, recs[:n], n=1)]
        new = reasons[:n]
        shown = [reasons[i] for i in capped_reason_order(reasons, n)[:n]]
        old_total += len({r for r in old if r is not None})
        new_total += len({r for r in new if r is not None})
        shown_total += len({r for r in shown if r is not None})
        cards += len(new)
        shown_cards += len(shown)
        if new:
            blocks += 1
            dominated_new += max(Counter(new).values()) > len(new) / 2
            dominated_shown += max(Counter(shown).values()) > len(shown) / 2
        reordered = capped_reason_order(reasons, category_n)
        for category, count in Counter(cats[recs].tolist()).items():
            if count < 2:
                continue
            before = [reasons[i] for i in reordered if cats[recs[i]] == category][:category_n]
            inside = [r for i, r in enumerate(reasons) if cats[recs[i]] == category]
            after = [inside[i] for i in capped_reason_order(inside, category_n)[:category_n]]
            cap = -(-category_n // 2)
            category_blocks += 1
            category_before += max(Counter(r for r in before if r is not None).values(), default=0) > cap
            category_after += max(Counter(r for r in after if r is not None).values(), default=0) > cap
    return {"old": old_total / cards, "new": new_total / cards, "shown": shown_total / shown_cards,
            "dominated_new": dominated_new / blocks, "dominated_shown": dominated_shown / blocks,
            "category_blocks": category_blocks, "category_before": category_before / max(category_blocks, 1),
            "category_after": category_after / max(category_blocks, 1)}


def released_per_source(sources, lines, n=5, cap=2):
    """The ``n`` cards a block served from ``sources`` (lists of item indices, read in order)
    when the designs over the line cap waited only until the end of their own source, as
    ``serving.candidates.Pipeline`` did before they waited for every source (then a block
    is ``line_capped`` of the sources read one after another)."""
    block, count, held, seen = [], Counter(), [], set()
    for source in sources:
        for j in source:
            if j in seen:
                continue
            seen.add(j)
            key = lines[j] if lines[j] >= 0 else None
            if key is not None and count[key] >= cap:
                held.append(j)
                continue
            block.append(j)
            count[key] += key is not None
            if len(block) == n:
                return block
        released = held[:n - len(block)]
        block, held = block + released, held[len(released):]
        if len(block) == n:
            return block
    return block


def category_page_cards(model, X, users, cats, recent, similar, complements, lines=None, sold=None,
                        n=5, served=50):
    """Personal cards a category page's "recommended for you" block (``n`` cards) can show,
    over every category of the catalogue and the sampled ``users``: from the user's list
    (top ``served``) alone, then with the similar lists of the user's 10 most recent items
    (the serving's first history source), then with their bought-together lists too (the
    second). Returns ``{label: (share of pages with >= 1 card, mean cards)}``; with
    ``lines`` and ``sold`` (recent purchases per item: the trending source that fills the
    block) also ``"line"``: the share of blocks with 3 or more designs of one product line
    when the designs over the cap wait for their source's end, and when they wait for all
    sources (``released_per_source``, ``line_capped``)."""
    categories = np.unique(cats)
    sums = {label: [0, 0.0] for label in ("list", "list + similar", "list + similar + bought with")}
    heavy = {"source": 0, "all": 0}
    pages = 0
    for u in users:
        row = X[u]
        recs, _s = model.recommend(u, row, n=served)
        seen = set(row.indices.tolist())
        history = recent[u]
        pools = {"list": list(recs)}
        pools["list + similar"] = pools["list"] + [j for i in history for j in similar(i)]
        pools["list + similar + bought with"] = pools["list + similar"] + [j for i in history for j in complements(i)]
        sources = [list(recs), [j for i in history for j in similar(i)],
                   [j for i in history for j in complements(i)]]
        for category in categories:
            pages += 1
            for label, pool in pools.items():
                cards = len({j for j in pool if cats[j] == category and j not in seen})
                sums[label][0] += cards > 0
                sums[label][1] += min(cards, n)
            if lines is not None:
                trending = np.flatnonzero((cats == category) & (sold > 0))
                in_page = [[j for j in source if cats[j] == category and j not in seen]
                           for source in (*sources, trending[np.argsort(-sold[trending], kind="stable")])]
                heavy["source"] += line_heavy(released_per_source(in_page, lines, n), lines)
                heavy["all"] += line_heavy(line_capped(list(dict.fromkeys(j for s in in_page for j in s)), lines, n),
                                           lines)
    out = {label: (hits / pages, total / pages) for label, (hits, total) in sums.items()}
    if lines is not None:
        out["line"] = (heavy["source"] / pages, heavy["all"] / pages)
    return out


def line_heavy(block, lines, at_least=3):
    """Whether ``block`` (item indices) holds ``at_least`` items of one product line."""
    keys = [lines[j] for j in block if lines[j] >= 0]
    return bool(keys) and max(Counter(keys).values()) >= at_least


def line_capped(ranked, lines, n, cap=2):
    """The first ``n`` of ``ranked`` with at most ``cap`` items of one product line while
    other items remain, as ``serving.candidates.Pipeline`` serves them (``SAME_LINE_CAP``)."""
    keys = [lines[j] if lines[j] >= 0 else None for j in ranked]
    return [ranked[i] for i in capped_reason_order(keys, n, cap=cap)[:n]]


def same_line_figures(model, train, test, lines, cats, T, served=50):
    """The line cap on "recommended for you" (``model``'s held-out top ``served`` lists) and on
    each category's trending block (its items bought most in the last 30 days of train):
    NDCG@10 with and without the cap, and the share of 5-card blocks with 3 or more items of
    one product line, without and with it."""
    evaluated = np.flatnonzero(test.getnnz(axis=1) > 0)
    recs, _s = model.recommend_batch(evaluated, train[evaluated], n=served)
    capped = np.array([line_capped([j for j in row if j >= 0], lines, 10) + [-1] * 10 for row in recs])[:, :10]
    counts, n_users = train.getnnz(axis=0), train.shape[0]
    plain = ranking_metrics(recs[:, :10], test[evaluated], 10, counts, n_users)["ndcg"]
    with_cap = ranking_metrics(capped, test[evaluated], 10, counts, n_users)["ndcg"]
    heavy = np.mean([line_heavy([j for j in row[:5] if j >= 0], lines) for row in recs])
    heavy_capped = np.mean([line_heavy(line_capped([j for j in row if j >= 0], lines, 5), lines) for row in recs])
    recent = T.copy()
    recent.data = (recent.data >= recent.data.max() - 30 * 86_400).astype(np.float32)
    sold = np.asarray(recent.sum(axis=0)).ravel()
    blocks = blocks_capped = n_blocks = 0
    for category in np.unique(cats):
        members = np.flatnonzero((cats == category) & (sold > 0))
        if len(members) < 5:
            continue
        ranked = members[np.argsort(-sold[members], kind="stable")].tolist()
        n_blocks += 1
        blocks += line_heavy(ranked[:5], lines)
        blocks_capped += line_heavy(line_capped(ranked, lines, 5), lines)
    return {"ndcg": plain, "ndcg_capped": with_cap, "heavy": heavy, "heavy_capped": heavy_capped,
            "categories": n_blocks, "trending_heavy": blocks / max(n_blocks, 1),
            "trending_heavy_capped": blocks_capped / max(n_blocks, 1)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, help="users sampled for the reasons figure (default 300; 50 with --smoke)")
    parser.add_argument("--smoke", action="store_true",
                        help=f"the first {SMOKE_USERS} customers and {SMOKE_ITEMS} products: seconds, through the same "
                             "code (what tests/test_bench_smoke.py runs)")
    args = parser.parse_args()
    if args.users is None:
        args.users = SMOKE_REASON_USERS if args.smoke else 300
    t0 = time.perf_counter()
    users, items, ts, qty, n_items, features = load()
    if args.smoke:
        users, items, ts, qty, n_items, features = smoke_subset(users, items, ts, qty, n_items, features)
    cats = np.array(features["category"])
    print(f"{users.max() + 1} customers, {n_items} products, {len(users)} order lines "
          f"({time.perf_counter() - t0:.0f} s)", flush=True)
    u1, i1, t1 = first_seen(users, items, ts)
    train, test, T = temporal_split(u1, i1, t1, n_items)
    B, owners = baskets_of(users, items, ts, n_items)
    X_full = sp.csr_matrix((np.ones(len(u1), np.float32), (u1, i1)), shape=train.shape)
    engines = {
        "itemknn (old similar)": ("itemknn", {}),
        "cooccurrence (old bought together)": ("cooccurrence", {}),
        "similar (new)": ("similar", {}),
        "complements llr (new)": ("complements", {}),
        "complements llr, no product-line rule": ("complements", {"line_words": 0}),
        "complements lift": ("complements", {"measure": "lift"}),
    }
    print("\nNDCG@10 on the held-out split (bench/engine/accuracy.py protocol)")
    evaluated = np.flatnonzero(test.getnnz(axis=1) > 0)
    full = {}
    for label, (name, params) in engines.items():
        start = time.perf_counter()
        model = build_engine(name, **params).fit(train, item_features=features, baskets=B, basket_users=owners)
        recs, _s = model.recommend_batch(evaluated, train[evaluated], n=10)
        m = ranking_metrics(recs, test[evaluated], 10, train.getnnz(axis=0), train.shape[0])
        full[label] = build_engine(name, **params).fit(X_full, item_features=features, baskets=B,
                                                       basket_users=owners)
        print(f"  {label:36s} ndcg={m['ndcg']:.4f} hit_rate={m['hit_rate']:.4f} "
              f"({time.perf_counter() - start:.0f} s)", flush=True)
    shelves = {label: lists(model, n_items) for label, model in full.items()}
    print(f"\nShelves of every item (first {LIST} items)")
    print(f"  overlap similar vs bought together, old: "
          f"{overlap(shelves['itemknn (old similar)'], shelves['cooccurrence (old bought together)']):.3f}")
    print(f"  overlap similar vs bought together, new: "
          f"{overlap(shelves['similar (new)'], shelves['complements llr (new)']):.3f}; "
          f"without the product-line rule: "
          f"{overlap(shelves['similar (new)'], shelves['complements llr, no product-line rule']):.3f}")
    for label, all_lists in shelves.items():
        distinct, pairs = diversity(all_lists, cats)
        print(f"  {label:36s} coverage={coverage(all_lists, n_items):.3f} distinct categories={distinct:.3f} "
              f"1-same-category pairs={pairs:.3f}")
    titles = features["title"]
    lines = product_line_keys(titles, features["category"])
    for label in ("cooccurrence (old bought together)", "complements llr, no product-line rule",
                  "complements llr (new)"):
        own, twice = same_line(shelves[label], lines)
        print(f"  {label:36s} first 5 cards of the item's own product line={own:.4f}; "
              f"lists with two of one line={twice:.4f}")
    for rule in (False, True):
        share, length = page_rows(shelves["similar (new)"], shelves["complements llr (new)"], titles,
                                  page_rule=rule)
        print(f"  product pages (5 + 5 cards) whose rows share a title, page rule {'on' if rule else 'off'}: "
              f"{share:.4f}; cards in the second row {length:.2f}")
    probe = titles.index("Alarm Clock Bakelike Ivory") if "Alarm Clock Bakelike Ivory" in titles else 198
    for label in ("itemknn (old similar)", "similar (new)", "cooccurrence (old bought together)",
                  "complements llr (new)"):
        print(f"\n  {label} of {titles[probe]!r}:")
        print("    " + "; ".join(titles[j] for j in shelves[label][probe][:6]))
    rng = np.random.default_rng(0)
    weighted = sp.csr_matrix((np.log1p(qty).astype(np.float32), (users, items)), shape=train.shape)
    weighted.sum_duplicates()
    eligible = np.flatnonzero(weighted.getnnz(axis=1) >= 3)
    sample = np.sort(rng.choice(eligible, min(args.users, len(eligible)), replace=False))
    start = time.perf_counter()
    hybrid = build_engine("hybrid").fit(weighted, item_features=features)
    shares = distinct_reason_share(hybrid, weighted, sample, cats)
    print(f"\nRecommended for you (hybrid {hybrid.component_names_}, {len(sample)} users with >= 3 items): "
          f"distinct reasons per card old={shares['old']:.3f} new={shares['new']:.3f} served={shares['shown']:.3f}; "
          f"blocks with one reason on more than half the cards new={shares['dominated_new']:.3f} "
          f"served={shares['dominated_shown']:.3f} ({time.perf_counter() - start:.0f} s)")
    print(f"  category pages ({shares['category_blocks']} blocks of 5, categories with >= 2 items in a user's top 50): "
          f"one reason on more cards than the cap (3), capped before the category filter="
          f"{shares['category_before']:.3f}, after it={shares['category_after']:.3f}")
    order = np.lexsort((ts, users))
    recent = {}
    for u, j in zip(users[order][::-1], items[order][::-1], strict=True):  # newest first
        mine = recent.setdefault(int(u), [])
        if j not in mine and len(mine) < 10:
            mine.append(int(j))
    similar_model, complements_model = full["similar (new)"], full["complements llr (new)"]
    pages = category_page_cards(
        hybrid, weighted, sample, cats, recent,
        lambda i: [j for j in similar_model.similar_items(i, n=50)[0] if j >= 0],
        lambda i: [j for j in complements_model.similar_items(i, n=50)[0] if j >= 0],
        lines=lines, sold=np.bincount(items[ts >= ts.max() - 30 * 86_400], minlength=n_items))
    line_pages = pages.pop("line")
    print(f"  category pages ({len(sample)} users x {len(np.unique(cats))} categories), personal cards of 5: "
          + "; ".join(f"{label}: pages with any={share:.3f} mean={mean:.2f}" for label, (share, mean) in pages.items()))
    print(f"  category pages, blocks of 5 (personal sources, then trending in the category) with >= 3 designs "
          f"of one line: designs over the cap wait for their source's end={line_pages[0]:.3f}, "
          f"for every source={line_pages[1]:.3f}")
    start = time.perf_counter()
    held_out = build_engine("hybrid").fit(train, item_features=features)
    lines_ = same_line_figures(held_out, train, test, lines, cats, T)
    print(f"\nAt most 2 designs of a product line (SAME_LINE_CAP): recommended for you (hybrid, held-out split) "
          f"ndcg={lines_['ndcg']:.4f} -> {lines_['ndcg_capped']:.4f}; blocks of 5 with >= 3 of one line "
          f"{lines_['heavy']:.3f} -> {lines_['heavy_capped']:.3f}; trending in a category "
          f"({lines_['categories']} categories) {lines_['trending_heavy']:.3f} -> "
          f"{lines_['trending_heavy_capped']:.3f} ({time.perf_counter() - start:.0f} s)")

if __name__ == "__main__":
    main()
