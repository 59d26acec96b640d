"""The frozen experts DiscoFaceGAN trains against: one pytree of arrays plus pure functions of it.

`load(config)` -> the pytree that goes into state["frozen"]:
  face     the FaceModel (3DMM) of the render targets and of R-Net's landmarks
  priors   {factor: VAE variables (+ "fit": the latent Gaussian of the priors run, when it has one)}
  rnet     R-Net variables (+ the coefficient mean/std of a jaxface R-Net)
  idnet    identity-net variables
  parser   parser variables (only when a hair term is on)
`functions(config)` -> `Experts`, pure callables taking that pytree first. The train step passes the pytree
through stop_gradient, so nothing frozen ever trains; keeping it in the state makes a checkpoint self-contained
(`jaxface.Generator.load` needs the decoders, not the workdirs they came from).

Where the experts come from (`config.experts.source`):
  synthetic  jaxface's own trainings on the synthetic world (configs/priors.py, rnet.py, idnet.py, parser.py).
             An empty workdir trains that expert's bootstrap config into $JAXFACE_CACHE/experts/<name>-<hash>
             (jaxface/train/experts.py `resolve`, on the host before training; the hash covers the whole expert
             config, so another world or preset trains another expert; an interrupted bootstrap resumes from its
             checkpoint).
  bfm        user-supplied files: the BFM face model (.mat), Deep3DFaceRecon R-Net weights and ArcFace weights
             (converted by jaxface.assets), priors from a configs/priors.py:bfm run on R-Net coefficients of the
             data, and a parser workdir when the hair term is on.
"""

import functools
import json
import os
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxface import assets
from jaxface.convert import unflatten
from jaxface.data import synthetic
from jaxface.data import synthetic_render as sr
from jaxface.errors import ConfigError
from jaxface.losses import imitative
from jaxface.losses import recon as recon_losses
from jaxface.models import vae as vae_lib
from jaxface.models.idnet import arcface_from_flat
from jaxface.models.rnet import from_flat
from jaxface.render import camera as cam_lib
from jaxface.render import face_model as fm_lib
from jaxface.render import render as render_lib
from jaxface.runs import idnet as idnet_lib
from jaxface.runs import parser as parser_lib
from jaxface.runs import priors as priors_lib
from jaxface.runs import rnet as rnet_lib
from jaxface.runs.workdir import read_run
from jaxface.runs.disco_expert_configs import (BLOCKS, check_layout, check_world, expert_config, face_model,
                                               needs_parser, user_file)

BFM_FOCAL_224, BFM_GAN_ZOOM = 1015.0, 1.22  # Deep3DFaceRecon's R-Net frame; DiscoFaceGAN's crop zoom


# ------------------------------------------------------------------------------------------------- resolve


# ------------------------------------------------------------------------------------------------- configs


# ------------------------------------------------------------------------------------------------- loading


def _load_priors(config):
  if not config.experts.priors:
    raise ConfigError("config.experts.priors is empty: pass the workdir of a configs/priors.py run "
                      "(configs/priors.py:bfm on R-Net coefficients of your data for experts.source=bfm).")
  _, state, _ = read_run(config.experts.priors)
  cfg = expert_config(config, "priors")
  out = {f: {"params": state[f]["params"], "stats": state[f]["stats"]} for f in priors_lib.factors(cfg)}
  missing = [f for f in ("id", "exp", "gamma", "angle") if f not in out]
  if missing:
    raise ConfigError(f"the priors run {config.experts.priors} has no VAE for {missing}; DiscoFaceGAN needs all "
                      f"four (train with the default config.priors.factors).")
  fit = os.path.join(config.experts.priors, priors_lib.LATENT_FIT)
  if config.experts.use_latent_fit and os.path.isfile(fit):
    with np.load(fit) as z:
      for f in out:
        out[f]["fit"] = {"mean": z[f"{f}/mean"], "chol": z[f"{f}/chol"]}
  return out


def load(config):
  """The frozen pytree (numpy leaves) for state["frozen"]; see the module docstring. Read once per config (the
  loop traces init_state twice); the reads run eagerly even when called under a trace (jax.eval_shape)."""
  with jax.ensure_compile_time_eval():
    return _load(json.dumps(config.to_dict(), sort_keys=True, default=str))


