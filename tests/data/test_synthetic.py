"""The synthetic face world: determinism, ground truth vs jaxface.render, landmarks, source, CLI."""

import hashlib
import json
import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from jaxface.data import synthetic as syn
from jaxface.data import synthetic_factors as sf
from jaxface.data import synthetic_render as sr
from jaxface.data import synthetic_world as sw
from jaxface.errors import ConfigError

CFG = sf.WorldConfig()
IDX = [0, 1, 2, 3]


@pytest.fixture(scope="module")
def r64():
  return syn.render_items(IDX, 64, CFG, batch_size=4)


@pytest.fixture(scope="module")
def r32():
  return syn.render_items(IDX, 32, CFG, batch_size=4)


def _render(factors, resolution):
  """The jitted renderer render_items uses (same compiled program for a batch of 4)."""
  f = {k: np.asarray(factors[k]) for k in syn.RENDER_KEYS}
  return {k: np.asarray(v) for k, v in syn._jitted(resolution, CFG)(f).items()}


def _digest(items):
  h = hashlib.sha256()
  for f in items:
    for k in sorted(f):
      h.update(k.encode())
      h.update(np.ascontiguousarray(f[k]).tobytes())
  return h.hexdigest()


_CHILD = """
import hashlib, json, sys, numpy as np
sys.path.insert(0, {root!r})
from jaxface.data import synthetic as syn
out = syn.render_items({idx}, 32, batch_size=4)
fs = [syn.sample_factors(i) for i in {idx}]
h = hashlib.sha256()
for f in fs:
  for k in sorted(f):
    h.update(k.encode()); h.update(np.ascontiguousarray(f[k]).tobytes())
print(json.dumps({{"factors": h.hexdigest(), "image": hashlib.sha256(syn.to_uint8(out["image"]).tobytes()).hexdigest()}}))
"""


def test_determinism_across_processes(r32):
  root = os.path.join(os.path.dirname(__file__), "..", "..")
  env = dict(os.environ)
  res = subprocess.run([sys.executable, "-c", _CHILD.format(root=os.path.abspath(root), idx=IDX)],
                       capture_output=True, text=True, env=env, timeout=300)
  assert res.returncode == 0, res.stderr[-2000:]
  child = json.loads(res.stdout.strip().splitlines()[-1])
  assert child["factors"] == _digest([syn.sample_factors(i) for i in IDX])
  assert child["image"] == hashlib.sha256(syn.to_uint8(r32["image"]).tobytes()).hexdigest()
  # Same index, same factors, whatever else was sampled before; different index, different sample.
  a = syn.sample_factors(5)
  [syn.sample_factors(i) for i in range(20)]
  assert _digest([a]) == _digest([syn.sample_factors(5)])
  assert _digest([a]) != _digest([syn.sample_factors(6)])
  assert _digest([a]) != _digest([syn.sample_factors(5, sf.WorldConfig(seed=1))])


def test_same_factors_across_resolutions(r32, r64):
  # Landmarks scale exactly with the resolution; label maps agree after 2x downsampling.
  np.testing.assert_allclose(r64["landmarks68"], 2 * r32["landmarks68"], rtol=1e-5, atol=1e-3)
  np.testing.assert_allclose(r64["landmarks468"], 2 * r32["landmarks468"], rtol=1e-5, atol=1e-3)
  agree = (r64["seg"][:, ::2, ::2] == r32["seg"]).mean()
  assert agree > 0.85, agree
  mean_diff = np.abs(r64["image"].reshape(4, 32, 2, 32, 2, 3).mean((2, 4)) - r32["image"]).mean()
  assert mean_diff < 0.06, mean_diff


def test_true_coefficients_reproduce_face_region_and_landmarks(r64):
  import jax
  from jaxface.render import mp468_bases, render
  fm = mp468_bases.build_face_model(level=CFG.level)
  cam = sr.camera(CFG.focal)
  fs = sf.stack([syn.sample_factors(i) for i in IDX])
  coeffs = {k: jnp.asarray(fs[k]) for k in ("id", "exp", "tex", "angle", "gamma", "trans")}
  outs = jax.jit(jax.vmap(lambda c: render.render(fm, c, cam, 64, antialias=False)))(coeffs)
  for j, i in enumerate(IDX):
    out = {k: v[j] for k, v in outs.items()}
    occluded = np.isin(r64["seg"][j], [sw.C["hair"], sw.C["glasses"]])
    ours = r64["face_mask"][j] & ~occluded
    theirs = (np.asarray(out["tri_id"]) >= 0) & ~occluded
    iou = (ours & theirs).sum() / max((ours | theirs).sum(), 1)
    assert ours.sum() > 100 and iou >= 0.95, (i, iou)
    np.testing.assert_allclose(np.asarray(out["landmarks"]), r64["landmarks68"][j], atol=1e-3)


def _label_near(seg, xy, labels, radius=1):
  x, y = int(np.floor(xy[0])), int(np.floor(xy[1]))
  win = seg[max(y - radius, 0):y + radius + 1, max(x - radius, 0):x + radius + 1]
  return np.isin(win, labels).any()


