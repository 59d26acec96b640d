"""R-Net and parser metrics (jaxface/eval/recon.py, jaxface/eval/segmentation.py) on known inputs."""

import numpy as np
import pytest

from jaxface.eval import recon, segmentation


def test_angle_errors_wrap_and_convert_to_degrees():
  pred = np.deg2rad([[179.0, 10.0, -5.0]])
  true = np.deg2rad([[-179.0, 12.5, -5.0]])
  np.testing.assert_allclose(recon.angle_errors_deg(pred, true), [[2.0, 2.5, 0.0]], atol=1e-9)


def test_landmark_error_percent_of_width():
  true = np.zeros((2, 68, 2))
  pred = true.copy()
  pred[0, :, 0] = 0.64  # every point 0.64 px off at width 64 -> 1%
  pred[1, :34, 1] = 1.28  # half the points 2% off -> 1% on average
  np.testing.assert_allclose(recon.landmark_error_pct(pred, true, 64), [1.0, 1.0], rtol=1e-12)


def test_r2_known_cases_and_variance_weighting():
  g = np.random.default_rng(0)
  true = g.normal(size=(200, 3)) * [1.0, 2.0, 0.5]
  assert recon.r2(true, true)[0] == 1.0
  weighted, per_dim = recon.r2(np.broadcast_to(true.mean(0), true.shape), true)
  np.testing.assert_allclose(weighted, 0.0, atol=1e-12)
  np.testing.assert_allclose(per_dim, 0.0, atol=1e-12)
  noisy = true + g.normal(size=true.shape) * [0.5, 0.5, 0.5]
  weighted, per_dim = recon.r2(noisy, true)
  sse, sst = ((noisy - true) ** 2).sum(0), ((true - true.mean(0)) ** 2).sum(0)
  np.testing.assert_allclose(per_dim, 1 - sse / sst, rtol=1e-12)
  np.testing.assert_allclose(weighted, 1 - sse.sum() / sst.sum(), rtol=1e-12)
  assert per_dim[1] > weighted > per_dim[2]  # the wide dimension counts most
  # A dimension that never varies has no R² and does not enter the weighted score.
  true2 = np.concatenate([true, np.ones((200, 1))], 1)
  w2, d2 = recon.r2(np.concatenate([noisy, np.zeros((200, 1))], 1), true2)
  assert np.isnan(d2[3])
  np.testing.assert_allclose(w2, weighted, rtol=1e-12)


def test_recon_metrics_medians_and_pass_flags():
  n = 101
  g = np.random.default_rng(1)
  true = {"angle": g.uniform(-0.5, 0.5, (n, 3)), "exp": g.uniform(0, 1, (n, 20)), "gamma": g.normal(size=(n, 27))}
  pred = {k: v.copy() for k, v in true.items()}
  pred["angle"][:, 1] += np.deg2rad(np.linspace(0, 3.0, n))  # yaw errors 0..3 deg -> median 1.5
  pred["angle"][:, 0] += np.deg2rad(np.linspace(0, 5.0, n))  # pitch median 2.5 -> fails
  lm = g.uniform(0, 64, (n, 68, 2))
  out = recon.recon_metrics(pred, true, lm + [0.64, 0.0], lm, 64)
  np.testing.assert_allclose(out["yaw_deg"], 1.5, rtol=1e-9)
  np.testing.assert_allclose(out["pitch_deg"], 2.5, rtol=1e-9)
  np.testing.assert_allclose(out["landmark_pct"], 1.0, rtol=1e-9)
  assert out["exp_r2"] == 1.0 and out["gamma_r2"] == 1.0
  assert out["pass"] == {"yaw_deg": True, "pitch_deg": False, "roll_deg": True, "landmark_pct": True,
                         "exp_r2": True, "gamma_r2": True}


def test_confusion_matrix_matches_a_loop():
  g = np.random.default_rng(2)
  pred, true = g.integers(0, 5, (3, 8, 8)), g.integers(0, 5, (3, 8, 8))
  ref = np.zeros((5, 5), np.int64)
  for t, p in zip(true.ravel(), pred.ravel()):
    ref[t, p] += 1
  np.testing.assert_array_equal(segmentation.confusion_matrix(pred, true, 5), ref)
  with pytest.raises(ValueError):
    segmentation.confusion_matrix(pred, true, 4)


def test_iou_and_miou_on_a_known_example():
  true = np.array([[0, 0, 1, 1], [0, 0, 1, 1]])
  pred = np.array([[0, 0, 0, 1], [0, 0, 1, 1]])  # one class-1 pixel called 0
  conf = segmentation.confusion_matrix(pred, true, 4)  # classes 2, 3 absent from both
  iou = segmentation.iou_per_class(conf)
  np.testing.assert_allclose(iou[:2], [4 / 5, 3 / 4])
  assert np.isnan(iou[2:]).all()
  np.testing.assert_allclose(segmentation.mean_iou(conf), (0.8 + 0.75) / 2)
  assert segmentation.mean_iou(segmentation.confusion_matrix(true, true, 4)) == 1.0
  # A class predicted but never true counts (IoU 0).
  pred2 = pred.copy()
  pred2[0, 0] = 3
  np.testing.assert_allclose(segmentation.iou_per_class(segmentation.confusion_matrix(pred2, true, 4))[3], 0.0)
