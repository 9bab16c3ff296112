"""Keras pieces of the deep engine. TensorFlow and Keras are imported inside the functions.

This module imports neither at import time: ``recommender.engine.deep`` imports it, and
``import recommender.engine`` must stay free of TensorFlow.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import sys
import tempfile

import numpy as np

# TensorFlow reads its C++ log level once, when it is imported. Level 3 keeps the
# "failed call to cuInit: ... CUDA error" line out of the worker log on machines without a
# GPU (level 2 still prints it: it is logged as an error). A site's own setting wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


#: Lines TensorFlow's C++ runtime writes to stderr while it is imported, whatever
#: TF_CPP_MIN_LOG_LEVEL says: absl prints everything before its log is initialised. These
#: are the informational ones ("I<date> ... Could not find cuda drivers on your machine,
#: GPU will not be used.", "oneDNN custom operations are on ...") and absl's banner.
_INFO_LINE = re.compile(rb"^(I\d{4} [\d:.]+ +\d+ [\w.]+:\d+\] |"
                        rb"WARNING: All log messages before absl::InitializeLog\(\) is called)")


@contextlib.contextmanager
def _without_info_lines():
    """Run the block with file descriptor 2 sent to a temporary file, then write back every
    line of it except TensorFlow's informational import lines (:data:`_INFO_LINE`): warnings,
    errors and Python tracebacks still reach stderr. Only the first import is wrapped."""
    if "tensorflow" in sys.modules:
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable stderr descriptor: nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            try:
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().splitlines(keepends=True) if not _INFO_LINE.match(line)]
            if kept:
                os.write(2, b"".join(kept))


def _configure_tensorflow(seed: int, threads: int, deterministic: bool):
    """Import TensorFlow/Keras lazily, pin threads and seeds."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    try:
        with _without_info_lines():
            import keras
            import tensorflow as tf
    except ImportError as exc:
        raise ImportError(f"The deep-learning recommender (TwoTower) needs TensorFlow, which is not installed "
                          f"({exc}). Install it with the 'deep' extra: "
                          f"pip install 'django-shop-recommender[deep]'", name=exc.name) from exc

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # already initialised in this process: keep its settings
        pass
    if deterministic:
        try:
            tf.config.experimental.enable_op_determinism()
        except (AttributeError, RuntimeError):
            pass
    keras.utils.set_random_seed(seed)
    return keras, tf


@functools.cache
def _item_tower_class(keras):
    """Define (once) and register the Keras item-tower layer (and the wide layer); needs TensorFlow."""
    import tensorflow as tf

    @keras.saving.register_keras_serializable(package="recommender")
    class ItemTower(keras.layers.Layer):
        """Item vectors = free embedding (+ projected content); returns logits."""

        def __init__(self, n_items, dim, content_dim=0, l2=0.0, hidden_dim=0, use_bias=True,
                     **kwargs):
            super().__init__(**kwargs)
            self.n_items, self.dim, self.content_dim, self.l2 = n_items, dim, content_dim, l2
            self.hidden_dim, self.use_bias = hidden_dim, use_bias
            if hidden_dim:  # tied: the user tower reads the history through the item vectors
                reg = keras.regularizers.l2(l2) if l2 else None
                self.user_hidden = keras.layers.Dense(hidden_dim, activation="tanh",
                                                      kernel_regularizer=reg, name="user_hidden")
                self.user_out = keras.layers.Dense(dim, kernel_regularizer=reg, name="user_vec")

        def build(self, input_shape):
            reg = keras.regularizers.l2(self.l2) if self.l2 else None
            self.emb = self.add_weight(shape=(self.n_items, self.dim), name="item_emb",
                                       initializer="glorot_uniform", regularizer=reg)
            self.bias = self.add_weight(shape=(self.n_items,), name="item_bias",
                                        initializer="zeros", trainable=self.use_bias)
            if self.content_dim:
                self.content = self.add_weight(shape=(self.n_items, self.content_dim),
                                               name="content", initializer="zeros",
                                               trainable=False)
                self.proj = self.add_weight(shape=(self.content_dim, self.dim),
                                            name="content_proj", initializer="glorot_uniform",
                                            regularizer=reg)
                self.content_bias = self.add_weight(shape=(self.dim,), name="content_bias",
                                                    initializer="zeros")

        def call(self, inputs):
            c = (tf.matmul(self.content, self.proj) + self.content_bias
                 if self.content_dim else None)
            items = self.emb if c is None else self.emb + c
            if self.hidden_dim:
                h0 = tf.matmul(inputs, items)
                user_vec = h0 + self.user_out(self.user_hidden(h0))
            else:
                user_vec = inputs
            full = tf.matmul(user_vec, items, transpose_b=True) + self.bias
            if c is None:
                return full
            return full, tf.matmul(user_vec, c, transpose_b=True)

        def get_config(self):
            return super().get_config() | {"n_items": self.n_items, "dim": self.dim,
                                           "content_dim": self.content_dim, "l2": self.l2,
                                           "hidden_dim": self.hidden_dim,
                                           "use_bias": self.use_bias}

    _wide_layer_class(keras)  # registered too, for loading a saved model
    return ItemTower


