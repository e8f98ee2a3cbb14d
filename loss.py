"""Losses beyond Keras' own crossentropy, for sparse integer labels and softmax outputs.

Every model in models/ ends in a softmax and every reader yields integer class indices, so these losses
take labels of shape (N,) or (N, 1) and probabilities of shape (N, num_classes). They are registered
with Keras, so a `.keras` file compiled with them reloads once this module has been imported.

- LabelSmoothingCrossentropy: when labels are noisy (hand-sorted photos, QuickDraw's scribbles) or the
  model grows over-confident; Keras' sparse crossentropy has no label smoothing of its own.
- FocalLoss: when some classes are rare or many examples are easy; it down-weights what the model
  already gets right so training time goes to the hard examples.
"""
import keras
from keras import ops


def _one_hot(y_true, y_pred):
    """Sparse labels (N,) or (N, 1) -> one-hot (N, K) matching the predictions."""
    y_true = ops.reshape(ops.cast(y_true, "int32"), ops.shape(y_pred)[:-1])
    return ops.one_hot(y_true, y_pred.shape[-1], dtype=y_pred.dtype)


def _clipped_log(y_pred):
    """log of probabilities kept away from 0, so a confident mistake costs a large but finite loss."""
    eps = keras.config.epsilon()
    return ops.log(ops.clip(y_pred, eps, 1.0 - eps))


@keras.saving.register_keras_serializable(package="template")
class LabelSmoothingCrossentropy(keras.losses.Loss):
    """Crossentropy against (1 - smoothing) * one_hot + smoothing / num_classes.

    smoothing=0 is plain sparse categorical crossentropy.
    """

    def __init__(self, smoothing=0.1, name="label_smoothing_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
        self.smoothing = float(smoothing)

    def call(self, y_true, y_pred):
        target = _one_hot(y_true, y_pred)
        target = target * (1.0 - self.smoothing) + self.smoothing / y_pred.shape[-1]
        return -ops.sum(target * _clipped_log(y_pred), axis=-1)

    def get_config(self):
        return {**super().get_config(), "smoothing": self.smoothing}


@keras.saving.register_keras_serializable(package="template")
class FocalLoss(keras.losses.Loss):
    """Focal loss (Lin et al. 2017): -alpha_t * (1 - p_t) ** gamma * log(p_t), p_t = probability of the true class.

    gamma=0 and alpha=None is plain sparse categorical crossentropy. `alpha` is None, one number that scales
    every class, or one weight per class (e.g. larger for rare classes).
    """

    def __init__(self, gamma=2.0, alpha=None, name="focal_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        self.gamma = float(gamma)
        if alpha is not None:
            alpha = float(alpha) if isinstance(alpha, (int, float)) else [float(a) for a in alpha]
        self.alpha = alpha

    def call(self, y_true, y_pred):
        target = _one_hot(y_true, y_pred)
        p_t = ops.sum(target * y_pred, axis=-1)
        loss = -ops.power(1.0 - p_t, self.gamma) * ops.sum(target * _clipped_log(y_pred), axis=-1)
        if self.alpha is not None:
            alpha = ops.convert_to_tensor(self.alpha, dtype=y_pred.dtype)
            loss = loss * (ops.sum(target * alpha, axis=-1) if ops.ndim(alpha) else alpha)
        return loss

    def get_config(self):
        return {**super().get_config(), "gamma": self.gamma, "alpha": self.alpha}
