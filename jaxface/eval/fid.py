"""Fréchet Inception Distance between two feature sets (Inception pool3 features: jaxface.models.inception)."""

import numpy as np


def frechet_distance(a, b):
  """FID between feature sets [N, D] (float64 moments, scipy's matrix square root)."""
  import scipy.linalg
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  mu1, mu2 = a.mean(0), b.mean(0)
  s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
  covmean = np.real(scipy.linalg.sqrtm(s1 @ s2))  # tiny imaginary parts are numerical noise
  return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))