def apply_wide(keras, inputs, n_warm, wide, l2=0.0, trainable=False):
    """The output of a layer named ``wide`` over ``inputs``, its weights set to the sparse
    item-item matrix of ``wide = (matrix, gain)`` (from ``wide_start``)."""
    W, gain = wide
    layer = _wide_layer_class(keras)(n_warm, int(W.nnz), l2, float(gain), trainable, name="wide")
    out = layer(inputs)
    W = W.tocsr()
    W.sort_indices()
    layer.indptr.assign(W.indptr.astype(np.int64))
    layer.cols.assign(W.indices.astype(np.int64))
    layer.values.assign(W.data.astype(np.float32))
    return out


@functools.cache
def _wide_layer_class(keras):
    """Define (once) and register the Keras "wide" layer; needs TensorFlow."""
    import tensorflow as tf

    @keras.saving.register_keras_serializable(package="recommender")
    class SparseItemItem(keras.layers.Layer):
        """Wide part: ``gain * x @ W`` with ``W`` a fixed-pattern sparse matrix.

        ``W`` is stored as CSR (rows = history items): non-trainable ``indptr`` and
        ``cols``, and ``values``, set from outside (a closed-form start) and trained only
        when ``train_weights`` (with an L2 penalty ``l2``). The gain is
        ``gain * exp(10 * log_gain)``, with ``log_gain`` trained from 0 (the factor 10
        lets Adam, whose steps are about the learning rate, move it ten times faster).
        The product walks the non-zeros of ``x`` only, so a batch costs about
        ``nnz(x) x`` (neighbours per item), not ``batch x nnz(W)``.
        """

        def __init__(self, n_items, nnz, l2=0.0, gain=1.0, train_weights=False, **kwargs):
            super().__init__(**kwargs)
            self.n_items, self.nnz, self.l2 = n_items, nnz, l2
            self.gain, self.train_weights = gain, train_weights

        def build(self, input_shape):
            reg = keras.regularizers.l2(self.l2) if self.l2 and self.train_weights else None
            self.indptr = self.add_weight(shape=(self.n_items + 1,), name="indptr",
                                          dtype="int64", initializer="zeros", trainable=False)
            self.cols = self.add_weight(shape=(self.nnz,), name="cols", dtype="int64",
                                        initializer="zeros", trainable=False)
            self.values = self.add_weight(shape=(self.nnz,), name="values",
                                          initializer="zeros", regularizer=reg,
                                          trainable=self.train_weights)
            self.log_gain = self.add_weight(shape=(), name="log_gain", initializer="zeros")

        def effective_gain(self):
            return float(self.gain * np.exp(10.0 * float(self.log_gain.numpy())))

        def call(self, inputs):
            x = tf.sparse.from_dense(inputs)
            user, item = x.indices[:, 0], x.indices[:, 1]
            # positions in (cols, values) of every W entry of every history item
            pos = tf.ragged.range(tf.gather(self.indptr, item),
                                  tf.gather(self.indptr, item + 1))
            cell = pos.value_rowids()
            pos = pos.flat_values
            update = tf.gather(self.values, pos) * tf.gather(x.values, cell)
            where = tf.stack([tf.gather(user, cell), tf.gather(self.cols, pos)], axis=1)
            out = tf.scatter_nd(where, update, tf.shape(inputs, out_type="int64"))
            return out * (self.gain * tf.exp(10.0 * self.log_gain))

        def get_config(self):
            return super().get_config() | {"n_items": self.n_items, "nnz": self.nnz,
                                           "l2": self.l2, "gain": self.gain,
                                           "train_weights": self.train_weights}

    return SparseItemItem


