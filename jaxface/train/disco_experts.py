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
             (`resolve`, on the host before training; the hash covers the whole expert config, so another world
             or preset trains another expert; an interrupted bootstrap resumes from its checkpoint).
  bfm        user-supplied files: the BFM face model (.mat), Deep3DFaceRecon R-Net weights and ArcFace weights
             (converted by jaxface.assets), priors from a configs/priors.py:bfm run on R-Net coefficients of the
             data, and a parser workdir when the hair term is on.
"""

import functools
import hashlib
import json
import os
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxface.errors import ConfigError
from jaxface.render import camera as cam_lib
from jaxface.render import face_model as fm_lib
from jaxface.render import render as render_lib

NAMES = ("priors", "rnet", "idnet", "parser")
BLOCKS = ("id", "tex", "exp", "angle", "gamma")  # λ layout fed to the generator (DiscoFaceGAN: 254 = 80+80+64+3+27)
WORLD_KEYS = ("num_identities", "max_yaw", "max_pitch", "max_roll", "glasses_prob", "level", "focal")
BFM_FOCAL_224, BFM_GAN_ZOOM = 1015.0, 1.22  # Deep3DFaceRecon's R-Net frame; DiscoFaceGAN's crop zoom


def needs_parser(config):
  """The parser is loaded only when stage 2 runs with a hair term."""
  s = config.schedule
  kimg_total = config.total_steps * config.batch_size / 1000.0
  return config.loss.light_hair > 0 and config.loss.w_gamma_change > 0 and s.stage2_kimg < kimg_total


# ------------------------------------------------------------------------------------------------- resolve

def _set(config, dotted, value):
  *parents, leaf = dotted.split(".")
  node = config
  for p in parents:
    node = node[p]
  if leaf not in node:
    raise ConfigError(f"bootstrap override {dotted!r} names no field of that expert config.")
  node[leaf] = value


def bootstrap_config(config, name):
  """The expert config `name` is trained with when its workdir is empty: the preset named in
  config.experts.bootstrap.<name>, its overrides, and the disco run's synthetic world."""
  from jaxface import config as config_lib
  b = config.experts.bootstrap
  cfg = config_lib.load_config_file(_spec_path(b[name]))
  for key, value in dict(b[f"{name}_overrides"]).items():
    _set(cfg, key.replace("/", "."), value)
  for key in WORLD_KEYS:
    cfg.data[key] = config.data[key]
  cfg.wandb.mode = "disabled"
  cfg.seed = config.seed
  return cfg


