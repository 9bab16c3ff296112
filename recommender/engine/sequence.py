"""Sequence-aware deep engine (Keras 3 on TensorFlow): a GRU over each user's ordered history.

The user's items, ordered by time, are read by a GRU (as in GRU4Rec, Hidasi et al. 2016)
over learned item embeddings; its last state is the user vector, and a dense output
layer gives one logit per item. Training cuts each history at a random point between
50% and 90% of it (at 80% for the held-out validation users) and fits the softmax of
the logits to the items that come *after* the cut, so the model learns what comes next
(a multinomial likelihood over all later items, not only the next one).

*Wide part* (as in :class:`~recommender.engine.deep.TwoTower`): the logits also get a
sparse item-item term ``gain * x @ W`` over the user's earlier items, ``W`` from the
closed-form neighbourhood ridge regression (TemporalEASE restricted to each item's
``wide_neighbours`` most co-occurring items) and ``gain`` trained with the GRU.

TensorFlow is imported only inside :meth:`SequenceModel.fit`. After training, the item
embeddings, the GRU's weights, the output layer and ``W`` are numpy / scipy arrays, and
``recommend`` runs the GRU in numpy (one ``(users x dim) @ (dim x 3 dim)`` product per
step of ``max_length``) for a block of users at a time.

Histories are ordered by the ``timestamps=`` given to ``fit``; each training user's
latest ``max_length`` items are stored (``user_sequences_``) so that scoring a known user
reads them in time order. Items in a scored row that the stored sequence lacks (events
after training) are appended as the newest; new users' items are read in column order.
Items nobody interacted with during training get the lowest scores (the model has no
content head).

*Trend* (``trend_days``): the logits also get ``gain * log(1 + n)``, ``n`` the users who
interacted with the item in the ``trend_days`` days before the request, so what sells at
the time of the request is an input, not something the GRU must read from the history.
"""

from __future__ import annotations

from collections.abc import Callable
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp

from recommender.engine._deep_batches import l2_rows, time_positions, wide_start
from recommender.engine._keras import _configure_tensorflow, apply_wide, ndcg_at
from recommender.engine.base import RecommenderBase, check_param
from recommender.engine.deep import similarity_row

__all__ = ["SequenceModel"]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


