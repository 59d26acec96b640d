"""5-point POS alignment: exact on synthetic projections; end to end on a real photo."""

import numpy as np
import pytest
from PIL import Image

from jaxface.data import align
from jaxface.errors import DataError


def _expected_crop_points(target=224, rescale=102.0):
  """Where the template lands in the crop: its x, y scaled by rescale_factor about the centre, y down."""
  e = align.LM3D_CANONICAL[:, :2] * rescale
  return np.stack([e[:, 0] + target / 2, target - 1 - (e[:, 1] + target / 2)], 1)


def test_pos_recovers_scale_and_translation():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(5, 3))
  th = 0.3  # a yaw: POS fits the first two rows of a rotation, scale averaged over both
  r = np.array([[np.cos(th), 0, np.sin(th)], [0, 1, 0]])
  xp = 57.0 * x @ r.T + np.array([10.0, -4.0])
  t, s = align.pos(xp, x)
  np.testing.assert_allclose(t, [10.0, -4.0], atol=1e-9)
  np.testing.assert_allclose(s, 57.0, rtol=1e-9)


def test_align_synthetic_points_and_pixels():
  h0, w0, s_true = 300, 400, 180.0
  t_up = np.array([230.0, 140.0])  # template origin in y-up image coordinates
  xp_up = s_true * align.LM3D_CANONICAL[:, :2] + t_up
  lm5 = np.stack([xp_up[:, 0], h0 - 1 - xp_up[:, 1]], 1)  # y down, as a detector reports
  img = np.zeros((h0, w0, 3), np.uint8)
  nose = np.round(lm5[2]).astype(int)
  img[nose[1] - 3:nose[1] + 4, nose[0] - 3:nose[0] + 4] = 255  # a bright square on the nose tip
  crop, lm_new, params = align.align_with_points(img, lm5)
  assert crop.shape == (224, 224, 3)
  np.testing.assert_allclose(params[2], 102.0 / s_true, rtol=1e-9)
  np.testing.assert_allclose(lm_new, _expected_crop_points(), atol=1.0)  # int truncation of the resize
  # The marked pixel block is where the nose tip point says it is.
  ys, xs = np.nonzero(crop[..., 0] > 128)
  assert abs(xs.mean() - lm_new[2, 0]) < 1.0 and abs(ys.mean() - lm_new[2, 1]) < 1.0


def test_align_degenerate_points():
  with pytest.raises(DataError, match="degenerate"):
    align.align_with_points(np.zeros((50, 50, 3), np.uint8), np.zeros((5, 2)))


def test_align_real_photo_end_to_end():
  """Astronaut photo -> aligned crop. Detecting again on the crop finds the points where the alignment
  says it moved them (crop geometry), and the face sits on the template (up to this face's own shape:
  a smile widens the mouth, POS does not undo roll)."""
  from skimage import data as skimage_data  # noqa: PLC0415
  img = skimage_data.astronaut()
  crop = align.align_image(img)
  assert crop.shape == (224, 224, 3) and crop.dtype == np.uint8
  _, lm_new, _ = align.align_with_points(img, align.face_points(img))
  again = align.face_points(crop)
  assert np.linalg.norm(again - lm_new, axis=1).max() < 5.0  # detector/mesh jitter between framings
  assert np.linalg.norm(lm_new - _expected_crop_points(), axis=1)[:3].max() < 10.0  # eyes, nose
  big = align.align_image(img, 256)  # data.prepare passes its resolution: same framing, more pixels
  assert big.shape == (256, 256, 3)
  small = np.asarray(Image.fromarray(big).resize((224, 224), Image.BICUBIC), np.float32)
  assert np.abs(small - crop.astype(np.float32)).mean() < 6.0  # (a 3-px shift scores ~15)
  with pytest.raises(DataError, match="no face"):
    align.align_image(img[300:, 300:])
  with pytest.raises(DataError, match="RGB"):
    align.align_image(img[..., 0])
