"""Surprise's SVD and SVD++ fits, compiled (numba) over arrays instead of `all_ratings()` tuples.

Surprise's Cython loops read every rating of every epoch through `trainset.all_ratings()`, a
Python generator: at course scale (5M ratings, 20 epochs) that is 100M tuples built and unpacked.
Here the ratings come as arrays (`train.inner_ratings`, the same order) and the learned arrays go
back into the `surprise` algorithm object, so its `predict` (and the export check of
`components.training.train`) reads them as if Surprise had learned them. Initialisation draws
the same numbers from the same random state, in the same order, as Surprise.

- `fit_svd`: Surprise's `SVD.sgd`, operation for operation: a unit test checks every learned
  array equal to Surprise's, bit for bit.
- `fit_svdpp_per_user`: SVD++ with the implicit term updated once per user. Surprise's
  `SVDpp.sgd` visits every rating (u, i, r) and, for each, recomputes the implicit term
  z_u = |N(u)|^-1/2 * sum_{j in N(u)} y_j and updates every y_j of N(u): the cost of an epoch is
  sum_u |R(u)| * |N(u)| * factors, quadratic in a user's history. With 25 sign-up ratings a user
  (the course world of issue 15: 5M ratings), that is 220 s for 20 epochs of 20 factors. Here
  each user's ratings are visited in the same order with z_u held fixed, the error times q_i
  summed, and the y_j of N(u) updated once after the user's last rating with that sum and the
  regularization the per-rating updates would have applied (|R(u)| times): the cost is
  sum_u (|R(u)| + |N(u)|) * factors, the usual way SVD++ is trained at scale. Everything else is
  Surprise's: the learning rates and regularization (read from the `surprise.SVDpp` object), the
  updates of b_u, b_i, p_u and q_i. For a user with a single rating and N(u) = that movie, the
  two are the same arithmetic (a unit test checks them equal); with longer histories they differ
  only in when y_j moves within a user's ratings.

    fit_svd(algo, trainset, (indptr, items, ratings))                          # surprise.SVD(...)
    fit_svdpp_per_user(algo, trainset, (indptr, items, ratings), implicit_sets)   # surprise.SVDpp(...)
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from numba import njit


def fit_svd(algo, trainset, ratings: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    """Fit `algo` (a `surprise.SVD`) on `trainset` exactly as `SVD.fit` does. `ratings`: the
    trainset's ratings as CSR arrays on Surprise's inner ids in `all_ratings()` order (indptr per
    inner user, inner items, values: `train.inner_ratings`)."""
    from surprise import AlgoBase
    from surprise.utils import get_rng

    AlgoBase.fit(algo, trainset)                  # the trainset and the global mean, as `SVD.fit`
    rng = get_rng(algo.random_state)              # the same draws, in the same order, as `SVD.sgd`
    bu, bi = np.zeros(trainset.n_users), np.zeros(trainset.n_items)
    pu = rng.normal(algo.init_mean, algo.init_std_dev, size=(trainset.n_users, algo.n_factors))
    qi = rng.normal(algo.init_mean, algo.init_std_dev, size=(trainset.n_items, algo.n_factors))
    indptr, items, values = _checked(ratings, trainset)
    users = np.repeat(np.arange(trainset.n_users, dtype=np.int64), np.diff(indptr))
    _svd_epochs(users, items, values, float(trainset.global_mean) if algo.biased else 0.0, bu, bi, pu, qi,
                int(algo.n_epochs), bool(algo.biased),
                np.array([algo.lr_bu, algo.lr_bi, algo.lr_pu, algo.lr_qi], dtype=np.float64),
                np.array([algo.reg_bu, algo.reg_bi, algo.reg_pu, algo.reg_qi], dtype=np.float64))
    algo.bu, algo.bi, algo.pu, algo.qi = bu, bi, pu, qi


def fit_svdpp_per_user(algo, trainset, ratings: tuple[np.ndarray, np.ndarray, np.ndarray],
                       implicit_sets: sp.csr_matrix) -> None:
    """Fit `algo` (a `surprise.SVDpp`) on `trainset` with the per-user SGD (module docstring).
    `ratings` as for `fit_svd`; `implicit_sets` is N(u), users x items on inner ids."""
    from surprise import AlgoBase
    from surprise.utils import get_rng

    AlgoBase.fit(algo, trainset)                  # the trainset and the global mean, as `SVDpp.fit`
    rng = get_rng(algo.random_state)              # the same draws, in the same order, as `SVDpp.sgd`
    k = algo.n_factors
    bu, bi = np.zeros(trainset.n_users), np.zeros(trainset.n_items)
    pu = rng.normal(algo.init_mean, algo.init_std_dev, size=(trainset.n_users, k))
    qi = rng.normal(algo.init_mean, algo.init_std_dev, size=(trainset.n_items, k))
    yj = rng.normal(algo.init_mean, algo.init_std_dev, size=(trainset.n_items, k))
    r_indptr, r_items, r_values = _checked(ratings, trainset)
    n_sets = implicit_sets.tocsr()
    _svdpp_epochs(r_indptr, r_items, r_values, n_sets.indptr.astype(np.int64), n_sets.indices.astype(np.int64),
                  float(trainset.global_mean), bu, bi, pu, qi, yj, int(algo.n_epochs),
                  np.array([algo.lr_bu, algo.lr_bi, algo.lr_pu, algo.lr_qi, algo.lr_yj], dtype=np.float64),
                  np.array([algo.reg_bu, algo.reg_bi, algo.reg_pu, algo.reg_qi, algo.reg_yj], dtype=np.float64))
    algo.bu, algo.bi, algo.pu, algo.qi, algo.yj = bu, bi, pu, qi, yj


def _checked(ratings, trainset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    indptr, items, values = (np.ascontiguousarray(a, dtype=t) for a, t in
                             zip(ratings, (np.int64, np.int64, np.float64), strict=True))
    if len(indptr) != trainset.n_users + 1 or indptr[-1] != trainset.n_ratings or len(items) != indptr[-1]:
        raise ValueError("the ratings arrays do not match the trainset")
    return indptr, items, values


@njit(cache=True, nogil=True)
def _svd_epochs(users, items, values, mu, bu, bi, pu, qi, n_epochs, biased, lr, reg):
    lr_bu, lr_bi, lr_pu, lr_qi = lr[0], lr[1], lr[2], lr[3]
    reg_bu, reg_bi, reg_pu, reg_qi = reg[0], reg[1], reg[2], reg[3]
    k = pu.shape[1]
    for _ in range(n_epochs):
        for t in range(len(users)):
            u, i = users[t], items[t]
            dot = 0.0
            for f in range(k):
                dot += qi[i, f] * pu[u, f]
            err = values[t] - (mu + bu[u] + bi[i] + dot)
            if biased:
                bu[u] += lr_bu * (err - reg_bu * bu[u])
                bi[i] += lr_bi * (err - reg_bi * bi[i])
            for f in range(k):
                puf = pu[u, f]
                qif = qi[i, f]
                pu[u, f] += lr_pu * (err * qif - reg_pu * puf)
                qi[i, f] += lr_qi * (err * puf - reg_qi * qif)


@njit(cache=True, nogil=True)
def _svdpp_epochs(r_indptr, r_items, r_values, n_indptr, n_items, mu, bu, bi, pu, qi, yj, n_epochs, lr, reg):
    lr_bu, lr_bi, lr_pu, lr_qi, lr_yj = lr[0], lr[1], lr[2], lr[3], lr[4]
    reg_bu, reg_bi, reg_pu, reg_qi, reg_yj = reg[0], reg[1], reg[2], reg[3], reg[4]
    k = pu.shape[1]
    z = np.zeros(k)
    g = np.zeros(k)
    for _ in range(n_epochs):
        for u in range(len(r_indptr) - 1):
            first, last = r_indptr[u], r_indptr[u + 1]
            if first == last:
                continue
            a, b = n_indptr[u], n_indptr[u + 1]
            inv_sqrt = 1.0 / np.sqrt(b - a) if b > a else 0.0
            for f in range(k):
                z[f] = 0.0
                g[f] = 0.0
            for t in range(a, b):
                j = n_items[t]
                for f in range(k):
                    z[f] += yj[j, f] * inv_sqrt
            for t in range(first, last):
                i = r_items[t]
                dot = 0.0
                for f in range(k):
                    dot += qi[i, f] * (pu[u, f] + z[f])
                err = r_values[t] - (mu + bu[u] + bi[i] + dot)
                bu[u] += lr_bu * (err - reg_bu * bu[u])
                bi[i] += lr_bi * (err - reg_bi * bi[i])
                for f in range(k):
                    puf = pu[u, f]
                    qif = qi[i, f]
                    pu[u, f] += lr_pu * (err * qif - reg_pu * puf)
                    qi[i, f] += lr_qi * (err * (puf + z[f]) - reg_qi * qif)
                    g[f] += err * qif
            shrink = (last - first) * reg_yj
            for t in range(a, b):
                j = n_items[t]
                for f in range(k):
                    yj[j, f] += lr_yj * (g[f] * inv_sqrt - shrink * yj[j, f])
