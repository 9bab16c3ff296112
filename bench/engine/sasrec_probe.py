"""Probe: a self-attentive (SASRec-style) user encoder in place of SequenceModel's GRU.

``SASRecProbe`` subclasses :class:`recommender.engine.sequence.SequenceModel` and changes
only the user encoder (``_build``): learned positional embeddings over ``max_length``,
``num_blocks`` pre-norm transformer blocks (``keras.layers.MultiHeadAttention`` with a
padding mask from ``sequence > 0`` and, by default, a causal mask, then a point-wise
feed-forward layer, residuals, layer norm, dropout), a final layer norm, and the last
position's output as the user state. The training data, the loss, the output Dense layer
and the sparse wide part are SequenceModel's. Scoring runs the Keras model (TensorFlow at
scoring time: this is a probe, not an engine).

The protocol is ``bench/engine/deep_models.py accuracy`` (per-user temporal split, latest
20% held out, validation carved the same way from train, numpy EASE with lambda chosen on
validation as the peer), reusing its helpers.

Usage::

    nice -n 10 .venv/bin/python bench/engine/sasrec_probe.py --smoke
    nice -n 10 .venv/bin/python bench/engine/sasrec_probe.py --datasets online-retail --seeds 1
    nice -n 10 .venv/bin/python bench/engine/sasrec_probe.py --datasets online-retail --seeds 1 \\
        --params '[{}, {"dropout": 0.5}, {"num_blocks": 1}]'
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from numbers import Integral
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402
from common import DATASETS, LOADERS, SMOKE_SEQUENCE  # noqa: E402
from deep_models import _ndcg, splits_and_peer  # noqa: E402

from recommender.engine._deep_batches import l2_rows  # noqa: E402
from recommender.engine.base import check_param  # noqa: E402
from recommender.engine.sequence import SequenceModel  # noqa: E402

#: ``--smoke``: a tiny model, one epoch.
SMOKE_PARAMS = SMOKE_SEQUENCE | {"epochs": 1, "num_blocks": 1, "num_heads": 1}


class SASRecProbe(SequenceModel):
    """SequenceModel with a transformer encoder instead of the GRU (see the module docstring).

    Extra parameters: ``num_blocks`` (default 2), ``num_heads`` (default 1), ``causal``
    (default True: each position attends to itself and earlier positions only).
    """

    def __init__(self, *, num_blocks: int = 2, num_heads: int = 1, causal: bool = True, trend_days: int = 0,
                 **kwargs):
        super().__init__(trend_days=trend_days, **kwargs)
        self.num_blocks = num_blocks
        self.num_heads = num_heads
        self.causal = causal

    @classmethod
    def _param_names(cls):
        return SequenceModel._param_names() + ["num_blocks", "num_heads", "causal"]

    def _validate_params(self):
        super()._validate_params()
        check_param("num_blocks", self.num_blocks, Integral, 1)
        check_param("num_heads", self.num_heads, Integral, 1)

    def _build(self, keras, n_warm, wide, trend=False):
        if trend:
            raise ValueError("the probe has no trend input: trend_days must be 0")
        layers, ops = keras.layers, keras.ops
        reg = keras.regularizers.l2(self.l2) if self.l2 else None
        L, d = self.max_length, self.embedding_dim
        seq_in = keras.Input(shape=(L,), dtype="int32", name="sequence")
        hist_in = keras.Input(shape=(n_warm,), name="history")
        # padding: 0 in the (left-padded) sequence; the mask is built explicitly from seq > 0
        pad = layers.Lambda(lambda s: ops.cast(ops.greater(s, 0), "float32"), output_shape=(L,), name="pad")(seq_in)
        keep = layers.Lambda(lambda p: ops.expand_dims(p, -1), output_shape=(L, 1), name="keep")(pad)        # (B, L, 1)
        attend = layers.Lambda(lambda p: ops.cast(ops.expand_dims(p, 1), "bool"), output_shape=(1, L),
                           name="attend")(pad)  # (B, 1, L)
        emb = layers.Embedding(n_warm + 1, d, embeddings_regularizer=reg, name="item_embedding")(seq_in)
        emb = layers.Lambda(lambda e: e * float(np.sqrt(d)), output_shape=(L, d), name="scale")(emb)
        positions = layers.Lambda(lambda s: ops.zeros_like(s) + ops.arange(L, dtype="int32"),
                                  output_shape=(L,), name="positions")(seq_in)
        pos = layers.Embedding(L, d, name="position_embedding")(positions)
        x = layers.Add(name="item_and_position")([emb, pos])
        x = layers.Dropout(self.dropout, name="embedding_dropout")(x)
        x = layers.Multiply(name="masked_input")([x, keep])
        for b in range(self.num_blocks):
            h = layers.LayerNormalization(epsilon=1e-6, name=f"attention_norm_{b}")(x)
            a = layers.MultiHeadAttention(self.num_heads, d // self.num_heads, dropout=self.dropout,
                                          name=f"attention_{b}")(
                h, h, attention_mask=attend, use_causal_mask=bool(self.causal))
            a = layers.Dropout(self.dropout, name=f"attention_dropout_{b}")(a)
            x = layers.Add(name=f"attention_residual_{b}")([x, a])
            h = layers.LayerNormalization(epsilon=1e-6, name=f"ffn_norm_{b}")(x)
            h = layers.Dense(d, activation="relu", name=f"ffn_in_{b}")(h)
            h = layers.Dropout(self.dropout, name=f"ffn_dropout_{b}")(h)
            h = layers.Dense(d, name=f"ffn_out_{b}")(h)
            h = layers.Dropout(self.dropout, name=f"ffn_out_dropout_{b}")(h)
            x = layers.Add(name=f"ffn_residual_{b}")([x, h])
            x = layers.Multiply(name=f"masked_{b}")([x, keep])
        x = layers.LayerNormalization(epsilon=1e-6, name="final_norm")(x)
        state = layers.Lambda(lambda t: t[:, -1, :], output_shape=(d,), name="last_position")(x)  # latest item is last
        state = layers.Dropout(self.dropout, name="state_dropout")(state)
        logits = layers.Dense(n_warm, kernel_regularizer=reg, name="output")(state)
        logits = self._add_wide(keras, logits, hist_in, n_warm, wide)
        return keras.Model({"sequence": seq_in, "history": hist_in}, logits, name="sasrec_probe")

    def _export(self, model, warm):
        """Keep the Keras model (scoring runs it); keep the output layer for similar_items."""
        self._unit = self._similarity_block = None
        self._probe_model = model
        out_kernel, out_bias = model.get_layer("output").get_weights()
        self.output_kernel_ = np.asarray(out_kernel, np.float32)
        self.output_bias_ = np.asarray(out_bias, np.float32)
        self.warm_items_ = warm.astype(np.int64)
        self.wide_weights_ = None
        self.trend_gain_ = None

    def _score_block(self, user_indices, user_items):
        R = sp.csr_matrix(user_items, dtype=np.float32)[:, self.warm_items_]
        R.sort_indices()
        seq = self._sequences(user_indices, R)
        hist = l2_rows(R.toarray())
        warm_scores = np.asarray(self._probe_model({"sequence": seq, "history": hist}, training=False),
                                 np.float32)
        return self._all_items(warm_scores)


def run(args):
    results = []
    for name in args.datasets:
        _features, train, test, T, fit_tr, val, T_tr, peer, peer_val = splits_and_peer(name, args)
        for params in args.params:
            params = (SMOKE_PARAMS if args.smoke else {}) | params
            v, v_fit, v_ep, _kept = _ndcg(SASRecProbe(**params), fit_tr, val, args.k, timestamps=T_tr)
            tests = [_ndcg(SASRecProbe(**(params | {"random_state": s})), train, test, args.k, timestamps=T)
                     for s in range(args.seeds)]
            nd = np.array([t[0] for t in tests])
            row = {"dataset": name, "engine": "sasrec_probe", "params": params,
                   "validation_ndcg": round(v, 4), "validation_epochs": v_ep, "validation_fit_s": round(v_fit, 1),
                   "test_ndcg_mean": round(float(nd.mean()), 4), "test_ndcg_std": round(float(nd.std()), 4),
                   "vs_peer": round(float(nd.mean() / peer), 3),
                   "fit_s": round(float(np.mean([t[1] for t in tests])), 1), "epochs": [t[2] for t in tests],
                   "peer_ease_test": round(peer, 4), "peer_ease_validation": round(peer_val, 4)}
            results.append(row)
            print(json.dumps(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["online-retail", "ml-latest-small"],
                        choices=sorted(LOADERS))
    parser.add_argument("--data-dir", type=Path, default=DATASETS)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--params", type=json.loads, default=[{}],
                        help="JSON dict of SASRecProbe parameters, or a list of dicts (one run each)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON")
    parser.add_argument("--smoke", action="store_true",
                        help="300 users x 300 items, one seed, a tiny model, one epoch: seconds")
    args = parser.parse_args(argv)
    if isinstance(args.params, dict):
        args.params = [args.params]
    if args.smoke:
        args.seeds = 1
    run(args)


if __name__ == "__main__":
    main()
