"""Deep engine (Keras 3 on TensorFlow): a two-tower model over histories and item content.

*User tower*: the user's (optionally recency-weighted, L2-normalised, dropout-corrupted)
interaction row through a dense ``tanh`` layer, as in Mult-DAE (Liang et al. 2018).
*Item tower*: a free item embedding plus a projection of the item's content (TF-IDF
reduced by truncated SVD). Scores are dot products, trained with a multinomial (softmax)
likelihood over all warm items. A second, content-only head (item vector = content
projection alone) is trained jointly, so items nobody has interacted with still get
meaningful scores.

*Wide part* (Wide & Deep, Cheng et al. 2016): the full head's logits also get a sparse
linear item-item term ``gain * x @ W``, each item predicted from its top-K co-occurring
neighbours. ``W`` starts from a closed-form ridge regression on those neighbours (EASE,
or TemporalEASE with timestamps, restricted to them) and the towers then train jointly
with it, so they learn what the linear part misses.

TensorFlow is imported only inside :meth:`TwoTower.fit` (and when loading the Keras
file explicitly): after training the towers are exported to numpy arrays and ``W`` to a
scipy.sparse matrix, so ``recommend`` runs without TensorFlow.

Example
-------
>>> import scipy.sparse as sp
>>> from recommender.engine.deep import TwoTower
>>> X = sp.random(100, 40, density=0.1, format="csr", random_state=0)
>>> model = TwoTower(epochs=2, embedding_dim=16).fit(X)      # doctest: +SKIP
>>> model.recommend(0, X[0], n=5)                            # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Callable
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp

from recommender.engine._deep_batches import batch_maker, content_matrix, time_positions, wide_start
from recommender.engine._keras import _build_keras_model, _configure_tensorflow, _item_tower_class, validation_ndcg
from recommender.engine.base import MAX_BLOCK_CELLS, RecommenderBase, check_param

__all__ = ["TwoTower"]

KERAS_FILE = "two_tower.keras"


def _row_normalise(X: sp.csr_matrix) -> sp.csr_matrix:
    norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel())
    return sp.csr_matrix(sp.diags(1.0 / np.maximum(norms, 1e-12)) @ X, dtype=np.float32)



#: Item-item cosine rows computed together by :func:`similarity_row` (one matrix product).
SIMILARITY_BLOCK = 256


def similarity_row(model, unit: np.ndarray, item_index: int) -> np.ndarray:
    """Cosine of ``item_index`` to every item, from the unit item vectors ``unit``.

    A refresh asks for the rows of consecutive items one at a time. The rows are computed
    ``SIMILARITY_BLOCK`` items at a time with one matrix product and the last block is
    kept: a matrix-vector product per item costs as much as a whole block on a busy
    machine (BLAS threads), 5-11 ms for 3,665 items x 128 dims here.
    """
    start, block = getattr(model, "_similarity_block", None) or (None, None)
    if start is None or not (start <= item_index < start + len(block)) or block.shape[1] != len(unit):
        size = max(1, min(SIMILARITY_BLOCK, MAX_BLOCK_CELLS // max(len(unit), 1)))
        start = item_index
        block = unit[start:start + size] @ unit.T
        model._similarity_block = (start, block)
    return block[item_index - start].copy()


class TwoTower(RecommenderBase):
    """Two-tower neural recommender over interaction histories and item content.

    Parameters
    ----------
    embedding_dim : int, default 128
        Size of user and item vectors.
    hidden_dim : int, default 256
        Width of the user tower's hidden ``tanh`` layer.
    content_dim : int, default 64
        Truncated-SVD size of the TF-IDF content features.
    dropout : float, default 0.5
        Input dropout of the user tower (denoising), in [0, 1).
    l2 : float, default 1e-3
        L2 penalty on weights.
    content_loss_weight : float, default 0.5
        Weight of the content-only head's loss (teaches cold-item scoring).
    epochs : int, default 60
        Maximum epochs; early stopping usually ends sooner.
    batch_size : int, default 128
    learning_rate : float, default 1e-3
    patience : int, default 5
        Epochs without validation improvement before stopping; the weights of the best
        epoch are kept.
    validation_fraction : float, default 0.1
        Share of users held out for early stopping, in [0, 1).
    sequence_aware : bool, default True
        When ``fit`` gets ``timestamps=`` (CSR, same pattern as the interactions), train
        to predict each user's later interactions (after a random cut between 50% and
        90% of their history) from the earlier ones, instead of reconstructing the
        whole (dropout-corrupted) history.
    past_weight : float, default 0.0
        With time order, the target is the later part plus ``past_weight`` times the
        earlier part (1 = the whole history, as TemporalEASE). 0 scored best on
        validation on both benchmark datasets.
    half_life_days : float or None, default None
        With ``timestamps=``, weight each input interaction by
        ``0.5 ** (age_days / half_life_days)``, the age counted from the user's latest
        input interaction (``decay="per_user"`` of the data helper). Score with rows
        built the same way (``build_interaction_matrix(..., half_life_days=h,
        decay="per_user")``).
    item_bias : bool, default True
        Learn a per-item bias (a popularity term) in the softmax.
    monitor : {"ndcg", "loss"}, default "loss"
        What early stopping watches on the held-out users: NDCG@10 of their later items
        (their latest 20%, or a fixed random 20% without timestamps), predicted from the
        rest; or the validation loss.
    wide_neighbours : int, default 100
        Wide & Deep (Cheng et al. 2016): add a linear item-item term
        ``gain * x @ W`` to the logits of the full head. ``W`` is sparse: item ``j`` is
        predicted from its ``wide_neighbours`` most co-occurring items only (cosine of
        the 0/1 columns of the training users), never from itself. ``W`` starts from
        the closed-form ridge regression on those neighbours (EASE restricted to them,
        see ``wide_regularization``) and ``gain`` from a line search of the softmax
        loss; then the towers train jointly with it, learning what the linear part
        misses. 0 turns the wide part off. After ``fit``, ``W`` (times its gain) is a
        scipy.sparse matrix, ``wide_weights_``, so serving stays numpy-only; cold items
        have no wide weights and are scored by the towers alone.
    wide_regularization : float, default 200.0
        Ridge penalty (EASE's lambda) of the wide part's closed-form start.
    wide_trainable : bool, default False
        Also train the wide weights by gradient descent (with ``wide_l2``), instead of
        only their gain.
    wide_l2 : float, default 0.0
        L2 penalty on the wide weights when ``wide_trainable``.
    wide_max_items : int, default 50000
        Above this many warm items the wide part is switched off (``wide_weights_`` is
        None): it holds ``n_items x wide_neighbours`` weights and its closed-form start
        costs one ``wide_neighbours``-sized solve per item (about 2-15 s for 4-10k items
        at 100 neighbours on 2 cores).
    tied : bool, default False
        Read the history through the item vectors themselves (``h0 = x @ V``, then a
        residual ``tanh`` layer) instead of a separate input layer: fewer parameters,
        in the spirit of factored item similarity models.
    random_state : int, default 0
    threads : int, default 2
        TensorFlow intra/inter-op threads.
    deterministic : bool, default False
        Enable TensorFlow op determinism (slower).
    verbose : int, default 0
        Keras verbosity.
    """

    handles_cold_items = True

    def __init__(self, *, embedding_dim: int = 128, hidden_dim: int = 256,
                 content_dim: int = 64, dropout: float = 0.5, l2: float = 1e-3,
                 content_loss_weight: float = 0.5, epochs: int = 60, batch_size: int = 128,
                 learning_rate: float = 1e-3, patience: int = 5,
                 validation_fraction: float = 0.1, sequence_aware: bool = True,
                 past_weight: float = 0.0, half_life_days: float | None = None,
                 item_bias: bool = True, monitor: str = "loss",
                 wide_neighbours: int = 100, wide_regularization: float = 200.0,
                 wide_trainable: bool = False, wide_l2: float = 0.0,
                 wide_max_items: int = 50_000, tied: bool = False,
                 random_state: int = 0, threads: int = 2,
                 deterministic: bool = False, verbose: int = 0):
        self.embedding_dim = embedding_dim
        self.hidden_dim = hidden_dim
        self.content_dim = content_dim
        self.dropout = dropout
        self.l2 = l2
        self.content_loss_weight = content_loss_weight
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.sequence_aware = sequence_aware
        self.past_weight = past_weight
        self.half_life_days = half_life_days
        self.item_bias = item_bias
        self.monitor = monitor
        self.wide_neighbours = wide_neighbours
        self.wide_regularization = wide_regularization
        self.wide_trainable = wide_trainable
        self.wide_l2 = wide_l2
        self.wide_max_items = wide_max_items
        self.tied = tied
        self.random_state = random_state
        self.threads = threads
        self.deterministic = deterministic
        self.verbose = verbose

    def _validate_params(self):
        for name in ("embedding_dim", "hidden_dim", "content_dim", "epochs", "batch_size",
                     "threads"):
            check_param(name, getattr(self, name), Integral, 1)
        check_param("patience", self.patience, Integral, 0)
        check_param("wide_neighbours", self.wide_neighbours, Integral, 0)
        check_param("wide_max_items", self.wide_max_items, Integral, 1)
        check_param("wide_l2", self.wide_l2, Real, 0)
        check_param("wide_regularization", self.wide_regularization, Real, 0, low_open=True)
        check_param("wide_trainable", self.wide_trainable, bool)
        check_param("random_state", self.random_state, Integral, 0)
        check_param("verbose", self.verbose, Integral, 0)
        check_param("dropout", self.dropout, Real, 0, 1, high_open=True)
        check_param("validation_fraction", self.validation_fraction, Real, 0, 1,
                    high_open=True)
        check_param("l2", self.l2, Real, 0)
        check_param("content_loss_weight", self.content_loss_weight, Real, 0)
        check_param("learning_rate", self.learning_rate, Real, 0, low_open=True)
        check_param("deterministic", self.deterministic, bool)
        check_param("sequence_aware", self.sequence_aware, bool)
        check_param("tied", self.tied, bool)
        check_param("past_weight", self.past_weight, Real, 0)
        check_param("half_life_days", self.half_life_days, Real, 0, low_open=True,
                    allow_none=True)
        check_param("item_bias", self.item_bias, bool)
        check_param("monitor", self.monitor, options={"ndcg", "loss"})

    def fit(self, interactions, item_features=None, progress_callback: Callable | None = None,
            **kwargs) -> TwoTower:
        """Train the towers (see :meth:`RecommenderBase.fit`).

        Parameters
        ----------
        interactions : scipy.sparse.csr_matrix of shape (n_users, n_items)
        item_features : dict, list of str or matrix, optional
            Item content; without it the model is a plain denoising autoencoder and
            cannot score cold items.
        progress_callback : callable, optional
            Called as ``progress_callback(epoch, total_epochs, logs)`` after each epoch
            (``epoch`` counts from 1).

        Returns
        -------
        self
        """
        return super().fit(interactions, item_features=item_features,
                           progress_callback=progress_callback, **kwargs)

    def _fit(self, X, item_features=None, progress_callback=None, **kwargs):
        keras, tf = _configure_tensorflow(self.random_state, self.threads, self.deterministic)
        content, vec, svd = content_matrix(item_features, self.n_items_, self.content_dim,
                                           self.random_state)
        warm = np.flatnonzero(X.getnnz(axis=0) > 0)
        if len(warm) == 0:
            raise ValueError("interactions has no non-zero entries: nothing to learn from.")
        Xw = sp.csr_matrix(X[:, warm])
        Xw.sort_indices()
        timestamps = kwargs.get("timestamps")
        position = stamps = None
        if timestamps is not None and self.sequence_aware:
            position, stamps = time_positions(Xw, timestamps, warm)
        users = np.flatnonzero(np.diff(Xw.indptr) > 0)
        rng = np.random.default_rng(self.random_state)
        rng.shuffle(users)
        n_val = int(len(users) * self.validation_fraction)
        val_users, train_users = users[:n_val], users[n_val:]
        params = self.get_params()
        make_batch = batch_maker(Xw, position, stamps, half_life_days=self.half_life_days,
                                 past_weight=self.past_weight, random_state=self.random_state)
        wide = None
        if self.wide_neighbours and len(warm) <= self.wide_max_items:
            wide = wide_start(Xw, np.sort(train_users), make_batch, rng, position,
                              neighbours=self.wide_neighbours,
                              regularization=self.wide_regularization)
            self.wide_initial_gain_ = wide[1]
            if wide[0].nnz == 0:  # no two items ever co-occur: nothing to learn from
                wide = None
        model = _build_keras_model(keras, len(warm), None if content is None else
                                   content[warm], params, wide)
        has_content = content is not None
        loss = keras.losses.CategoricalCrossentropy(from_logits=True)
        losses = {"full": loss} | ({"content": loss} if has_content else {})
        weights = {"full": 1.0} | ({"content": self.content_loss_weight} if has_content else {})
        model.compile(optimizer=keras.optimizers.Adam(self.learning_rate), loss=losses,
                      loss_weights=weights)

        class Rows(keras.utils.PyDataset):
            def __init__(self, rows, batch, shuffle):
                super().__init__()
                self.rows, self.batch, self.shuffle = rows, batch, shuffle
                self.order = rows.copy()

            def __len__(self):
                return int(np.ceil(len(self.rows) / self.batch))

            def __getitem__(self, i):
                batch = self.order[i * self.batch:(i + 1) * self.batch]
                x, y, _ = make_batch(batch, rng if self.shuffle else None)
                y = y / np.maximum(y.sum(axis=1, keepdims=True), 1e-12)
                return x, ({"full": y, "content": y} if has_content else {"full": y})

            def on_epoch_end(self):
                if self.shuffle:
                    rng.shuffle(self.order)

        callbacks = []
        val = None
        monitor = "val_full_loss" if has_content else "val_loss"
        if len(val_users):
            val = Rows(val_users, self.batch_size, False)
            if self.monitor == "ndcg":
                callbacks.append(validation_ndcg(keras, model, make_batch, val_users))
                monitor = "val_ndcg"
        if progress_callback is not None:
            callbacks.append(keras.callbacks.LambdaCallback(
                on_epoch_end=lambda e, logs: progress_callback(e + 1, self.epochs, dict(logs))))
        if val is not None:
            callbacks.append(keras.callbacks.EarlyStopping(
                monitor=monitor, patience=self.patience,
                mode="max" if monitor == "val_ndcg" else "min", restore_best_weights=True))
        history = model.fit(Rows(train_users, self.batch_size, True), validation_data=val,
                            epochs=self.epochs, callbacks=callbacks, verbose=self.verbose)
        self.epochs_trained_ = len(history.history.get("loss", []))
        self.history_ = {k: [float(v) for v in vals] for k, vals in history.history.items()}
        if "val_ndcg" in self.history_:
            self.best_epoch_ = int(np.argmax(self.history_["val_ndcg"])) + 1
        self._export(model, warm, content)
        self.vectorizer_ = vec
        self.svd_ = svd
        self._keras_model = model

    def _export(self, model, warm, content):
        """Copy the trained towers into numpy arrays for TensorFlow-free serving."""
        self._unit = self._similarity_block = None  # caches of the previous fit
        tower = model.get_layer("item_tower")
        if self.tied:
            hidden, user = tower.user_hidden, tower.user_out
        else:
            hidden, user = model.get_layer("user_hidden"), model.get_layer("user_vec")
        self.hidden_kernel_, self.hidden_bias_ = (np.asarray(w, np.float32)
                                                  for w in hidden.get_weights())
        self.user_kernel_, self.user_bias_ = (np.asarray(w, np.float32)
                                              for w in user.get_weights())
        emb = np.asarray(tower.emb.numpy(), np.float32)
        bias = np.asarray(tower.bias.numpy(), np.float32)
        item_vectors = np.zeros((self.n_items_, emb.shape[1]), np.float32)
        item_bias = np.full(self.n_items_, bias.mean(), np.float32)
        content_vectors = np.zeros_like(item_vectors)
        if content is not None:
            content_vectors = (content @ tower.proj.numpy() + tower.content_bias.numpy()
                               ).astype(np.float32)
            item_vectors += content_vectors
        item_vectors[warm] += emb
        item_bias[warm] = bias
        self.item_vectors_ = item_vectors
        self.item_bias_ = item_bias
        self.content_vectors_ = content_vectors
        self.warm_items_ = warm.astype(np.int64)
        self.wide_weights_ = None
        if "wide" in [layer.name for layer in model.layers]:
            wide = model.get_layer("wide")
            values = np.asarray(wide.values.numpy(), np.float32) * np.float32(
                wide.effective_gain())
            n = len(warm)
            self.wide_weights_ = sp.csr_matrix(
                (values, np.asarray(wide.cols.numpy()), np.asarray(wide.indptr.numpy())),
                shape=(n, n), dtype=np.float32)

    def _inputs(self, user_items) -> sp.csr_matrix:
        """The model's input rows: the warm columns, L2-normalised per row."""
        return _row_normalise(sp.csr_matrix(user_items, dtype=np.float32)[:, self.warm_items_])

    def user_vectors(self, user_items: sp.csr_matrix) -> np.ndarray:
        """User-tower output (numpy, no TensorFlow) for rows over the full catalog."""
        self._check_fitted()
        return self._user_vectors(self._inputs(user_items))

    def _user_vectors(self, R: sp.csr_matrix) -> np.ndarray:
        if not self.tied:
            h = np.tanh(R @ self.hidden_kernel_ + self.hidden_bias_)
            return h @ self.user_kernel_ + self.user_bias_
        h0 = np.asarray(R @ self.item_vectors_[self.warm_items_])
        h = np.tanh(h0 @ self.hidden_kernel_ + self.hidden_bias_)
        return h0 + h @ self.user_kernel_ + self.user_bias_

    def _score_block(self, user_indices, user_items):
        R = self._inputs(user_items)
        scores = self._user_vectors(R) @ self.item_vectors_.T + self.item_bias_
        W = getattr(self, "wide_weights_", None)
        if W is not None:
            scores[:, self.warm_items_] += (R @ W).toarray()
        return scores

    def wide_scores(self, user_items: sp.csr_matrix) -> np.ndarray:
        """The wide (item-item) part of the scores alone; zeros without one."""
        self._check_fitted()
        R = self._inputs(user_items)
        out = np.zeros((R.shape[0], self.n_items_), np.float32)
        if getattr(self, "wide_weights_", None) is not None:
            out[:, self.warm_items_] = (R @ self.wide_weights_).toarray()
        return out

    def content_scores(self, user_items: sp.csr_matrix) -> np.ndarray:
        """Scores from the content-only head (what cold items are ranked by)."""
        return self.user_vectors(user_items) @ self.content_vectors_.T

    def _unit_item_vectors(self) -> np.ndarray:
        """The item vectors scaled to unit length (zero rows stay zero), computed once."""
        unit = getattr(self, "_unit", None)
        if unit is None or unit.shape != self.item_vectors_.shape:
            norms = np.linalg.norm(self.item_vectors_, axis=1, keepdims=True)
            unit = self._unit = (self.item_vectors_ / np.where(norms > 0, norms, 1.0)).astype(np.float32)
        return unit

    def _similarity_row(self, item_index):
        return similarity_row(self, self._unit_item_vectors(), item_index)

    def _explain_contributions(self, row, item_index):
        return self._explain_matrix(row, np.array([item_index]))[:, 0]

    def _explain_matrix(self, row, items):
        # cosine of the item vectors, for all history items x recommended items in one product
        U = self._unit_item_vectors()
        return row.data[:, None] * (U[row.indices] @ U[np.asarray(items)].T)

    def _save_extra(self, path):
        model = getattr(self, "_keras_model", None)
        if model is not None:
            model.save(os.path.join(path, KERAS_FILE))

    def keras_model(self, path=None):
        """The trained Keras model (loaded from ``path``/two_tower.keras if needed)."""
        if getattr(self, "_keras_model", None) is None and path is not None:
            keras, _ = _configure_tensorflow(self.random_state, self.threads, False)
            _item_tower_class(keras)
            self._keras_model = keras.saving.load_model(
                os.path.join(path, KERAS_FILE), compile=False, safe_mode=False)
        return getattr(self, "_keras_model", None)
