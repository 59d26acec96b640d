"""MediaPipe face mesh in JAX vs the TFLite runtime (LiteRT) on real face crops."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxface import assets
from jaxface.models import landmarks


def _crops(size):
  from skimage import data as skimage_data  # noqa: PLC0415
  from skimage.transform import resize  # noqa: PLC0415
  img = skimage_data.astronaut()
  boxes = [(40, 220, 130, 310), (30, 230, 120, 320), (60, 200, 150, 290)]  # around the astronaut's face
  crops = [resize(img[a:b, c:d], (size, size), anti_aliasing=True) for a, b, c, d in boxes]
  crops.append(resize(img[300:480, 300:480], (size, size), anti_aliasing=True))  # no face
  return np.stack(crops).astype(np.float32)


def _litert(path, x):
  from ai_edge_litert import interpreter as litert  # noqa: PLC0415  (test requirement)
  it = litert.Interpreter(model_path=path)
  it.allocate_tensors()
  outs = []
  for xi in x:
    it.set_tensor(it.get_input_details()[0]["index"], xi[None])
    it.invoke()
    outs.append([it.get_tensor(o["index"]).copy() for o in it.get_output_details()])
  return [np.concatenate([o[k] for o in outs]) for k in range(len(outs[0]))]


def test_face_mesh_matches_litert():
  x = _crops(landmarks.MESH_SIZE)
  ref_lm, ref_flag = _litert(assets.fetch("face_landmark"), x)
  params, graph = landmarks.split(assets.load_params("face_landmark"))
  for fn in (landmarks.face_mesh, jax.jit(landmarks.face_mesh, static_argnums=1)):
    lm, flag = fn(params, graph, x) if fn is landmarks.face_mesh else fn(params, _Hashable(graph), x)
    lm, flag = np.asarray(lm), np.asarray(flag)
    ref = ref_lm.reshape(lm.shape)
    assert np.abs(lm - ref).max() <= 1e-5 * np.abs(ref).max()
    assert np.abs(flag - ref_flag.reshape(-1)).max() <= 1e-5 * np.abs(ref_flag).max()
  # Real faces score as faces, the background crop does not.
  assert (flag[:3] > 0).all() and flag[3] < 0
  # Plausible geometry: subject's right eye left of the left eye, mouth below the nose, in the crop.
  p5 = np.asarray(landmarks.five_points(lm))[0]
  assert p5[0, 0] < p5[1, 0] and p5[3, 1] > p5[2, 1] and (p5 > 0).all() and (p5 < 192).all()


class _Hashable(dict):
  """jit static args must be hashable; the graph is a constant for the lifetime of the model."""

  def __hash__(self):
    return id(self)


def test_face_mesh_is_differentiable():
  """float32 input gradient (what a landmark loss uses) vs a float64 central difference.

  The net is piecewise linear (PReLU, max-pool), so the difference step must be tiny (1e-7, hence
  float64) to stay on one linear piece; the remaining gap (~1e-3) comes from ties at kinks.
  """
  x = _crops(landmarks.MESH_SIZE)[:1]
  params, graph = landmarks.split(assets.load_params("face_landmark"))
  loss = lambda p, im, dt: jnp.sum(landmarks.run_graph(graph, p, im, dtype=dt)[0].reshape(-1, 468, 3)[..., :2])
  g = np.asarray(jax.jit(jax.grad(lambda im: loss(params, im, jnp.float32)))(x))
  assert np.isfinite(g).all() and np.abs(g).max() > 0
  yy, xx = np.mgrid[0:192, 0:192] / 192.0
  with jax.enable_x64(True):
    p64 = jax.tree.map(lambda a: jnp.asarray(np.asarray(a), jnp.float64), params)
    f = jax.jit(lambda im: loss(p64, im, jnp.float64))
    for d in (np.stack([xx, yy, xx * yy], -1)[None], np.random.default_rng(0).normal(size=x.shape)):
      eps = 1e-7
      fd = (float(f(x.astype(np.float64) + eps * d)) - float(f(x.astype(np.float64) - eps * d))) / (2 * eps)
      assert abs(fd - float((g * d).sum())) <= 5e-3 * abs(fd)


def test_blazeface_matches_litert():
  x = _crops(128) * 2 - 1  # detectors take [-1, 1]
  ref = _litert(assets.fetch("blazeface"), x)
  params, graph = landmarks.split(assets.load_params("blazeface"))
  out = jax.jit(lambda p, x: landmarks.run_graph(graph, p, x))(params, x)
  for o, r in zip(out, ref):
    assert np.abs(np.asarray(o) - r).max() <= 1e-5 * np.abs(r).max()


_DEFAULT_FLAGS_SCRIPT = """
import sys, numpy as np
from jaxface import assets
from jaxface import programs
from jaxface.models import landmarks
from ai_edge_litert import interpreter as litert
x = np.load(sys.argv[1])
it = litert.Interpreter(model_path=assets.fetch("blazeface")); it.allocate_tensors()
it.set_tensor(it.get_input_details()[0]["index"], x); it.invoke()
ref = [it.get_tensor(o["index"]) for o in it.get_output_details()]
params, graph = landmarks.split(assets.load_params("blazeface"))
out = programs.jit(lambda p, x: landmarks.run_graph(graph, p, x))(params, x)
print(max(float(np.abs(np.asarray(o) - r).max() / np.abs(r).max()) for o, r in zip(out, ref)))
"""


def test_blazeface_jit_with_default_xla_flags(tmp_path):
  """Users do not set conftest's XLA flag: `programs.jit` must be exact without it (plain jax.jit of
  this graph is not on XLA:CPU in jax 0.10)."""
  import os  # noqa: PLC0415
  import subprocess  # noqa: PLC0415
  import sys  # noqa: PLC0415
  np.save(tmp_path / "x.npy", _crops(128)[:1] * 2 - 1)
  env = dict(os.environ)
  env["XLA_FLAGS"] = " ".join(f for f in env.get("XLA_FLAGS", "").split() if "ynn_fusion" not in f)
  env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
                                       env.get("PYTHONPATH", "")])
  proc = subprocess.run([sys.executable, "-c", _DEFAULT_FLAGS_SCRIPT, str(tmp_path / "x.npy")], env=env,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert float(proc.stdout.strip().splitlines()[-1]) <= 1e-5