@functools.lru_cache(maxsize=2)
def _load(config_json):
  config = ml_collections.ConfigDict(json.loads(config_json))
  fm = face_model(config)
  frozen = {"face": fm, "priors": _load_priors(config)}
  if config.experts.source == "synthetic":
    check_world(config, "rnet")
    frozen["rnet"] = rnet_frozen(config.experts.rnet)
    expert_config(config, "idnet")
    frozen["idnet"] = idnet_frozen(config.experts.idnet)
    if needs_parser(config):
      check_world(config, "parser")
      _, st, _ = read_run(config.experts.parser, trainer="parser")
      frozen["parser"] = {"params": st["params"], "batch_stats": st["batch_stats"]}
  else:
    flat = assets.load_params("rnet_deep3d", user_file(config, "rnet", "Deep3DFaceRecon_pytorch's epoch_20.pth"))
    frozen["rnet"] = {"variables": unflatten({k: v for k, v in flat.items() if not k.startswith("__")})}
    flat = assets.load_params("arcface", user_file(config, "idnet", "insightface ArcFace weights (.onnx or .pth)"))
    # The converted ArcFace has no batch_stats (BN is folded into scale/offset params): only "params".
    frozen["idnet"] = {"params": unflatten({k: v for k, v in flat.items() if not k.startswith("__")})}
    if needs_parser(config):
      _, st, _ = read_run(user_file(config, "parser", "a configs/parser.py workdir"),
                                          trainer="parser")
      frozen["parser"] = {"params": st["params"], "batch_stats": st["batch_stats"]}
  check_layout(config, frozen)
  norm = config.model.get("lambda_norm", "")
  if norm:
    frozen["lambda_stats"] = lambda_stats(config, frozen, norm)
  return jax.tree.map(np.asarray, frozen)


def rnet_frozen(workdir):
  """frozen["rnet"] of a configs/rnet.py workdir's newest checkpoint: its variables and coefficient mean/std."""
  _, st, _ = read_run(workdir, trainer="rnet")
  return {"variables": {"params": st["params"], "batch_stats": st["batch_stats"]},
          "mean": st["coeff_mean"], "std": st["coeff_std"]}


def idnet_frozen(workdir):
  """frozen["idnet"] of a configs/idnet.py workdir's newest checkpoint: the embedding net's variables (the class
  centres are training-only)."""
  _, st, _ = read_run(workdir, trainer="idnet")
  return {"params": st["params"]["net"], "batch_stats": st["batch_stats"]}


def tree_shapes(tree):
  """{path: shape} of a pytree's leaves: two trainings of one architecture have equal ones."""
  return {jax.tree_util.keystr(p): np.shape(v) for p, v in jax.tree_util.tree_leaves_with_path(tree)}


LAMBDA_STATS_SAMPLES = 16384


LAMBDA_NORMS = ("", "dim", "factor")


def lambda_stats(config, frozen, norm="dim", n=LAMBDA_STATS_SAMPLES):
  """The affine map (mean, std) the generator's λ goes through, from a fixed sample of the frozen priors (so every
  load agrees); stored in state["frozen"], so a checkpoint carries its exact input transform.

  Raw λ spans wildly different scales and sizes (three pose angles in radians beside 80+ identity coefficients):
  fed as is, pose is ~0.2% of the mapping's input energy and barely reaches w.
    dim     every dimension standardised (zero mean, unit std);
    factor  standardised, then each factor's dimensions (identity = id + tex, expression, pose, light) scaled so
            that every factor carries the same total energy: pose's 3 numbers weigh as much as identity's."""
  if norm not in LAMBDA_NORMS[1:]:
    raise ConfigError(f"config.model.lambda_norm={norm!r}; use '' (raw λ, as released), 'dim' or 'factor'.")
  fns = functions(config)
  keys = jax.random.split(jax.random.key(20200), len(fns.latent))
  z = {f: jax.random.normal(k, (n, size)) for k, (f, size) in zip(keys, fns.latent.items())}
  frozen = jax.tree.map(jnp.asarray, frozen)
  blocks = jax.jit(fns.decode)(frozen, z)
  lam = np.asarray(flat_lambda(blocks), np.float64)
  std = np.maximum(lam.std(0), 1e-6)
  if norm == "factor":
    sizes = {b: blocks[b].shape[-1] for b in BLOCKS}
    groups = (("id", "tex"), ("exp",), ("angle",), ("gamma",))
    scale = np.concatenate([np.full(sizes[b], np.sqrt(lam.shape[1] / (len(groups) * sum(sizes[x] for x in g))))
                            for g in groups for b in g])
    std = std / scale
  return {"mean": lam.mean(0).astype(np.float32), "std": std.astype(np.float32)}