class SequenceModel(RecommenderBase):
    """GRU next-items recommender over time-ordered histories, served in numpy.

    Parameters
    ----------
    embedding_dim : int, default 64
        Size of the item embeddings and of the GRU state.
    max_length : int, default 50
        The latest items of a history that the GRU reads.
    dropout : float, default 0.2
        Dropout on the item embeddings and on the user vector, in [0, 1).
    l2 : float, default 1e-5
        L2 penalty on the embeddings and the output layer.
    epochs : int, default 60
        Maximum epochs; early stopping on the held-out users' loss usually ends sooner.
    batch_size : int, default 128
    learning_rate : float, default 1e-3
    patience : int, default 3
        Epochs without validation improvement before stopping; the best epoch is kept.
    validation_fraction : float, default 0.1
        Share of users held out for early stopping, in [0, 1).
    wide_neighbours : int, default 100
        Neighbours per item of the sparse item-item part; 0 turns it off.
    wide_regularization : float, default 200.0
        Ridge penalty of the wide part's closed-form weights.
    wide_max_items : int, default 50000
        Above this many warm items the wide part is off.
    history_weight : float, default 0.0
        Share of each training target spread over the user's whole history (earlier and
        later items, as TemporalEASE's target) instead of the later items only, in [0, 1].
    trend_days : int, default 14
        With ``timestamps=``, add ``gain * log(1 + n)`` to the logits, ``n`` the training
        users whose interaction with the item falls in the ``trend_days`` days before the
        request day, ``gain`` trained with the GRU. A training example's request day is
        the day of its last input item; served lists use the trend at the end of training
        (``trend_scores_``), and :meth:`replay_at` replays other days offline. After
        training, the term is kept only if it raises NDCG@10 on the held-out users
        (``trend_check_``; ``trend_gain_`` is None when it was dropped). 0 turns it off.
    random_state : int, default 0
    threads : int, default 2
        TensorFlow intra/inter-op threads.
    verbose : int, default 0
        Keras verbosity.
    """

    def __init__(self, *, embedding_dim: int = 64, max_length: int = 50, dropout: float = 0.2,
                 l2: float = 1e-5, epochs: int = 60, batch_size: int = 128,
                 learning_rate: float = 1e-3, patience: int = 3,
                 validation_fraction: float = 0.1, wide_neighbours: int = 100,
                 wide_regularization: float = 200.0, wide_max_items: int = 50_000,
                 history_weight: float = 0.0, trend_days: int = 14, random_state: int = 0,
                 threads: int = 2, verbose: int = 0):
        self.embedding_dim = embedding_dim
        self.max_length = max_length
        self.dropout = dropout
        self.l2 = l2
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.wide_neighbours = wide_neighbours
        self.wide_regularization = wide_regularization
        self.wide_max_items = wide_max_items
        self.history_weight = history_weight
        self.trend_days = trend_days
        self.random_state = random_state
        self.threads = threads
        self.verbose = verbose

    def _validate_params(self):
        for name in ("embedding_dim", "max_length", "epochs", "batch_size", "threads",
                     "wide_max_items"):
            check_param(name, getattr(self, name), Integral, 1)
        for name in ("patience", "wide_neighbours", "trend_days", "random_state", "verbose"):
            check_param(name, getattr(self, name), Integral, 0)
        check_param("dropout", self.dropout, Real, 0, 1, high_open=True)
        check_param("history_weight", self.history_weight, Real, 0, 1)
        check_param("validation_fraction", self.validation_fraction, Real, 0, 1, high_open=True)
        check_param("l2", self.l2, Real, 0)
        check_param("learning_rate", self.learning_rate, Real, 0, low_open=True)
        check_param("wide_regularization", self.wide_regularization, Real, 0, low_open=True)

    def fit(self, interactions, item_features=None, progress_callback: Callable | None = None,
            **kwargs) -> SequenceModel:
        """Train the GRU (see :meth:`RecommenderBase.fit`); ``timestamps=`` orders the
        histories (without them, column order is used), ``progress_callback(epoch,
        total_epochs, logs)`` is called after each epoch."""
        return super().fit(interactions, item_features=item_features,
                           progress_callback=progress_callback, **kwargs)

    # -- training -------------------------------------------------------------------
    def _fit(self, X, item_features=None, progress_callback=None, timestamps=None, **kwargs):
        warm = np.flatnonzero(X.getnnz(axis=0) > 0)
        if len(warm) == 0:
            raise ValueError("interactions has no non-zero entries: nothing to learn from.")
        Xw = sp.csr_matrix(X[:, warm])
        Xw.sort_indices()
        stamps, self._request_days, self._trend_cum = None, None, None
        if timestamps is not None:
            position, stamps = time_positions(Xw, timestamps, warm)
        else:  # column order stands in for time
            position = Xw.copy()
            counts = np.diff(Xw.indptr)
            rows = np.repeat(np.arange(Xw.shape[0]), counts)
            position.data = ((np.arange(Xw.nnz) - Xw.indptr[rows] + 0.5) / counts[rows]).astype(np.float32)
        # each row's warm items in time order (CSR layout: order[indptr[u]:indptr[u+1]])
        rows = np.repeat(np.arange(Xw.shape[0]), np.diff(Xw.indptr))
        by_time = np.lexsort((position.data, rows))
        order = Xw.indices[by_time].astype(np.int32)
        weights = Xw.data[by_time].astype(np.float32)
        indptr = Xw.indptr
        users = np.flatnonzero(np.diff(indptr) > 0)
        rng = np.random.default_rng(self.random_state)
        rng.shuffle(users)
        n_val = int(len(users) * self.validation_fraction)
        val_users, train_users = users[:n_val], users[n_val:]
        n_warm, L = len(warm), self.max_length
        share = float(self.history_weight)
        trend = self._trend_start(Xw, stamps, by_time) if self.trend_days and stamps is not None else None
        if trend is not None:
            cum, day_sorted = trend

        def make(batch, cut_rng):
            """(item ids of the earlier part, latest last, 0-padded on the left), earlier
            rows for the wide part, normalised targets of the later part."""
            seq = np.zeros((len(batch), L), np.int32)
            days = np.zeros(len(batch), np.int64)
            hist = np.zeros((len(batch), n_warm), np.float32)
            target = np.zeros((len(batch), n_warm), np.float32)
            for b, u in enumerate(batch):
                items, w = order[indptr[u]:indptr[u + 1]], weights[indptr[u]:indptr[u + 1]]
                n = len(items)
                cut = cut_rng.uniform(0.5, 0.9) if cut_rng is not None else 0.8
                m = min(max(int(np.ceil(cut * n)), 1), n - 1) if n > 1 else n
                early = items[:m][-L:]
                seq[b, L - len(early):] = early + 1
                hist[b, items[:m]] = w[:m]
                later = items[m:] if m < n else items
                target[b, later] = (1.0 - share) / len(later)
                if share:
                    target[b, items] += share / n
                if trend is not None:
                    days[b] = day_sorted[indptr[u] + max(m, 1) - 1]
            return seq, l2_rows(hist), target, None if trend is None else self._trend_rows(cum, days)

        keras, tf = _configure_tensorflow(self.random_state, self.threads, False)
        wide = None
        if self.wide_neighbours and n_warm <= self.wide_max_items:
            def wide_batch(batch, _rng):
                _seq, hist, target, _trend = make(batch, None)
                return hist, target, target > 0
            wide = wide_start(Xw, np.sort(train_users), wide_batch, rng, position,
                              neighbours=self.wide_neighbours,
                              regularization=self.wide_regularization)
            if wide[0].nnz == 0:
                wide = None
        model = self._build(keras, n_warm, wide, trend is not None)
        model.compile(optimizer=keras.optimizers.Adam(self.learning_rate),
                      loss=keras.losses.CategoricalCrossentropy(from_logits=True))
        batch_size = self.batch_size

        class Rows(keras.utils.PyDataset):
            def __init__(self, rows, shuffle):
                super().__init__()
                self.rows, self.shuffle = rows.copy(), shuffle

            def __len__(self):
                return int(np.ceil(len(self.rows) / batch_size))

            def __getitem__(self, i):
                seq, hist, target, trend_rows = make(self.rows[i * batch_size:(i + 1) * batch_size],
                                                     rng if self.shuffle else None)
                inputs = {"sequence": seq, "history": hist}
                if trend_rows is not None:
                    inputs["trend"] = trend_rows
                return inputs, target

            def on_epoch_end(self):
                if self.shuffle:
                    rng.shuffle(self.rows)

        callbacks = []
        if progress_callback is not None:
            callbacks.append(keras.callbacks.LambdaCallback(
                on_epoch_end=lambda e, logs: progress_callback(e + 1, self.epochs, dict(logs))))
        val = Rows(val_users, False) if len(val_users) else None
        if val is not None:
            callbacks.append(keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=self.patience, restore_best_weights=True))
        history = model.fit(Rows(train_users, True), validation_data=val, epochs=self.epochs,
                            callbacks=callbacks, verbose=self.verbose)
        self.history_ = {k: [float(v) for v in vals] for k, vals in history.history.items()}
        self.epochs_trained_ = len(self.history_.get("loss", []))
        if "val_loss" in self.history_:
            self.best_epoch_ = int(np.argmin(self.history_["val_loss"])) + 1
        self._export(model, warm)
        self._keras_model = model  # not saved: the numpy arrays are what serves
        self.trend_check_ = None
        if self.trend_gain_ is not None and val is not None:
            self.trend_check_ = self._check_trend(model, val)
            if self.trend_check_["without"] >= self.trend_check_["with"]:
                self.trend_gain_ = None  # no gain on the held-out users: served without the trend
        sequences = np.zeros((X.shape[0], L), np.int32)  # warm index + 1, latest last, 0 = none
        for u in users:
            items = order[indptr[u]:indptr[u + 1]][-L:]
            sequences[u, L - len(items):] = items + 1
        self.user_sequences_ = sequences

    def _trend_start(self, Xw, stamps, by_time):
        """The dense cumulative per-day counts of the warm items' interactions (one per
        user and item, on its timestamp's day; row ``d``: the days before day ``d``, day 0 =
        the first training day) and each cell's day in
        ``by_time`` order; sets ``trend_scores_`` (the trend the day after the last
        training day) and keeps the per-day counts for :meth:`replay_at`."""
        day_abs = np.floor(stamps.data / 86400.0).astype(np.int64)
        origin = int(day_abs.min())
        day = day_abs - origin
        n_days = int(day.max()) + 1
        daily = sp.csr_matrix((np.ones(len(day), np.float32), (day, Xw.indices)),
                              shape=(n_days, Xw.shape[1]), dtype=np.float32)
        cum = np.zeros((n_days + 1, Xw.shape[1]), np.float32)
        np.cumsum(daily.toarray(), axis=0, out=cum[1:])
        self._trend_cum, self._trend_origin = cum, origin
        self.trend_scores_ = self._trend_rows(cum, np.array([n_days]))[0]
        return cum, day[by_time]

    def _check_trend(self, model, val, k=10) -> dict:
        """NDCG@``k`` of the held-out users' later items (cut at 80%, their earlier items
        left out of the ranking) with the trained trend term and without it."""
        totals, count = {"with": 0.0, "without": 0.0}, 0
        for i in range(len(val)):
            inputs, target = val[i]
            later = target > 0
            keep = later.any(axis=1)
            if not keep.any():
                continue
            logits = np.asarray(model(inputs, training=False), np.float64)
            logits[inputs["history"] > 0] = -np.inf
            for label, scores in (("with", logits), ("without", logits - self.trend_gain_ * inputs["trend"])):
                totals[label] += ndcg_at(scores[keep], later[keep], k) * keep.sum()
            count += keep.sum()
        return {label: total / max(count, 1) for label, total in totals.items()}

    def _trend_rows(self, cum, days):
        """log(1 + interactions with each item in the ``trend_days`` days before each day)."""
        days = np.clip(days, 0, len(cum) - 1)
        return np.log1p(cum[days] - cum[np.maximum(days - self.trend_days, 0)])

    def replay_at(self, request_times) -> SequenceModel:
        """Offline evaluation: score user ``u`` with the trend as of ``request_times[u]``
        (seconds since the epoch; NaN: the end of training) instead of the end of training.

        For replaying each user's history at its own time in a benchmark. Only in the
        process that fitted the model (the per-day counts are not saved); a model without
        a trend ignores it.
        """
        if getattr(self, "trend_gain_", None) is None:
            return self
        if getattr(self, "_trend_cum", None) is None:
            raise ValueError("replay_at needs the model fitted in this process (the per-day counts are not saved).")
        t = np.asarray(request_times, np.float64)
        days = np.full(len(t), len(self._trend_cum) - 1, np.int64)
        known = np.isfinite(t)
        days[known] = np.floor(t[known] / 86400.0).astype(np.int64) - self._trend_origin
        self._request_days = days
        return self

    def _build(self, keras, n_warm, wide, trend=False):
        layers = keras.layers
        reg = keras.regularizers.l2(self.l2) if self.l2 else None
        seq_in = keras.Input(shape=(self.max_length,), dtype="int32", name="sequence")
        hist_in = keras.Input(shape=(n_warm,), name="history")
        emb = layers.Embedding(n_warm + 1, self.embedding_dim, mask_zero=True,
                               embeddings_regularizer=reg, name="item_embedding")(seq_in)
        emb = layers.Dropout(self.dropout, name="embedding_dropout")(emb)
        state = layers.GRU(self.embedding_dim, name="gru")(emb)
        state = layers.Dropout(self.dropout, name="state_dropout")(state)
        logits = layers.Dense(n_warm, kernel_regularizer=reg, name="output")(state)
        logits = self._add_wide(keras, logits, hist_in, n_warm, wide)
        inputs = {"sequence": seq_in, "history": hist_in}
        if trend:
            trend_in = keras.Input(shape=(n_warm,), name="trend")

            class Gain(keras.layers.Layer):
                def build(self, input_shape):
                    self.gain = self.add_weight(shape=(), name="gain", initializer=keras.initializers.Constant(1.0))

                def call(self, x):
                    return x * self.gain

            logits = layers.Add(name="with_trend")([logits, Gain(name="trend_gain")(trend_in)])
            inputs["trend"] = trend_in
        return keras.Model(inputs, logits, name="sequence_model")

    @staticmethod
    def _add_wide(keras, logits, hist_in, n_warm, wide):
        """``logits`` plus the sparse item-item part ``wide`` (matrix, gain) applied to the
        history input; with ``wide=None`` the input is kept in the graph, multiplied by 0,
        so both inputs are always fed."""
        layers = keras.layers
        if wide is None:
            return layers.Add(name="sequence_and_wide")(
                [logits, layers.Lambda(lambda h: h * 0.0, name="no_wide")(hist_in)])
        wide_out = apply_wide(keras, hist_in, n_warm, wide)
        return layers.Add(name="sequence_and_wide")([logits, wide_out])

    def _export(self, model, warm):
        """Copy the trained layers into numpy arrays for TensorFlow-free serving."""
        self._unit = self._similarity_block = None  # caches of the previous fit
        self.item_embeddings_ = np.asarray(model.get_layer("item_embedding").get_weights()[0], np.float32)
        kernel, recurrent, bias = model.get_layer("gru").get_weights()
        self.gru_kernel_ = np.asarray(kernel, np.float32)
        self.gru_recurrent_kernel_ = np.asarray(recurrent, np.float32)
        self.gru_bias_ = np.asarray(bias, np.float32).reshape(2, -1)
        out_kernel, out_bias = model.get_layer("output").get_weights()
        self.output_kernel_ = np.asarray(out_kernel, np.float32)
        self.output_bias_ = np.asarray(out_bias, np.float32)
        self.warm_items_ = warm.astype(np.int64)
        self.trend_gain_ = None
        if "trend_gain" in [layer.name for layer in model.layers]:
            self.trend_gain_ = float(model.get_layer("trend_gain").gain.numpy())
        self.wide_weights_ = None
        if "wide" in [layer.name for layer in model.layers]:
            wide = model.get_layer("wide")
            values = np.asarray(wide.values.numpy(), np.float32) * np.float32(wide.effective_gain())
            n = len(warm)
            self.wide_weights_ = sp.csr_matrix(
                (values, np.asarray(wide.cols.numpy()), np.asarray(wide.indptr.numpy())),
                shape=(n, n), dtype=np.float32)

    # -- serving (numpy) --------------------------------------------------------------
    def _sequences(self, user_indices, R: sp.csr_matrix) -> np.ndarray:
        """Warm item index + 1 of each row's items in time order (latest last), 0-padded:
        the stored training sequence of known users restricted to the row's items, then
        the row's other items."""
        L = self.max_length
        out = np.zeros((R.shape[0], L), np.int32)
        stored = self.user_sequences_
        for b, u in enumerate(np.asarray(user_indices)):
            present = R.indices[R.indptr[b]:R.indptr[b + 1]]
            if not len(present):
                continue
            seq = stored[u][stored[u] > 0] - 1 if 0 <= u < len(stored) else np.empty(0, np.int32)
            seq = seq[np.isin(seq, present)]
            extra = present[~np.isin(present, seq)]
            items = np.concatenate([seq, extra])[-L:]
            out[b, L - len(items):] = items + 1
        return out

    def _user_states(self, seq: np.ndarray) -> np.ndarray:
        """The GRU's last state for each row of ``seq`` (Keras' GRU, reset_after=True)."""
        h = np.zeros((seq.shape[0], self.gru_recurrent_kernel_.shape[0]), np.float32)
        K, U, (b_in, b_rec) = self.gru_kernel_, self.gru_recurrent_kernel_, self.gru_bias_
        for t in range(seq.shape[1]):
            step = seq[:, t]
            active = step > 0
            if not active.any():
                continue
            x = self.item_embeddings_[step[active]] @ K + b_in
            hp = h[active]
            rec = hp @ U + b_rec
            x_z, x_r, x_h = np.split(x, 3, axis=1)
            r_z, r_r, r_h = np.split(rec, 3, axis=1)
            z = _sigmoid(x_z + r_z)
            r = _sigmoid(x_r + r_r)
            h[active] = z * hp + (1.0 - z) * np.tanh(x_h + r * r_h)
        return h

    def _score_block(self, user_indices, user_items):
        R = sp.csr_matrix(user_items, dtype=np.float32)[:, self.warm_items_]
        R.sort_indices()
        warm_scores = self._user_states(self._sequences(user_indices, R)) @ self.output_kernel_
        warm_scores += self.output_bias_
        if self.wide_weights_ is not None:
            warm_scores += (sp.csr_matrix(l2_rows(R.toarray())) @ self.wide_weights_).toarray()
        if getattr(self, "trend_gain_", None) is not None:
            warm_scores += self.trend_gain_ * self._trend_at(user_indices)
        return self._all_items(warm_scores)

    def _trend_at(self, user_indices):
        """The trend of each scored user: ``trend_scores_``, or the user's own day after
        :meth:`replay_at`."""
        days = getattr(self, "_request_days", None)
        if days is None:
            return self.trend_scores_
        idx = np.asarray(user_indices)
        at = np.full(len(idx), len(self._trend_cum) - 1, np.int64)
        ok = idx < len(days)
        at[ok] = days[idx[ok]]
        return self._trend_rows(self._trend_cum, at)

    def _all_items(self, warm_scores: np.ndarray) -> np.ndarray:
        """Scores over all items from scores over the warm items: items unseen in training
        rank below every warm item of the row."""
        scores = np.empty((warm_scores.shape[0], self.n_items_), np.float32)
        scores[:] = (warm_scores.min(axis=1, keepdims=True) - 1.0) if warm_scores.size else 0.0
        scores[:, self.warm_items_] = warm_scores
        return scores

    def _unit_item_vectors(self) -> np.ndarray:
        """Unit-length output vectors of all items (zero for cold items), computed once."""
        unit = getattr(self, "_unit", None)
        if unit is None:
            V = np.zeros((self.n_items_, self.output_kernel_.shape[0]), np.float32)
            V[self.warm_items_] = self.output_kernel_.T
            norms = np.linalg.norm(V, axis=1, keepdims=True)
            unit = self._unit = V / np.where(norms > 0, norms, 1.0)
        return unit

    def _similarity_row(self, item_index):
        return similarity_row(self, self._unit_item_vectors(), item_index)

    def _explain_contributions(self, row, item_index):
        return self._explain_matrix(row, np.array([item_index]))[:, 0]

    def _explain_matrix(self, row, items):
        """``weight(u, j) * W[j, item]`` with the wide part (exact for that part), else
        the cosine of the items' output vectors."""
        items = np.asarray(items)
        if self.wide_weights_ is None:
            U = self._unit_item_vectors()
            return row.data[:, None] * (U[row.indices] @ U[items].T)
        where = np.full(self.n_items_, -1, np.int64)
        where[self.warm_items_] = np.arange(len(self.warm_items_))
        hist, rec = where[row.indices], where[items]
        out = np.zeros((len(hist), len(rec)), np.float32)
        ok_h, ok_r = hist >= 0, rec >= 0
        if ok_h.any() and ok_r.any():
            out[np.ix_(ok_h, ok_r)] = self.wide_weights_[hist[ok_h]][:, rec[ok_r]].toarray()
        return row.data[:, None] * out
