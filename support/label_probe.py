"""Which labels look wrong: each item's class probabilities from a probe that never saw it, and the items whose
given label the probe doubts most.

The probe is a multinomial logistic regression on standardized features, fitted k times (stratified folds) so that
every item is scored by a probe trained on the others: out of fold, a wrong label cannot teach the probe itself.
It is written here in NumPy and SciPy (L-BFGS) rather than taken from cleanlab, whose open-source edition is
AGPL-3.0, a licence a closed product cannot take; the few functions it needs are these.

- score: 1 - p(given label), the self-confidence ranking (README "Check your data first" says why this one);
- cut (`flagged`): as many of the highest scores as confident learning (Northcutt et al., 2021) estimates labels
  to be wrong. Each class k has a threshold t_k, the mean p(k) over the items labelled k; an item counts towards
  (given, k) for the class k it reaches its threshold with most confidently; those counts, scaled so that each
  given class keeps its size (the calibrated confident joint), sum off the diagonal to the estimate. On the
  shared photos with 5 % of labels flipped it flagged 0.94-0.98 of them, at precision 0.96-0.98 on grocery and
  cats vs dogs (README).
"""
import numpy as np
from scipy.optimize import minimize

FOLDS = 5
L2 = 1.0  # weight decay of the probe on standardized features: measured on noisy photos (README)
MAX_ITERATIONS = 300


def softmax(logits):
    logits = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)


def fit(features, labels, num_classes, l2=L2):
    """(weights (D, K), bias (K,)) minimising the mean crossentropy + l2/2 |weights|^2. Computed in float32 (3.6×
    faster than float64 here, the same ranking); L-BFGS keeps its own state in float64."""
    features = np.asarray(features, dtype=np.float32)
    n, d = features.shape
    onehot = np.eye(num_classes, dtype=np.float32)[labels]

    def loss_and_gradient(theta):
        weights = theta[:d * num_classes].reshape(d, num_classes).astype(np.float32)
        probabilities = softmax(features @ weights + theta[d * num_classes:].astype(np.float32))
        loss = -np.mean(np.log(probabilities[np.arange(n), labels] + 1e-12)) + l2 / 2 * np.sum(weights ** 2)
        error = (probabilities - onehot) / n
        gradient = np.concatenate([(features.T @ error + l2 * weights).ravel(), error.sum(axis=0)])
        return float(loss), gradient.astype(np.float64)

    start = np.zeros(d * num_classes + num_classes)
    theta = minimize(loss_and_gradient, start, jac=True, method="L-BFGS-B",
                     options={"maxiter": MAX_ITERATIONS}).x
    return theta[:d * num_classes].reshape(d, num_classes), theta[d * num_classes:]


def folds_of(labels, folds, seed):
    """Each item's fold, 0..folds-1: every class spread evenly over the folds, in a seeded order."""
    fold = np.zeros(len(labels), dtype=np.int64)
    rng = np.random.default_rng(seed)
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        fold[members] = np.arange(len(members)) % folds
    return fold


def out_of_fold(features, labels, num_classes, folds=FOLDS, seed=0, l2=L2):
    """(N, K) probabilities of each item from the probe fitted on the other folds (standardized by their own
    mean and spread)."""
    features = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    fold = folds_of(labels, folds, seed)
    probabilities = np.zeros((len(labels), num_classes))
    for k in range(folds):
        held, fitted = fold == k, fold != k
        if not held.any():
            continue
        mean, spread = features[fitted].mean(axis=0), features[fitted].std(axis=0) + 1e-6
        weights, bias = fit((features[fitted] - mean) / spread, labels[fitted], num_classes, l2)
        probabilities[held] = softmax((features[held] - mean) / spread @ weights + bias)
    return probabilities


def scores(probabilities, labels):
    """How likely each given label is wrong: 1 - p(given label), out of fold."""
    return 1.0 - probabilities[np.arange(len(labels)), labels]


def suggested(probabilities, labels):
    """The class the probe prefers over the given one: the likeliest other class."""
    others = probabilities.copy()
    others[np.arange(len(labels)), labels] = -1.0
    return others.argmax(axis=1)


def estimated_wrong(probabilities, labels):
    """How many labels are wrong, as confident learning estimates it (the calibrated confident joint's
    off-diagonal sum)."""
    num_classes = probabilities.shape[1]
    counts = np.bincount(labels, minlength=num_classes)
    thresholds = np.array([probabilities[labels == k, k].mean() if counts[k] else 1.0 for k in range(num_classes)])
    reached = probabilities >= thresholds
    confident = np.where(reached, probabilities, -1.0).argmax(axis=1)
    joint = np.zeros((num_classes, num_classes))
    np.add.at(joint, (labels[reached.any(axis=1)], confident[reached.any(axis=1)]), 1)
    rows = joint.sum(axis=1, keepdims=True)
    calibrated = np.divide(joint, rows, out=np.zeros_like(joint), where=rows > 0) * counts[:, None]
    return int(round(calibrated.sum() - np.trace(calibrated)))


def flagged(probabilities, labels, count=None):
    """True for the `count` items of highest score; by default (the cut) as many as estimated_wrong() says."""
    count = estimated_wrong(probabilities, labels) if count is None else count
    chosen = np.zeros(len(labels), dtype=bool)
    chosen[np.argsort(-scores(probabilities, labels), kind="stable")[:count]] = True
    return chosen