def generator_input(frozen, lam, eps):
  """The generator's input λ ‖ ε: λ standardised with the frozen statistics when the run has them (configs with
  model.lambda_norm), raw otherwise (the released recipe)."""
  stats = frozen.get("lambda_stats")
  if stats is not None:
    lam = (lam - stats["mean"]) / stats["std"]
  return jnp.concatenate([lam, eps.astype(lam.dtype)], -1)


def restored(frozen):
  """state["frozen"] as read back from a checkpoint (plain dicts) -> the live pytree (a FaceModel again)."""
  face = frozen["face"]
  if isinstance(face, fm_lib.FaceModel):
    return frozen
  return dict(frozen, face=fm_lib.FaceModel(**{k: jnp.asarray(v) for k, v in face.items()}))


# ------------------------------------------------------------------------------------------------- functions

def _resize(images, size):
  """[B, H, W, 3] -> [B, size, size, 3]; antialiased when shrinking (an area-like filter, no aliasing)."""
  if images.shape[1] == size and images.shape[2] == size:
    return images
  return jax.image.resize(images, (images.shape[0], size, size, images.shape[-1]), "linear", antialias=True)


class Experts(NamedTuple):
  """Pure functions of the frozen pytree. Images are [B, R, R, 3] in [-1, 1] at any R; landmarks are pixels in
  the image's own frame (x right, y down)."""
  latent: dict            # factor -> z size, in DiscoFaceGAN's z order (id, exp, gamma, angle)
  layout: fm_lib.CoeffLayout
  decode: Callable        # (frozen, {factor: z [B, n]}) -> {block: [B, n]} for BLOCKS
  camera: Callable        # resolution -> the generator frame's camera
  recon: Callable         # (frozen, images) -> {"coeffs": dict, "landmarks": [B,68,2], "gamma": [B,27]}
  identity: Callable      # (frozen, images) -> unit embeddings [B, E]
  hair: Callable          # (frozen, images, landmarks) -> hair probability [B, R, R]
  display: Callable       # renders' linear radiance [0, 1] -> the display space of the real images


def flat_lambda(blocks):
  """Coefficient blocks -> the generator's λ [B, n] in BLOCKS order (translation is not modelled: 0)."""
  return jnp.concatenate([blocks[b] for b in BLOCKS], -1)


def full_coeffs(blocks):
  """Blocks -> a render coefficient dict with zero translation (the data are aligned so that t = 0)."""
  out = dict(blocks)
  out["trans"] = jnp.zeros(blocks["angle"].shape[:-1] + (3,), jnp.float32)
  return out


def functions(config):
  return _functions(json.dumps(config.to_dict(), sort_keys=True, default=str))


