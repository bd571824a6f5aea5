"""In-process recommenders over the simulator's ground truth: the yardsticks for real models.

The oracle knows every user's hidden taste and what they have already seen: no model can earn
more watches. Popularity is what the service showed before any model (and what a model falls
back to for unknown users); random is the floor. All answer like an endpoint would:
`user_id -> Answer(ids best first, 200, response ms)`.
"""

from __future__ import annotations

import random

import numpy as np

from simulator.population import SEEN_WEIGHT
from simulator.traffic import Answer

K = 20


class RecommendersMixin:
    """Recommenders of a `StreamingService` (needs `catalogue`, `population`, `seen`, `seed`)."""

    def _unseen_mask(self, user_id: int) -> np.ndarray:
        mask = np.ones(len(self.catalogue), dtype=bool)
        for m, weight in self.seen.get(user_id, {}).items():
            if weight <= SEEN_WEIGHT:
                mask[m] = False
        return mask

    def popularity_list(self, user_id: int, k: int = K) -> list[str]:
        """The best-known movies the user has not seen yet, best known first."""
        mask = self._unseen_mask(user_id)
        order = [m for m in self.catalogue.popularity_order if mask[m]][:k]
        return [self.catalogue.slugs[m] for m in order]

    def oracle_list(self, user_id: int, k: int = K) -> list[str]:
        """The movies the user truly likes most among those not seen yet."""
        scores = self.population.affinity(self.catalogue, user_id)
        scores = np.where(self._unseen_mask(user_id), scores, -np.inf)
        top = np.argsort(-scores, kind="stable")[:k]
        return [self.catalogue.slugs[m] for m in top if np.isfinite(scores[m])]

    def oracle(self, k: int = K):
        """A recommender that knows the hidden tastes: the ceiling a model can approach."""
        return lambda user_id: Answer(self.oracle_list(user_id, k), 200, 1)

    def popularity_recommender(self, k: int = K):
        """The same list for everyone (minus what they have seen): the baseline a model must beat."""
        return lambda user_id: Answer(self.popularity_list(user_id, k), 200, 1)

    def random_recommender(self, k: int = K, seed: int = 0):
        """k movies drawn uniformly: the floor."""
        rnd = random.Random(f"movierec-random-{self.seed}-{seed}")
        n = len(self.catalogue)
        return lambda user_id: Answer([self.catalogue.slugs[m] for m in rnd.sample(range(n), min(k, n))], 200, 1)
