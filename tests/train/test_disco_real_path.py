"""configs/disco.py:ffhq256's real-data path is wired: a few training steps on fixture files
in the formats users bring, all written here: a BFM_model_front.mat (Deep3DFaceRecon's key names), a
Deep3DFaceRecon R-Net checkpoint ({"net_recon": state dict}), an arcface_torch IResNet state dict, an image folder,
and a configs/priors.py:bfm workdir trained on a coefficient file. The networks are random: this checks plumbing
(loaders, converters, shapes, every loss phase, evaluation), not quality."""

import json
import os
import subprocess
import sys

import numpy as np
import scipy.io

import helpers  # tests/train sibling (on sys.path: pytest inserts the test file's folder)

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "models"))
import _torch_reference_nets as torch_refs  # noqa: E402  (tests/models helper, put on sys.path above)
import torch  # noqa: E402  (test requirement)

FACE_DIMS = dict(id=80, tex=80, exp=64, gamma=27, angle=3)  # BFM09 front model, as configs/priors.py:bfm


# ------------------------------------------------------------------------------------------------- fixture files

def _grid_face(nx=16, ny=18):
  """A face-sized cap in BFM units (decimetres, centred, facing +z): vertices [V, 3] and 0-based triangles
  wound so that (v0 - v1) x (v1 - v2) points at the camera."""
  x, y = np.meshgrid(np.linspace(-0.75, 0.75, nx), np.linspace(-0.95, 0.95, ny))
  z = 0.6 * (1.0 - (x / 0.9) ** 2 - (y / 1.1) ** 2)
  verts = np.stack([x, y, z], -1).reshape(-1, 3)
  i = np.arange(nx * ny).reshape(ny, nx)
  a, b, c, d = i[:-1, :-1], i[:-1, 1:], i[1:, :-1], i[1:, 1:]
  tri = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([b, d, c], -1).reshape(-1, 3)])
  return verts, tri


def _point_buf(tri, v):
  """Deep3DFaceRecon's point_buf: adjacent faces per vertex, 1-based, padded with F + 1 (a zero normal)."""
  k = np.bincount(tri.ravel(), minlength=v).max()
  out = np.full((v, k), len(tri), np.int64)
  fill = np.zeros(v, np.int64)
  for f, t in enumerate(tri):
    for vert in t:
      out[vert, fill[vert]] = f
      fill[vert] += 1
  return out + 1


def write_bfm_front(path, seed=0):
  """BFM_model_front.mat with Deep3DFaceRecon's variables and layouts ([1, 3V] means, [3V, n] bases with xyz
  interleaved, 1-based tri / point_buf / keypoints / frontmask2_idx, [1, V] skinmask); 80/64/80 basis columns."""
  rng = np.random.default_rng(seed)
  verts, tri = _grid_face()
  v = len(verts)
  skin = np.tile([1.0, 0.84, 0.74], (v, 1)) * 200.0 + rng.normal(0, 5, (v, 3))  # 0..255, as BFM's meantex
  inner = np.flatnonzero(np.linalg.norm(verts[:, :2] / [0.75, 0.95], axis=1) < 0.8)
  mat = {
      "meanshape": verts.reshape(1, -1), "meantex": skin.reshape(1, -1),
      # Bases scaled like BFM's (coefficients ~ N(0, 1) move vertices by millimetres to centimetres).
      "idBase": rng.normal(0, 0.01, (3 * v, 80)), "exBase": rng.normal(0, 0.01, (3 * v, 64)),
      "texBase": rng.normal(0, 2.0, (3 * v, 80)),
      "tri": (tri + 1).astype(np.float64), "point_buf": _point_buf(tri, v).astype(np.float64),
      "keypoints": (np.sort(rng.choice(inner, 68, replace=False)) + 1)[None].astype(np.float64),
      "frontmask2_idx": (inner + 1)[:, None].astype(np.float64),
      "skinmask": np.isin(np.arange(v), inner).astype(np.float64)[None],
      "tri_mask2": (tri[:20] + 1).astype(np.float64),
  }
  scipy.io.savemat(path, mat)
  return str(path)