@functools.lru_cache(maxsize=8)
def _functions(config_json):
  config = ml_collections.ConfigDict(json.loads(config_json))
  pcfg = expert_config(config, "priors")
  latent = {f: int(pcfg.model[f].latent) for f in vae_lib.FACTORS}
  dims = priors_lib.face_dims(pcfg)
  fm = face_model(config)
  vaes = {f: priors_lib.model(pcfg, f) for f in vae_lib.FACTORS}

  def decode(frozen, z):
    out = {}
    for f, vae in vaes.items():
      p = frozen["priors"][f]
      zf = z[f]
      if "fit" in p:  # sample the Gaussian the encoder actually filled (priors' latent_fit.npz)
        zf = p["fit"]["mean"] + zf @ p["fit"]["chol"].T
      x = vae.apply({"params": p["params"], "stats": p["stats"]}, zf, method="decode")
      out.update(vae_lib.split_blocks(f, x.astype(jnp.float32), dims))
    return {b: out[b] for b in BLOCKS}

  synthetic = config.experts.source == "synthetic"
  if synthetic:
    base_cam = sr.camera(float(config.data.focal))
  else:
    base_cam = cam_lib.perspective(BFM_FOCAL_224 * BFM_GAN_ZOOM, 128.0, 128.0, 256, 256)

  def camera(resolution):
    del resolution  # render(..., resolution) rescales the 256 frame
    return base_cam

  recon = _recon_fn(config, fm.layout, synthetic)
  identity = _identity_fn(config, synthetic)
  hair = _hair_fn(config) if needs_parser(config) else None
  # The synthetic world shows linear shading through gamma 1/2.2, so the renders imitated must too; BFM's albedo
  # is already in photo (display) space, and Deep3DFaceRecon renders it as is.
  display = render_lib.to_display if synthetic else (lambda image: image)
  return Experts(latent=latent, layout=fm.layout, decode=decode, camera=camera, recon=recon, identity=identity,
                 hair=hair, display=display)


def _recon_fn(config, layout, synthetic):
  if synthetic:
    rcfg = expert_config(config, "rnet")
    net, order, size = rnet_lib.network(rcfg, train=False), rcfg.model.order, int(rcfg.data.resolution)
    cam = rnet_lib.camera(rcfg.data)
  else:
    net, _ = from_flat(assets.load_params("rnet_deep3d", config.experts.rnet))
    order, size = "d3dfr", 224
    cam = cam_lib.perspective(BFM_FOCAL_224, 112.0, 112.0, 224, 224)
  full = fm_lib.CoeffLayout(n_id=layout.n_id, n_exp=layout.n_exp, n_tex=layout.n_tex)

  def recon(frozen, images):
    r = frozen["rnet"]
    x = _resize(jnp.clip(images.astype(jnp.float32), -1.0, 1.0), size) * 0.5 + 0.5  # R-Net takes [0, 1] RGB
    raw = net.apply(r["variables"], x).astype(jnp.float32)
    if "mean" in r:
      raw = r["mean"] + r["std"] * raw
    coeffs = fm_lib.split_coeffs(raw, full, order)
    lm = jax.vmap(lambda c: recon_losses.landmark_points(frozen["face"], c, cam, size))(coeffs)
    return {"coeffs": coeffs, "landmarks": lm * (images.shape[1] / size), "gamma": coeffs["gamma"]}

  return recon


def _identity_fn(config, synthetic):
  if synthetic:
    icfg = expert_config(config, "idnet")
    net, size = idnet_lib.network(icfg, train=False), int(icfg.data.resolution)

    def apply(frozen, x):
      return net.apply({"params": frozen["idnet"]["params"], "batch_stats": frozen["idnet"]["batch_stats"]}, x)
  else:
    net, _ = arcface_from_flat(assets.load_params("arcface", config.experts.idnet))
    size = 112

    def apply(frozen, x):
      return net.apply(frozen["idnet"], x)

  def identity(frozen, images):
    x = _resize(jnp.clip(images.astype(jnp.float32), -1.0, 1.0), size)
    return imitative.l2_normalize(apply(frozen, x))

  return identity


def _hair_fn(config):
  pcfg = expert_config(config, "parser")
  net, size = parser_lib.network(pcfg, train=False), int(pcfg.data.resolution)
  hair_class = list(synthetic.CLASSES).index("hair")

  def hair(frozen, images, landmarks):
    del landmarks  # our parser sees the whole aligned frame; the released one used them to place its crop
    x = _resize(jnp.clip(images.astype(jnp.float32), -1.0, 1.0), size) * 0.5 + 0.5
    prob = jax.nn.softmax(net.apply(frozen["parser"], x).astype(jnp.float32), -1)[..., hair_class]
    return _resize(prob[..., None], images.shape[1])[..., 0]

  return hair