def test_landmarks_fall_on_their_features(r64):
  # A frontal, neutral, glasses-free render of a few identities (64², the fixture's compiled program).
  fs = []
  for i in range(40):
    f = syn.sample_factors(i)
    if f["glasses"] == 0 and f["hair_style"] != 5:
      f["angle"][:] = 0
      f["exp"][:] = 0
      fs.append(f)
    if len(fs) == 4:
      break
  out = _render(sf.stack(fs), 64)
  seg, lm = out["seg"], out["landmarks68"]
  C = sw.C
  checks = [(range(36, 42), [C["r_eye"]]), (range(42, 48), [C["l_eye"]]),
            (range(48, 60), [C["u_lip"], C["l_lip"], C["mouth"]]), (range(60, 68), [C["u_lip"], C["l_lip"], C["mouth"]]),
            ([30, 31, 33, 35], [C["l_nose"], C["r_nose"]]), (range(17, 22), [C["r_brow"]]), (range(22, 27), [C["l_brow"]])]
  for b in range(len(fs)):
    for points, labels in checks:
      hits = [_label_near(seg[b], lm[b, p], labels) for p in points]
      assert np.mean(hits) >= 0.8, (b, list(points), hits)
    present = set(np.unique(seg[b]).tolist())
    assert {C["skin"], C["r_eye"], C["l_eye"], C["u_lip"], C["l_lip"], C["hair"], C["background"]} <= present


def test_factor_distributions():
  fs = [syn.sample_factors(i) for i in range(1500)]
  ang = np.rad2deg(np.stack([f["angle"] for f in fs]))
  assert np.abs(ang[:, 1]).max() <= 45 + 1e-4 and np.abs(ang[:, 0]).max() <= 20 + 1e-4
  assert np.abs(ang[:, 2]).max() <= 10 + 1e-4 and np.abs(ang[:, 1]).max() > 40
  exp = np.stack([f["exp"] for f in fs])
  assert exp.min() >= 0 and (exp == 0).mean() > 0.8  # sparse, non-negative
  g = np.array([sf.identity_factors(k)["gender"] for k in range(400)])
  assert (np.abs(g) < 0.3).mean() < 0.05 and 0.35 < (g > 0).mean() < 0.65  # bimodal
  glasses = np.mean([sf.identity_factors(k)["glasses"] > 0 for k in range(400)])
  assert 0.13 < glasses < 0.27
  light = np.stack([f["gamma"] for f in fs]).reshape(-1, 3, 9)[:, :, 1:4]
  mag = np.linalg.norm(light.mean(1), axis=-1)
  assert np.percentile(mag, 99) > 2.5 * np.median(mag)  # heavy-tailed directional light
  ids = [f["identity"] for f in fs]
  assert max(ids) < CFG.num_identities and len(set(ids)) > 1000
  same = [f for f in fs if f["identity"] == fs[0]["identity"]] + [sf.sample_factors(0)]
  assert all(np.array_equal(s["id"], fs[0]["id"]) and np.array_equal(s["tex"], fs[0]["tex"]) for s in same)


def test_source_prepare_items_and_multiview(r32):
  src = syn.make_source({"seed": 0, "num_identities": 100, "size": 50})
  assert len(src) == 50 and src[3]["identity"] < 100
  assert _digest([src[3]]) == _digest([src[53]])
  # Items render exactly what sample_factors renders (sunglasses stay kind 2), and carry the labels.
  full = syn.make_source({"seed": 0, "num_identities": 100})
  kinds = {int(full[i]["glasses"]) for i in range(400)}
  assert kinds == {0, 1, 2}
  for i in range(20):
    want = syn.sample_factors(i, full.cfg)
    assert all(np.array_equal(full[i][k], want[k]) for k in syn.RENDER_KEYS)
    assert np.isclose(full[i]["smile"], sf.attributes(want)["smile"])
  import grain
  ds = grain.MapDataset.source(src)
  assert np.array_equal(ds[7]["id"], src[7]["id"])
  items = list(syn.prepare_items(2, 32, batch_size=4))  # batch of 4: reuses the r32 program
  assert items[0]["image"].dtype == np.uint8 and items[0]["image"].shape == (32, 32, 3)
  assert items[1]["seg"].shape == (32, 32) and items[1]["landmarks68"].shape == (68, 2)
  assert all(np.asarray(v).dtype.kind in "biuf" for v in items[0].values())
  views, c2w, K = syn.multiview_factors(7, 4)
  assert views["angle"].shape == (4, 3) and np.array_equal(views["id"][0], views["id"][2])
  out = _render(views, 32)
  # The OpenCV cameras reproduce the rendered landmark positions: x_cam = w2c·X, pixel = K·x_cam / z.
  from jaxface.render import mp468, mp468_bases
  fm = mp468_bases.build_face_model_arrays(CFG.level)
  verts = fm["mean_shape"] + np.einsum("vck,k->vc", fm["id_basis"], views["id"][0]) + np.einsum(
      "vck,k->vc", fm["exp_basis"], views["exp"][0])
  for k in range(4):
    w2c = np.linalg.inv(c2w[k])
    pc = verts[mp468.LANDMARKS68] @ w2c[:3, :3].T + w2c[:3, 3]
    pix = (pc @ K.T)[:, :2] / pc[:, 2:3] * (32 / 256)
    np.testing.assert_allclose(pix, np.asarray(out["landmarks68"][k]), atol=2e-3)


def test_errors_and_cli(tmp_path):
  with pytest.raises(ConfigError):
    syn.render_items([0], 8)
  with pytest.raises(ConfigError):
    syn.sample_factors(0, {"num_identities": 0})
  with pytest.raises(ConfigError):
    sf.identity_factors(10, {"num_identities": 5})
  root = os.path.join(os.path.dirname(__file__), "..", "..")
  res = subprocess.run([sys.executable, "-m", "jaxface.data.synthetic", "--sheet", str(tmp_path / "no" / "s.png"),
                        "--n", "1", "--resolution", "16"], capture_output=True, text=True, cwd=root, timeout=300)
  assert res.returncode == 2 and "error:" in res.stderr and "Traceback" not in res.stderr
