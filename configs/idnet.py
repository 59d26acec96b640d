r"""An identity network trained on the synthetic world's identities with ArcFace's additive angular margin loss.

Presets (the string after the colon):
  synthetic  (default) ResNet-18 at 64x64 -> 128-d embedding, 1,000 training identities, AdamW with warm-up and cosine
             decay, ArcFace s=32, m=0.3 (the paper's s=64, m=0.5 trains slower from scratch on a short CPU budget).
               python -m jaxface.main --config configs/idnet.py --workdir workdirs/idnet
             Hardware: a GPU for long runs; the recorded CPU run (docs/results_priors.md) is short. At the end it
             writes the verification ROC-AUC on 1,000 never-seen identities to workdir/eval/. Compare with the dlib
             descriptor: python -m jaxface.eval.identity --idnet_workdir workdirs/idnet
  tiny       16x16 renders, ResNet-18, a few steps: for tests.
Other arguments: steps=N overrides total_steps; res=R the render resolution.
"""

import ml_collections

from configs import common
from jaxface.errors import ConfigError


def get_config(arg=""):
  args = common.parse_arg(arg, preset="synthetic", steps=0, res=0)
  if args.preset not in ("synthetic", "tiny"):
    raise ConfigError(f"unknown preset {args.preset!r} for configs/idnet.py; use synthetic or tiny.")
  tiny = args.preset == "tiny"
  res = args.res or (16 if tiny else 64)

  config = ml_collections.ConfigDict()
  config.trainer = "idnet"  # jaxface/train/<trainer>.py
  config.config_file = ""  # filled in by jaxface.config with the file:arg this config came from
  config.batch_size = 8 if tiny else 64  # global batch of rendered (identity, sample) images
  config.total_steps = args.steps or (4 if tiny else 3000)  # optimizer steps
  common.mesh_and_sharding(config)
  common.run_blocks(config)
  config.ckpt.every_steps = 2 if tiny else 250
  config.log.every_steps = 1 if tiny else 25
  config.log.samples_every_steps = 10**9  # no image grids

  config.data = common.data_block(res)
  config.data.num_identities = 40 if tiny else 10_000
  # Fraction of each batch shown as the bare face-model render of its identity (no hair, background blurred and
  # darkened): DiscoFaceGAN's fakes look like that, and a net trained on world images alone gives renders of
  # different identities cosine 0.995, so it can neither teach nor measure identity there. 0.5 for such nets.
  config.render_mix = 0.0

  config.idnet = ml_collections.ConfigDict(dict(
      num_train_identities=20 if tiny else 1_000,  # classes: the pool's first N identities
      scale=32.0,  # ArcFace logit scale s (paper: 64)
      margin=0.3,  # ArcFace additive angular margin m in radians (paper: 0.5)
  ))

  config.model = ml_collections.ConfigDict(dict(
      depth=18,  # ResNet depth (18, 34, 50, 101; jaxface/models/resnet.py)
      embed=16 if tiny else 128,  # embedding size
  ))

  config.optim = ml_collections.ConfigDict(dict(
      lr=2e-3,  # AdamW peak learning rate
      warmup_steps=1 if tiny else 200,  # linear warm-up from 0
      weight_decay=5e-4,  # decoupled weight decay (ArcFace's 5e-4)
      beta1=0.9,  # Adam betas
      beta2=0.999,  # Adam second-moment decay
  ))

  config.eval = ml_collections.ConfigDict(dict(
      first_identity=30 if tiny else 9_000,  # held-out identities: [first_identity, data.num_identities)
      num_pairs=20 if tiny else 1_000,  # verification pairs (half same identity)
      seed=0,  # pair sampling seed
  ))
  return config
