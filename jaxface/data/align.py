"""5-point face alignment and crop as Deep3DFaceRecon / DiscoFaceGAN preprocess real photos.

Pipeline for a photo: BlazeFace box -> rotated 1.5x square ROI -> MediaPipe face mesh -> 5 points
(eye centres, nose tip, mouth corners) -> POS: the least-squares scaled-orthographic fit of a 3D 5-point
template to them gives scale s and translation t -> resize the image by rescale_factor / s (bicubic)
and cut a target_size square so the template's origin lands at the centre (Deep3DFaceRecon's
`align_img` / `resize_n_crop_img`, with its y-up landmark convention).

The 3D template: Deep3DFaceRecon uses BFM's `similarity_Lm3D_all.mat`, which cannot be shipped. The
default here is the same 5 points on the MediaPipe canonical face mesh (Apache-2.0), centred on the
mesh mean and in 10 cm units, the scale at which rescale_factor=102 puts a face at Deep3DFaceRecon's
224-px size (focal 1015 at distance 10). Pass `lm3d` built from BFM to reproduce their crops exactly.
"""

import functools

import numpy as np
from PIL import Image

from jaxface import programs
from jaxface.errors import DataError
from jaxface.models import detector, landmarks

# Subject's right eye, left eye, nose tip, right mouth corner, left mouth corner; x right, y up.
LM3D_CANONICAL = np.array([
    [-0.31601, 0.33195, -0.05329],
    [0.31601, 0.33195, -0.05329],
    [0.0, -0.04505, 0.33166],
    [-0.24562, -0.36662, 0.01249],
    [0.24562, -0.36662, 0.01249],
], np.float64)
ROI_SCALE = 1.5  # MediaPipe enlarges the detection box by 1.5 for the face mesh


def pos(xp, x):
  """Scaled-orthographic fit xp ~ s * R[:2] @ x + t. xp: (5, 2) image points (y up), x: (5, 3).
  Returns (t (2,), s)."""
  n = xp.shape[0]
  a = np.zeros((2 * n, 8))
  a[0::2, 0:3], a[0::2, 3] = x, 1
  a[1::2, 4:7], a[1::2, 7] = x, 1
  k = np.linalg.lstsq(a, xp.reshape(-1), rcond=None)[0]
  s = (np.linalg.norm(k[0:3]) + np.linalg.norm(k[4:7])) / 2
  return np.array([k[3], k[7]]), s


def _rescale(target_size, rescale_factor):
  """Deep3DFaceRecon's 102 at 224 px; other sizes keep the same framing (the crop is just resized)."""
  return 102.0 * target_size / 224.0 if rescale_factor is None else float(rescale_factor)


def align_with_points(image, lm5, target_size=224, rescale_factor=None, lm3d=None):
  """Aligns an (H, W, 3) uint8 image given its 5 points (image pixels, y down).

  Returns (crop (target, target, 3) uint8, the 5 points in the crop, (w0, h0, s, tx, ty)) where
  s, t are Deep3DFaceRecon's `trans_params` (to map reconstructions back onto the photo).
  """
  img = np.asarray(image)
  h0, w0 = img.shape[:2]
  lm = np.asarray(lm5, np.float64).reshape(5, 2).copy()
  lm[:, 1] = h0 - 1 - lm[:, 1]  # Deep3DFaceRecon works with y up
  t, s = pos(lm, LM3D_CANONICAL if lm3d is None else np.asarray(lm3d, np.float64))
  if not np.isfinite(s) or s < 1.0:  # < 1 px per 10 cm: points collapsed onto each other
    raise DataError("the 5 landmarks are degenerate (collinear or repeated); check the detector output")
  s = _rescale(target_size, rescale_factor) / s
  w, h = int(w0 * s), int(h0 * s)
  left = int(w / 2 - target_size / 2 + (t[0] - w0 / 2) * s)
  up = int(h / 2 - target_size / 2 + (h0 / 2 - t[1]) * s)
  pil = Image.fromarray(img[..., :3]).resize((w, h), Image.BICUBIC)
  crop = np.asarray(pil.crop((left, up, left + target_size, up + target_size)))
  lm_new = np.stack([lm[:, 0] - t[0] + w0 / 2, lm[:, 1] - t[1] + h0 / 2], 1) * s
  lm_new -= np.array([w / 2 - target_size / 2, h / 2 - target_size / 2])
  lm_new[:, 1] = target_size - 1 - lm_new[:, 1]  # back to y down in the crop
  return crop, lm_new, np.array([w0, h0, s, t[0], t[1]])


@functools.lru_cache(maxsize=1)
def _mesh():
  apply, params = landmarks.load()
  return params, programs.jit(apply)


def face_points(image, detection=None):
  """5 alignment points (image pixels) of the most confident face: BlazeFace -> face mesh."""
  img = np.asarray(image)
  if detection is None:
    dets = detector.detect(img)
    if not dets:
      raise DataError("no face found in the image; pass a photo with a visible, roughly frontal face "
                      "(or skip --align for already-aligned crops)")
    detection = dets[0]
  x0, y0, x1, y1 = detection["box"]
  eye_r, eye_l = detection["keypoints"][0], detection["keypoints"][1]
  angle = np.arctan2(eye_l[1] - eye_r[1], eye_l[0] - eye_r[0])  # roll of the eye line
  centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
  scale = ROI_SCALE * max(x1 - x0, y1 - y0) / landmarks.MESH_SIZE  # image px per crop px
  c, s = np.cos(angle) * scale, np.sin(angle) * scale
  # crop pixel (u, v) -> image (x, y): rotate by the roll, scale, centre on the box.
  m = np.array([[c, -s], [s, c]])
  off = centre - m @ np.array([landmarks.MESH_SIZE / 2, landmarks.MESH_SIZE / 2])
  pil = Image.fromarray(img[..., :3]).transform(
      (landmarks.MESH_SIZE, landmarks.MESH_SIZE), Image.AFFINE,
      (m[0, 0], m[0, 1], off[0], m[1, 0], m[1, 1], off[1]), Image.BILINEAR)
  params, run = _mesh()
  lm, _ = run(params, np.asarray(pil, np.float32)[None] / 255.0)
  p5 = np.asarray(landmarks.five_points(lm))[0].astype(np.float64)
  return p5 @ m.T + off


def align_image(image, target_size=224, rescale_factor=None, lm3d=None):
  """(H, W, 3) uint8 photo -> (target_size, target_size, 3) uint8 aligned face crop.

  rescale_factor None = 102 * target_size / 224 (Deep3DFaceRecon's framing at any size).
  Raises DataError when no face is found (data.prepare --align skips such files)."""
  img = np.asarray(image)
  if img.ndim != 3 or img.shape[2] < 3 or img.dtype != np.uint8:
    raise DataError(f"expected an (H, W, 3) uint8 RGB image, got {img.dtype} {img.shape}")
  return align_with_points(img, face_points(img), target_size, rescale_factor, lm3d)[0]
