"""eval.disco's identity summary (eval/disco_references.identity_scores) against hand computations."""

import numpy as np
import pytest

from jaxface.eval.disco_references import identity_scores


def _unit(*rows):
  x = np.asarray(rows, np.float64)
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_identity_scores_by_hand():
  base = _unit([1, 0], [0, 1], [1, 1])
  changed = {"pose": base, "expression": _unit([1, 1], [0, 1], [1, 1]), "light": base}
  out = identity_scores(base, changed)
  assert out["pose"] == pytest.approx(1.0) and out["light"] == pytest.approx(1.0)
  assert out["expression"] == pytest.approx((np.sqrt(0.5) + 1 + 1) / 3)
  assert out["mean_same_identity"] == pytest.approx((2 + out["expression"]) / 3)
  # Different identities: row i against row i-1 (roll by one): (1,0)·(1,1)/√2, (0,1)·(1,0), (1,1)/√2·(0,1).
  assert out["different_identity"] == pytest.approx((np.sqrt(0.5) + 0 + np.sqrt(0.5)) / 3)
  # 9 same-identity scores (8 of them 1, one √0.5) against 3 different ones (√0.5, 0, √0.5): every 1 beats all
  # three; √0.5 beats 0 and ties twice -> (8 * 3 + 1 + 2 * 0.5) / 27.
  assert out["verification_auc"] == pytest.approx((24 + 1 + 1) / 27)


def test_identity_scores_of_a_blind_net():
  """A net that embeds everything alike scores same- and different-identity pairs alike: AUC 0.5, however high
  the same-identity cosine."""
  base = _unit(*[[1, 0]] * 4)
  out = identity_scores(base, {"pose": base, "expression": base, "light": base})
  assert out["mean_same_identity"] == pytest.approx(1.0) and out["verification_auc"] == 0.5