def write_rnet(path, seed=0):
  """Deep3DFaceRecon_pytorch's epoch_20.pth layout: the ResNet-18 ReconNet under "net_recon"."""
  torch.manual_seed(seed)
  net = torch_refs.ReconNet(18)
  for layer in net.final_layers:  # small coefficients, as a trained R-Net gives (zero-initialised heads in D3DFR)
    torch.nn.init.normal_(layer.weight, std=0.01)
    torch.nn.init.zeros_(layer.bias)
  torch.save({"net_recon": net.state_dict(), "epoch": 20}, path)
  return str(path)


def write_arcface(path, seed=0):
  """arcface_torch's backbone.pth layout (a plain IResNet state dict), 112x112 input, few blocks."""
  torch.manual_seed(seed)
  net = torch_refs.IResNet((1, 1, 1, 1), embed=64, size=112)
  torch.save(net.state_dict(), path)
  return str(path)


def write_coeffs(path, n=400, seed=0):
  """The .npz configs/priors.py reads (data.coeff_file): id, tex, exp, gamma, angle [N, block size]."""
  rng = np.random.default_rng(seed)
  scale = dict(id=1.0, tex=1.0, exp=0.5, gamma=0.1, angle=0.1)
  # R-Net-like ranges (gamma excludes the renderer's +0.8 ambient prior, as Deep3DFaceRecon's estimates do).
  arrays = {b: (scale[b] * rng.normal(size=(n, k))).astype(np.float32) for b, k in FACE_DIMS.items()}
  np.savez(path, **arrays)
  return str(path)


def write_images(folder, n=12, size=48, seed=0):
  """A folder of PNGs larger than the training resolution (the folder pipeline resizes them)."""
  from PIL import Image
  rng = np.random.default_rng(seed)
  os.makedirs(folder)
  yy, xx = np.mgrid[:size, :size] / size - 0.5
  for k in range(n):
    face = (xx / 0.3) ** 2 + (yy / 0.4) ** 2 < 1.0
    img = np.where(face[..., None], rng.uniform(120, 230, 3), rng.uniform(0, 255, 3))
    img = img + rng.normal(0, 10, img.shape)
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(os.path.join(folder, f"{k:05d}.png"))
  return str(folder)


# ------------------------------------------------------------------------------------------------- runs

def _run(args, cache, timeout=900):
  env = helpers.env()
  # Converted user weights go into the cache keyed by the file's hash; torch.save output is not byte-stable,
  # so a shared cache would gain a new 45 MB R-Net per run.
  env["JAXFACE_CACHE"] = str(cache)
  return subprocess.run([sys.executable, "-m", "jaxface.main", *args], cwd=helpers.ROOT, env=env,
                        capture_output=True, text=True, timeout=timeout)


def train_priors(workdir, coeff_file, cache):
  """configs/priors.py:bfm (face dims 80/80/64/27/3, latents 128/32/16/3, full widths) for 4 steps."""
  r = _run(["--config", "configs/priors.py:bfm,steps=4", "--workdir", str(workdir), "--config.wandb.mode=disabled",
            "--config.ckpt.async_save=false", f"--config.data.coeff_file={coeff_file}", "--config.batch_size=16",
            "--config.ckpt.every_steps=4", "--config.log.every_steps=2", "--config.eval.num_samples=64",
            "--config.eval.test_rows=16", "--config.eval.permutations=5"], cache)
  assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
  return str(workdir)