def _build_keras_model(keras, n_warm: int, content: np.ndarray | None, params: dict,
                       wide=None):
    """The two-tower Keras model; ``wide`` = (W as CSR warm x warm, gain) adds the wide
    item-item part to the full head's logits."""
    layers = keras.layers
    reg = keras.regularizers.l2(params["l2"]) if params["l2"] else None
    x_in = keras.Input(shape=(n_warm,), name="history")
    dropped = layers.Dropout(params["dropout"], name="input_dropout")(x_in)
    h = dropped
    tied = params["tied"]
    if not tied:
        h = layers.Dense(params["hidden_dim"], activation="tanh", kernel_regularizer=reg,
                         name="user_hidden")(h)
        h = layers.Dense(params["embedding_dim"], kernel_regularizer=reg, name="user_vec")(h)
    tower = _item_tower_class(keras)(n_warm, params["embedding_dim"],
                                     0 if content is None else content.shape[1],
                                     params["l2"], params["hidden_dim"] if tied else 0,
                                     params.get("item_bias", True), name="item_tower")
    outputs = tower(h)
    full = outputs if content is None else outputs[0]
    if wide is not None:  # the wide part reads the same corrupted history
        wide_out = apply_wide(keras, dropped, n_warm, wide, params["wide_l2"], params["wide_trainable"])
        full = layers.Add(name="wide_and_deep")([full, wide_out])
    result = {"full": layers.Identity(name="full")(full)}
    if content is not None:
        tower.content.assign(content.astype(np.float32))
        result["content"] = layers.Identity(name="content")(outputs[1])
    return keras.Model(x_in, result, name="two_tower")


def ndcg_at(scores: np.ndarray, targets: np.ndarray, k: int = 10) -> float:
    """Mean NDCG@k of dense ``scores`` against boolean ``targets`` (rows with targets)."""
    k = min(k, scores.shape[1])
    top = (np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < scores.shape[1]
           else np.tile(np.arange(k), (len(scores), 1)))
    top = np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, axis=1),
                                             axis=1), axis=1)
    gains = np.take_along_axis(targets, top, axis=1) / np.log2(np.arange(2, k + 2))
    n = np.minimum(targets.sum(axis=1), k)
    ideal = np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))[np.maximum(n, 1) - 1]
    keep = n > 0
    return float((gains.sum(axis=1)[keep] / ideal[keep]).mean()) if keep.any() else 0.0


def validation_ndcg(keras, model, make_batch, users, k: int = 10, batch: int = 512):
    """Keras callback adding ``val_ndcg`` (NDCG@k of the held-out users' later items)."""

    class ValidationNDCG(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            total, count = 0.0, 0
            for start in range(0, len(users), batch):
                x, _, later = make_batch(users[start:start + batch], None)
                keep = later.any(axis=1)
                if not keep.any():
                    continue
                out = model(x[keep], training=False)
                scores = np.array(out["full"], dtype=np.float32)
                scores[x[keep] > 0] = -np.inf
                total += ndcg_at(scores, later[keep], k) * keep.sum()
                count += keep.sum()
            if logs is not None:
                logs["val_ndcg"] = total / count if count else 0.0

    return ValidationNDCG()
