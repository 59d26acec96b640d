"""BlazeFace (MediaPipe short-range face detector, 128x128) in JAX + host-side box decoding.

The network runs through the same TFLite graph interpreter as the face mesh
(`jaxface.models.landmarks.run_graph`); decoding follows MediaPipe's SSD anchor / tensors-to-detections
setup for this model: 896 anchors from 16x16 (stride 8, 2 anchors) and 8x8 (stride 16, 6 anchors)
grids, fixed unit anchor size, offsets and sizes in input pixels (scale 128), sigmoid scores, and
weighted non-maximum suppression (IoU 0.3). Each detection has 6 keypoints: the subject's right eye,
left eye, nose tip, mouth centre, right and left ear tragion.
"""

import functools

import jax.numpy as jnp
import numpy as np
from PIL import Image

from jaxface import assets, programs
from jaxface.errors import DataError
from jaxface.models import landmarks

SIZE = 128
STRIDES = ((8, 2), (16, 6))  # (stride, anchors per cell)
SCORE_THRESHOLD = 0.5
IOU_THRESHOLD = 0.3


def anchors():
  """(896, 2) anchor centres in [0, 1], in the order the network's outputs use."""
  out = []
  for stride, per_cell in STRIDES:
    n = SIZE // stride
    ys, xs = np.mgrid[0:n, 0:n]
    c = np.stack([(xs + 0.5) / n, (ys + 0.5) / n], -1).reshape(-1, 1, 2)
    out.append(np.repeat(c, per_cell, 1).reshape(-1, 2))
  return np.concatenate(out).astype(np.float32)


def decode(regressors, scores):
  """Raw outputs (896, 16), (896, 1) of one image -> boxes (896, 4: x0 y0 x1 y1), keypoints (896, 6, 2),
  scores (896,), all in [0, 1] of the 128 input."""
  a = anchors()
  r = np.asarray(regressors, np.float64) / SIZE
  c = r[:, :2] + a
  wh = r[:, 2:4]
  boxes = np.concatenate([c - wh / 2, c + wh / 2], 1)
  kps = r[:, 4:16].reshape(-1, 6, 2) + a[:, None]
  s = 1.0 / (1.0 + np.exp(-np.clip(np.asarray(scores, np.float64).reshape(-1), -100, 100)))
  return boxes, kps, s


def _iou(box, boxes):
  lo = np.maximum(box[:2], boxes[:, :2])
  hi = np.minimum(box[2:], boxes[:, 2:])
  inter = np.prod(np.clip(hi - lo, 0, None), 1)
  area = lambda b: np.prod(np.clip(b[..., 2:] - b[..., :2], 0, None), -1)
  return inter / np.maximum(area(box) + area(boxes) - inter, 1e-12)


def weighted_nms(boxes, kps, scores, threshold=SCORE_THRESHOLD, iou=IOU_THRESHOLD):
  """MediaPipe's weighted NMS: each kept detection is the score-weighted mean of its overlapping group."""
  order = [i for i in np.argsort(-scores) if scores[i] >= threshold]
  dets = []
  while order:
    ov = _iou(boxes[order[0]], boxes[order])
    group = [order[k] for k in np.nonzero(ov > iou)[0]]
    w = scores[group][:, None]
    dets.append({"box": (boxes[group] * w).sum(0) / w.sum(), "keypoints": (kps[group] * w[:, :, None]).sum(0)
                 / w.sum(), "score": float(scores[order[0]])})
    order = [i for i in order if i not in group]
  return dets


@functools.lru_cache(maxsize=1)
def _model():
  params, graph = landmarks.split(assets.load_params("blazeface"))
  return params, programs.jit(lambda p, x: landmarks.run_graph(graph, p, x))


def detect(image):
  """Faces in an (H, W, 3) uint8 RGB image: list of {'box' (4,), 'keypoints' (6, 2), 'score'} in image
  pixels, best first. The image is letterboxed to a square (as MediaPipe does) before resizing to 128."""
  img = np.asarray(image)
  if img.ndim != 3 or img.shape[2] < 3 or img.dtype != np.uint8:
    raise DataError(f"detect wants an (H, W, 3) uint8 RGB image, got {img.dtype} {img.shape}")
  h, w = img.shape[:2]
  side = max(h, w)
  pad_y, pad_x = (side - h) // 2, (side - w) // 2
  square = np.zeros((side, side, 3), np.uint8)
  square[pad_y:pad_y + h, pad_x:pad_x + w] = img[..., :3]
  x = np.asarray(Image.fromarray(square).resize((SIZE, SIZE), Image.BILINEAR), np.float32) / 127.5 - 1.0
  params, run = _model()
  reg, cls = run(params, jnp.asarray(x[None]))
  boxes, kps, scores = decode(np.asarray(reg)[0], np.asarray(cls)[0])
  dets = weighted_nms(boxes, kps, scores)
  offset = np.array([pad_x, pad_y], np.float64)
  for d in dets:
    d["box"] = d["box"] * side - np.tile(offset, 2)
    d["keypoints"] = d["keypoints"] * side - offset
  return dets
