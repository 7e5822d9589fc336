"""The two-component 1-D Gaussian mixture of `gmm_mask.gmm_threshold`, fitted on the value histogram.

A map stored in half precision holds at most a few thousand distinct values, so every step of
scikit-learn's fit (k-means++ seeding, Lloyd iterations, EM) is a weighted sum over distinct
values instead of a sum over pixels. The steps are scikit-learn's own, in its order and with its
tolerances (`GaussianMixture(n_components=2)` with `init_params="kmeans"`, `tol=1e-3`,
`reg_covar=1e-6`, `max_iter=100`; `KMeans(n_clusters=2, n_init=1)` with `tol=1e-4`, `max_iter=300`):

- the k-means++ seeding draws from the same random state over the pixels in their original order
  (scikit-learn's public `kmeans_plusplus`, on the mean-centred values as `KMeans.fit` passes them);
- Lloyd's iterations and EM run on (distinct value, pixel count) pairs; labels and
  responsibilities depend on the value only, so every weighted sum equals the per-pixel one up to
  summation order (about 1e-16 relative).

The threshold then equals the per-pixel fit's to rounding, and the mask `value > threshold` is the
same. Whatever this module cannot follow step by step (an empty cluster, a degenerate covariance)
is handed to the per-pixel reference fit.
"""

from __future__ import annotations

import math

import numpy as np

KMEANS_TOL = 1e-4
KMEANS_MAX_ITER = 300
EM_TOL = 1e-3
EM_MAX_ITER = 100
REG_COVAR = 1e-6


class NotFollowed(Exception):
    """The histogram fit would leave scikit-learn's path here; use the per-pixel fit."""


def _kmeans_labels(x: np.ndarray, u: np.ndarray, w: np.ndarray, random_state) -> np.ndarray:
    """KMeans(2, n_init=1) labels of the distinct values `u` (pixel counts `w`; `x` the pixels in order)."""
    from sklearn.cluster import kmeans_plusplus

    x_mean = x.mean()
    xc = (x - x_mean).reshape(-1, 1)
    centers, _ = kmeans_plusplus(xc, 2, random_state=random_state)
    c = centers[:, 0].copy()
    uc = u - x_mean
    tol = float(np.var(x)) * KMEANS_TOL
    labels_old = None
    labels = None
    strict = False
    for _ in range(KMEANS_MAX_ITER):
        labels = _assign(uc, c)
        new = np.empty(2)
        for k in (0, 1):
            wk = w[labels == k]
            if wk.sum() == 0:
                raise NotFollowed("empty cluster")
            new[k] = (wk * uc[labels == k]).sum() / wk.sum()
        shift = float(((new - c) ** 2).sum())
        c = new
        if labels_old is not None and np.array_equal(labels, labels_old):
            strict = True
            break
        if shift <= tol:
            break
        labels_old = labels
    if not strict:
        labels = _assign(uc, c)
    return labels


def _assign(uc: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Nearest centre by ||c||^2 - 2 x.c (the distance scikit-learn's Lloyd step compares); ties to 0."""
    d0 = c[0] * c[0] + (-2.0 * (uc * c[0]))
    d1 = c[1] * c[1] + (-2.0 * (uc * c[1]))
    return (d1 < d0).astype(np.int64)


def _parameters(u: np.ndarray, w: np.ndarray, resp: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weights (unnormalised nk), means and variances of the components, as `_estimate_gaussian_parameters`."""
    wr = resp * w[:, None]
    nk = wr.sum(axis=0) + 10 * np.finfo(np.float64).eps
    means = (wr * u[:, None]).sum(axis=0) / nk
    var = np.array([(wr[:, k] * (u - means[k]) ** 2).sum() / nk[k] for k in (0, 1)]) + REG_COVAR
    if not np.all(var > 0):
        raise NotFollowed("degenerate covariance")
    return nk, means, var


def _e_step(u: np.ndarray, w: np.ndarray, n: int, weights: np.ndarray, means: np.ndarray,
            var: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean log-likelihood over the pixels and the responsibilities of each distinct value."""
    prec = 1.0 / np.sqrt(var)
    y = u[:, None] * prec[None, :] - (means * prec)[None, :]
    log_prob = -0.5 * (math.log(2 * math.pi) + y * y) + np.log(prec)[None, :]
    weighted = log_prob + np.log(weights)[None, :]
    top = weighted.max(axis=1, keepdims=True)
    norm = np.log(np.exp(weighted - top).sum(axis=1)) + top[:, 0]
    with np.errstate(under="ignore"):
        log_resp = weighted - norm[:, None]
    return float((w * norm).sum() / n), log_resp


def histogram_threshold(values: np.ndarray, seed: int | None) -> float:
    """Mean of the two component means, fitted as `gmm_mask.gmm_threshold` is but on the value histogram.

    `values` are the finite pixel values in row-major order (the order the k-means++ draws see).
    Raises NotFollowed where the per-pixel fit must decide.
    """
    from sklearn.utils import check_random_state

    x = np.asarray(values, dtype=np.float64).ravel()
    u, counts = np.unique(x, return_counts=True)
    if u.size < 2:
        raise NotFollowed("fewer than two distinct values")
    w = counts.astype(np.float64)
    n = x.size
    labels = _kmeans_labels(x, u, w, check_random_state(seed))
    resp = np.zeros((u.size, 2))
    resp[np.arange(u.size), labels] = 1.0
    nk, means, var = _parameters(u, w, resp)
    weights = nk / n
    lower = -np.inf
    for _ in range(EM_MAX_ITER):
        prev = lower
        lower, log_resp = _e_step(u, w, n, weights, means, var)
        nk, means, var = _parameters(u, w, np.exp(log_resp))
        weights = nk / nk.sum()
        if abs(lower - prev) < EM_TOL:
            break
    return float(np.mean(means))


__all__ = ["NotFollowed", "histogram_threshold"]