DISCO = "configs/disco.py:ffhq256,res=32"  # res=32 keeps the generator cheap; the experts stay full size
STEPS = 4  # batch 4: step 1 pixel phase, step 2 imitative terms, steps 3-4 stage 2 (contrastive pairs)
DISCO_OVERRIDES = [
    f"--config.total_steps={STEPS}", "--config.batch_size=4", "--config.compute_dtype=float32",
    "--config.model.channel_max=16", "--config.model.w_dim=16", "--config.model.mapping_layers=2",
    "--config.model.noise_dim=8", "--config.schedule.pix_kimg=0.004", "--config.schedule.stage2_kimg=0.008",
    "--config.schedule.pairs=1",
    # Stage 2 without a parser (no hair term) and without the lighting pair's landmark term, which would compile
    # a third R-Net backward into the step (~20 s) to exercise the R-Net path stage 1 already covers.
    "--config.loss.light_hair=0", "--config.loss.light_lm=0",
    "--config.ckpt.every_steps=2", "--config.ckpt.async_save=false", "--config.log.every_steps=1",
    f"--config.log.samples_every_steps={STEPS}", "--config.log.num_samples=4", "--config.wandb.mode=disabled",
    "--config.truncation.w_bar_samples=64", "--config.eval.groups=2", "--config.eval.group_size=2",
    "--config.eval.control_samples=4", "--config.eval.batch_size=4", "--config.eval.fid_samples=0",
    "--config.eval.sweep_identities=2", "--config.eval.sweep_steps=3",
]
IMITATIVE = ("imit_lm", "imit_gamma", "imit_id", "imit_skin")


def assert_finite_terms(row, keys):
  for k in keys:
    assert k in row and np.isfinite(row[k]), (k, row)


def test_ffhq256_real_path_trains_on_user_format_files(tmp_path):
  cache = tmp_path / "cache"
  experts = {
      "face_model": write_bfm_front(tmp_path / "BFM_model_front.mat"),
      "rnet": write_rnet(tmp_path / "epoch_20.pth"),
      "idnet": write_arcface(tmp_path / "backbone.pth"),
      "priors": train_priors(tmp_path / "priors", write_coeffs(tmp_path / "coeffs.npz"), cache),
  }
  data = write_images(tmp_path / "images")
  workdir = tmp_path / "disco"
  r = _run(["--config", DISCO, "--workdir", str(workdir), *DISCO_OVERRIDES, f"--config.data.path={data}",
            *(f"--config.experts.{k}={v}" for k, v in experts.items())], cache)
  log = r.stdout[-4000:] + r.stderr[-4000:]
  assert r.returncode == 0, log
  assert helpers.checkpoint_steps(workdir) == [2, 4], log

  rows = {row["step"]: row for row in helpers.metric_rows(workdir) if "loss_G" in row}
  assert sorted(rows) == list(range(1, STEPS + 1)), sorted(rows)
  for row in rows.values():
    assert_finite_terms(row, [k for k in row if k.startswith(("loss_", "imit_", "con_", "adv"))])
  pixel, imitative, stage2 = rows[1], rows[2], (rows[3], rows[4])
  assert "imit_pix" in pixel and not set(IMITATIVE) & set(pixel), pixel
  assert_finite_terms(imitative, IMITATIVE)
  assert "imit_pix" not in imitative and not any(k.startswith("con_") for k in imitative), imitative
  for row in stage2:
    assert_finite_terms(row, IMITATIVE + ("con_exp_warp", "con_light_id", "adv_pairs"))

  with open(workdir / "config.json") as f:
    recorded = json.load(f)["experts"]
  assert recorded["source"] == "bfm"
  assert {k: recorded[k] for k in experts} == experts
  with open(workdir / "eval" / f"step_{STEPS}.json") as f:
    ev = json.load(f)
  assert ev["step"] == STEPS
  assert np.isfinite(ev["control"]["landmark_err_pct_mean"]) and np.isfinite(ev["identity"]["mean_same_identity"])
  assert np.isfinite(ev["disentanglement"]["ds_mean"]) and "control_floor" not in ev  # real data: no world floor


def test_ffhq256_missing_face_model_is_a_user_error(tmp_path):
  missing = tmp_path / "nope" / "BFM_model_front.mat"
  r = _run(["--config", DISCO, "--workdir", str(tmp_path / "disco"), *DISCO_OVERRIDES,
            f"--config.data.path={tmp_path}", f"--config.experts.face_model={missing}"], tmp_path / "cache",
           timeout=300)
  out = r.stdout + r.stderr
  assert r.returncode == 2, out[-3000:]
  assert f"--config.experts.face_model={missing}" in out and "Traceback" not in out, out[-3000:]
