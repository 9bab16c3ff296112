"""Keras pieces of the deep engine. TensorFlow and Keras are imported inside the functions.

This module imports neither at import time: ``recommender.engine.deep`` imports it, and
``import recommender.engine`` must stay free of TensorFlow.
"""

from __future__ import annotations

import os

import numpy as np


def _configure_tensorflow(seed: int, threads: int, deterministic: bool):
    """Import TensorFlow/Keras lazily, pin threads and seeds."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras
    import tensorflow as tf

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


_ITEM_TOWER = None


def _item_tower_class(keras):
    """Define (once) and register the Keras item-tower layer; needs TensorFlow."""
    global _ITEM_TOWER
    if _ITEM_TOWER is not None:
        return _ITEM_TOWER
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

    _ITEM_TOWER = ItemTower
    return ItemTower


def _build_keras_model(keras, n_warm: int, content: np.ndarray | None, params: dict):
    layers = keras.layers
    reg = keras.regularizers.l2(params["l2"]) if params["l2"] else None
    x_in = keras.Input(shape=(n_warm,), name="history")
    h = layers.Dropout(params["dropout"], name="input_dropout")(x_in)
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
    if content is None:
        outputs = {"full": layers.Identity(name="full")(outputs)}
    else:
        tower.content.assign(content.astype(np.float32))
        outputs = {"full": layers.Identity(name="full")(outputs[0]),
                   "content": layers.Identity(name="content")(outputs[1])}
    return keras.Model(x_in, outputs, name="two_tower")
