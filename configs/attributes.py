r"""Attribute predictor on the synthetic face world: image -> glasses, smile, hair colour, gender, age, skin tone,
key-light side, yaw.

The scorer InterFaceGAN needs (`--predictor world_attributes`, jaxface/train/attributes.py): a narrow ResNet-18
layout (models/resnet.Encoder) with one head per attribute, supervised by the world's labels
(synthetic_factors.attributes; yaw from the pose angles), images rendered inside each step.

Presets (the string after the colon):
  default   64x64, ResNet-18 layout at quarter width (16-32-64-128 channels), batch 32, 1200 steps, for CPU.
              python -m jaxface.main --config configs/attributes.py --workdir workdirs/attributes
            Hardware: 2 shared CPU cores. This is also the bootstrap `--predictor world_attributes` trains into
            $JAXFACE_CACHE/experts/attributes-<hash> on first use. Measured result in docs/results_interfacegan.md.
  tiny      32x32, width 8, 2 steps, coarse mesh; for tests only.
Measured (default preset, 2 shared CPU cores, 29 min under load; docs/results_interfacegan.md section 0),
held-out (world indices >= 10**9, WORKDIR/eval/step_N.json): hair-colour accuracy 0.97, hair-lightness R^2 0.99,
skin-tone R^2 0.93, light_x R^2 0.90, yaw R^2 0.97 (median error 2.3 deg), gender R^2 0.67, glasses AUC 0.65;
NOT learned: smile (R^2 0.0) and age (R^2 0.05), also not at 2400 steps with up-weighted losses or at width 32:
1-2 px cues at 64x64. Next to try: res=128 and many more steps (a GPU).
Other arguments: res=R (multiple of 32), width=W, e.g. configs/attributes.py:default,res=128.
"""

import ml_collections

from configs import common


def get_config(arg=""):
  args = common.parse_arg(arg, preset="default", res=0, width=0)
  if args.preset not in ("default", "tiny"):
    from jaxface.errors import ConfigError
    raise ConfigError(f"unknown preset {args.preset!r} for configs/attributes.py; use default or tiny.")
  tiny = args.preset == "tiny"
  res = args.res or (32 if tiny else 64)

  config = ml_collections.ConfigDict()
  config.trainer = "attributes"  # jaxface/train/<trainer>.py
  config.config_file = ""  # filled in by jaxface.config with the file:arg this config came from
  config.batch_size = 8 if tiny else 32  # global batch, split over all devices and hosts
  config.total_steps = 2 if tiny else 1200  # optimizer steps
  common.mesh_and_sharding(config)
  common.run_blocks(config)
  config.ckpt.every_steps = 2 if tiny else 400
  config.ckpt.async_save = not tiny
  config.log.every_steps = 1 if tiny else 25
  config.log.samples_every_steps = 10 ** 9  # the predictor makes no images; no sample grids
  if tiny:
    config.wandb.mode = "disabled"

  config.data = common.data_block(res)  # the synthetic world (kind=synthetic) is required: it has the labels
  if tiny:
    config.data.level = 0

  config.model = ml_collections.ConfigDict(dict(
      depth=18,  # encoder ResNet depth (18, 34, 50 or 101)
      width=args.width or (8 if tiny else 16),  # first-stage channels (64 = torchvision ResNet-18)
      stats_samples=256 if tiny else 4096,  # world samples estimating the regression targets' mean/std
  ))

  config.optim = ml_collections.ConfigDict(dict(
      lr=2e-3,  # AdamW peak learning rate
      warmup_steps=1 if tiny else 100,  # linear warm-up steps
      final_lr_fraction=0.02,  # cosine decay ends at lr * this
      weight_decay=1e-4,  # decoupled weight decay
      grad_clip=10.0,  # global-norm gradient clipping
  ))

  config.loss = ml_collections.ConfigDict(dict(
      w_glasses=1.0,  # binary cross-entropy of the glasses logit
      w_hair=1.0,  # 6-way cross-entropy of the hair colour (synthetic_factors.HAIR_COLOURS)
      w_smile=1.0,  # standardised MSE of the smile amount
      w_gender=1.0,  # standardised MSE of the gender-like factor
      w_age=1.0,  # standardised MSE of the age-like factor
      w_skin_tone=1.0,  # standardised MSE of the skin albedo's lightness coefficient
      w_light_x=1.0,  # standardised MSE of the key light's horizontal component
      w_yaw=1.0,  # standardised MSE of the yaw angle (degrees)
  ))

  config.eval = ml_collections.ConfigDict(dict(
      num_samples=8 if tiny else 1024,  # held-out samples scored at the end of training
      start=10 ** 9,  # first held-out world index (training draws indices below data.size)
      batch_size=8 if tiny else 64,  # images per evaluation call
  ))
  return config