def _spec_path(spec):
  """A bootstrap config spec ('configs/rnet.py:small'), found relative to the jaxface checkout when the
  working directory has no such file."""
  path, _, arg = spec.partition(":")
  if not os.path.isabs(path) and not os.path.exists(path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.path.join(os.path.dirname(root), path)
  return f"{path}:{arg}" if arg else path


def _cache_root():
  from jaxface import assets
  return os.path.join(assets.cache_dir(), "experts")


def _finished(workdir, steps):
  ckpt = os.path.join(workdir, "checkpoints", str(steps))
  return os.path.isdir(ckpt) and os.path.isfile(os.path.join(workdir, "config.json"))


def trained_bootstrap(cfg, name, spec, log=print):
  """The cache workdir ($JAXFACE_CACHE/experts/<name>-<hash of cfg>) of an expert trained with config `cfg`
  (from `bootstrap_config`), training it first when it is not there yet. Every method that needs a synthetic
  expert goes through here, so equal configs share one trained expert."""
  from jaxface import config as config_lib
  key = hashlib.sha256(config_lib.to_json(cfg).encode()).hexdigest()[:12]
  workdir = os.path.join(_cache_root(), f"{name}-{key}")
  if not _finished(workdir, cfg.total_steps) and jax.process_count() > 1:
    raise ConfigError(f"expert {name!r} is not trained yet and multi-host runs do not bootstrap experts; train it "
                      f"once (python -m jaxface.main --config {spec} ...) and pass its workdir in the config.")

  def train():
    log(f"[experts] training the {name} bootstrap ({cfg.total_steps} steps of {spec}) into {workdir}")
    from jaxface.train import loop
    loop.train(cfg, workdir)

  from jaxface import assets
  assets.build_once(f"experts-{name}-{key}", lambda: _finished(workdir, cfg.total_steps), train)
  if not _finished(workdir, cfg.total_steps):
    # A SIGTERM during the bootstrap saves its checkpoint and ends that training early; an expert cut short must
    # not be trained against (or measure anything) as if it were finished.
    raise ConfigError(f"the {name} expert's bootstrap in {workdir} stopped before its {cfg.total_steps} steps "
                      f"(interrupted); rerun the same command to resume it from its last checkpoint.")
  return workdir


def resolve(config, log=print):
  """Fills every empty synthetic expert workdir in config.experts with a trained bootstrap in the cache,
  training the ones that are not there yet. Returns the config (edited in place)."""
  if config.experts.source != "synthetic":
    return config
  for name in NAMES:
    if config.experts[name] or (name == "parser" and not needs_parser(config)):
      continue
    config.experts[name] = trained_bootstrap(bootstrap_config(config, name), name, config.experts.bootstrap[name],
                                             log)
  return config


# ------------------------------------------------------------------------------------------------- configs

@functools.lru_cache(maxsize=16)
def _workdir_config(workdir, trainer):
  path = os.path.join(workdir, "config.json")
  if not os.path.isfile(path):
    raise ConfigError(f"{workdir!r} is not a training workdir (no config.json); pass the --workdir of a finished "
                      f"configs/{trainer}.py run.")
  with open(path) as f:
    cfg = ml_collections.ConfigDict(json.load(f))
  if cfg.get("trainer") != trainer:
    raise ConfigError(f"{workdir!r} was trained by {cfg.get('trainer')!r}, not {trainer!r}; pass the workdir of a "
                      f"configs/{trainer}.py run.")
  return cfg


def expert_config(config, name):
  """The config an expert was trained with: the copy `record_configs` put in this run's config (so a run is
  self-contained), else its workdir's config.json."""
  recorded = json.loads(config.experts.get("configs", "") or "{}")
  if name in recorded:
    return ml_collections.ConfigDict(recorded[name])
  return _workdir_config(os.path.abspath(config.experts[name]), name)


def record_configs(config):
  """Copies the training configs of the jaxface-trained experts this run uses into config.experts.configs: the
  run's config.json then rebuilds their networks (Generator.load, evaluation) without the expert workdirs."""
  names = [n for n in ("priors", "rnet", "idnet", "parser")
           if config.experts[n] and (config.experts.source == "synthetic" or n in ("priors", "parser"))
           and (n != "parser" or needs_parser(config))]
  config.experts.configs = json.dumps({n: _workdir_config(os.path.abspath(config.experts[n]), n).to_dict()
                                       for n in names}, sort_keys=True)
  return config


def _check_world(config, name):
  """A synthetic expert must come from the same world the generator trains on (same mesh level and camera)."""
  cfg = expert_config(config, name)
  for key in ("level", "focal"):
    if float(cfg.data[key]) != float(config.data[key]):
      raise ConfigError(f"expert {name} ({config.experts[name]}) was trained with data.{key}={cfg.data[key]}, "
                        f"this run uses {config.data[key]}; use matching settings or another expert.")
  return cfg


# ------------------------------------------------------------------------------------------------- loading

def _user_file(config, key, what):
  path = config.experts[key]
  if not path:
    raise ConfigError(f"configs/disco.py with experts.source=bfm needs {what}: set --config.experts.{key}=PATH.")
  if not os.path.exists(path):
    raise ConfigError(f"--config.experts.{key}={path} does not exist; it should point at {what}.")
  return path


@functools.lru_cache(maxsize=4)
def _face_model(source, path, level):
  with jax.ensure_compile_time_eval():  # never cache tracers, whoever calls first
    return _build_face_model(source, path, level)


def _build_face_model(source, path, level):
  if source == "synthetic":
    from jaxface.train import rnet as rnet_lib
    return rnet_lib.face_model(level)
  return fm_lib.load_face_model("bfm_front", path=path)


def face_model(config):
  if config.experts.source == "bfm":
    return _face_model("bfm", _user_file(config, "face_model", "BFM_model_front.mat (Deep3DFaceRecon) or "
                                         "BFM_model_front_gan.mat (DiscoFaceGAN)"), 0)
  return _face_model("synthetic", "", int(config.data.level))


def _load_priors(config):
  from jaxface.train import priors as priors_lib
  if not config.experts.priors:
    raise ConfigError("config.experts.priors is empty: pass the workdir of a configs/priors.py run "
                      "(configs/priors.py:bfm on R-Net coefficients of your data for experts.source=bfm).")
  _, state, _ = priors_lib.restore_workdir(config.experts.priors)
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
    from jaxface.train import rnet as rnet_lib
    from jaxface.train import priors as priors_lib
    _check_world(config, "rnet")
    _, st, _ = rnet_lib.read_checkpoint(config.experts.rnet, trainer="rnet")
    frozen["rnet"] = {"variables": {"params": st["params"], "batch_stats": st["batch_stats"]},
                      "mean": st["coeff_mean"], "std": st["coeff_std"]}
    _, st, _ = priors_lib.restore_workdir(config.experts.idnet)
    expert_config(config, "idnet")
    frozen["idnet"] = {"params": st["params"]["net"], "batch_stats": st["batch_stats"]}
    if needs_parser(config):
      _check_world(config, "parser")
      _, st, _ = rnet_lib.read_checkpoint(config.experts.parser, trainer="parser")
      frozen["parser"] = {"params": st["params"], "batch_stats": st["batch_stats"]}
  else:
    from jaxface import assets
    from jaxface.convert import unflatten
    flat = assets.load_params("rnet_deep3d", _user_file(config, "rnet", "Deep3DFaceRecon_pytorch's epoch_20.pth"))
    frozen["rnet"] = {"variables": unflatten({k: v for k, v in flat.items() if not k.startswith("__")})}
    flat = assets.load_params("arcface", _user_file(config, "idnet", "insightface ArcFace weights (.onnx or .pth)"))
    # The converted ArcFace has no batch_stats (BN is folded into scale/offset params): only "params".
    frozen["idnet"] = {"params": unflatten({k: v for k, v in flat.items() if not k.startswith("__")})}
    if needs_parser(config):
      from jaxface.train import rnet as rnet_lib
      _, st, _ = rnet_lib.read_checkpoint(_user_file(config, "parser", "a configs/parser.py workdir"),
                                          trainer="parser")
      frozen["parser"] = {"params": st["params"], "batch_stats": st["batch_stats"]}
  _check_layout(config, frozen)
  norm = config.model.get("lambda_norm", "")
  if norm:
    frozen["lambda_stats"] = lambda_stats(config, frozen, norm)
  return jax.tree.map(np.asarray, frozen)


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


def lambda_dim(config):
  """Size of λ (id + tex + exp + angle + gamma) from the priors' block sizes."""
  from jaxface.train import priors as priors_lib
  dims = priors_lib.face_dims(expert_config(config, "priors"))
  return sum(int(dims[b]) for b in BLOCKS)


def _check_layout(config, frozen):
  from jaxface.train import priors as priors_lib
  fm = frozen["face"]
  dims = priors_lib.face_dims(expert_config(config, "priors"))
  want = dict(id=fm.n_id, tex=fm.n_tex, exp=fm.n_exp, angle=3, gamma=27)
  bad = {k: (dims.get(k), v) for k, v in want.items() if int(dims.get(k, -1)) != v}
  if bad:
    raise ConfigError(f"the priors run {config.experts.priors} models blocks {dims}, the face model has {want}; "
                      f"train the priors for this face model (mismatch (priors, face): {bad}).")


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
  from jaxface.models import vae as vae_lib
  from jaxface.train import priors as priors_lib
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
    from jaxface.data import synthetic_render as sr
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
  from jaxface.losses import recon as recon_losses
  if synthetic:
    from jaxface.train import rnet as rnet_lib
    rcfg = expert_config(config, "rnet")
    net, order, size = rnet_lib.network(rcfg, train=False), rcfg.model.order, int(rcfg.data.resolution)
    cam = rnet_lib.camera(rcfg.data)
  else:
    from jaxface import assets
    from jaxface.models.rnet import from_flat
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
  from jaxface.losses import imitative
  if synthetic:
    from jaxface.train import idnet as idnet_lib
    icfg = expert_config(config, "idnet")
    net, size = idnet_lib.network(icfg, train=False), int(icfg.data.resolution)

    def apply(frozen, x):
      return net.apply({"params": frozen["idnet"]["params"], "batch_stats": frozen["idnet"]["batch_stats"]}, x)
  else:
    from jaxface import assets
    from jaxface.models.idnet import arcface_from_flat
    net, _ = arcface_from_flat(assets.load_params("arcface", config.experts.idnet))
    size = 112

    def apply(frozen, x):
      return net.apply(frozen["idnet"], x)

  def identity(frozen, images):
    x = _resize(jnp.clip(images.astype(jnp.float32), -1.0, 1.0), size)
    return imitative.l2_normalize(apply(frozen, x))

  return identity


def _hair_fn(config):
  from jaxface.data import synthetic
  from jaxface.train import parser as parser_lib
  pcfg = expert_config(config, "parser")
  net, size = parser_lib.network(pcfg, train=False), int(pcfg.data.resolution)
  hair_class = list(synthetic.CLASSES).index("hair")

  def hair(frozen, images, landmarks):
    del landmarks  # our parser sees the whole aligned frame; the released one used them to place its crop
    x = _resize(jnp.clip(images.astype(jnp.float32), -1.0, 1.0), size) * 0.5 + 0.5
    prob = jax.nn.softmax(net.apply(frozen["parser"], x).astype(jnp.float32), -1)[..., hair_class]
    return _resize(prob[..., None], images.shape[1])[..., 0]

  return hair
