r"""DiscoFaceGAN: a StyleGAN2 generator of λ (identity, expression, pose, light) ‖ ε, trained with imitative and
contrastive losses against a 3DMM render of λ (jaxface/train/disco.py; Deng et al., CVPR 2020).

Presets (the string after the colon):
  default       A newcomer's first run: the synthetic world at 32x32, small widths, the CPU recipe below, 2 CPU
                cores, <= 15 minutes including training the frozen experts (priors, R-Net, identity net) into
                $JAXFACE_CACHE/experts/ on the first run (later runs reuse them). Stage 1 only (16 kimg, the
                first 10 imitation alone): the contrastive stage starts after the preset's end (cpu64 runs it).
                  python -m jaxface.main --config configs/disco.py --workdir workdirs/disco
                Leaves checkpoints/, samples/ (fake | render pairs, factor sweeps), eval/step_N.json: blurred heads
                that turn with the requested yaw (R-Net yaw error 3.2 deg median, 5.6 by an independent R-Net;
                a frontal-only generator scores 13-16); see docs/results_disco.md.
  cpu64         The CPU reference run: 64x64, the CPU recipe, imitation alone to 36 kimg, the adversarial phase
                with the expert terms to 56 kimg, then the contrastive stage to 66 kimg (8,250 steps); resumable;
                2 h 05 min on 2 shared CPU cores from an empty cache, experts included (independent R-Net: yaw
                2.9 deg, pitch 2.3). Against the same steps without the stage, the stage makes light edits leave
                the other factors alone (Disentanglement Score 130 against 95, intervals apart); 250 steps more of
                it under-turn heads at +-30 deg (docs/results_disco.md). The bundled pretrained/disco_cpu64 is this
                recipe's generator; its first 56 kimg had an earlier form of stage 1 (docs/results_disco.md).
                  python -m jaxface.main --config configs/disco.py:cpu64 --workdir workdirs/disco_cpu64
CPU recipe (default, cpu64, tiny), each departure from the released recipe measured in docs/results_disco.md:
  λ standardised with equal energy per factor (model.lambda_norm="factor"), 2 mapping layers into a 256-wide W
  at the full learning rate (released: raw λ, 8 layers, lr x 0.01); Adam(0.003, β1 0.5) for G; R1 every 16
  steps (released: every step); the pixel phase compares the whole frame with the render on black (pix_mask
  "full", at full resolution) and imitates the image difference of pose pairs (w_pix_diff) with D at rest
  (pixel_phase_gan); afterwards the masked pixel loss stays on (w_pix_late), the pose pairs' difference counts
  only where both renders agree on face or background (pix_diff_mask "agree": face minus black painted dark
  bands beside turned heads) and the landmark loss weighs 10x the released (w_lm 5000, also in stage 2). The
  R-Net expert also learns from bare renders (render_mix 0.5): one trained on world images alone read these
  render-like fakes' pitch ~8 deg low, and the landmark loss taught the generator that bias. Every preset's
  render targets are shown through the world's display gamma (synthetic sources), as its real images are.
GPU and real-data presets:
  synthetic128  The synthetic world at 128x128 with StyleGAN2 widths for one GPU; experts are trained to their
  synthetic256  GPU presets first (or pass --config.experts.rnet=WORKDIR etc. for ones you trained).
                  python -m jaxface.main --config configs/disco.py:synthetic128 --workdir gs://BUCKET/disco128
  ffhq256       The released recipe on real data (user-supplied): FFHQ prepared with
                `python -m jaxface.data.prepare --align`, BFM, Deep3DFaceRecon R-Net and ArcFace weights, priors
                from configs/priors.py:bfm on R-Net coefficients of the data, a parser workdir for stage 2's hair
                term. Latents 128/32/16/3 + 32 noise, w_lm 500 -> 100, w_gamma 10, w_id 3 (clip 0.3), w_skin 20,
                w_pix 20 in the pixel phase, stage 2 w_exp_warp 10, w_gamma_change 10 (hair 1, id 2, lm 1000), R1 10
                every step, Adam(0, 0.99), EMA 10 kimg, batch 16, 20,000 kimg (stage 2 from 15,000).
                  python -m jaxface.main --config configs/disco.py:ffhq256 --workdir gs://BUCKET/disco256 \
                    --config.data.path=/data/ffhq_disco256 --config.experts.face_model=/data/BFM_model_front.mat \
                    --config.experts.rnet=/data/epoch_20.pth --config.experts.idnet=/data/backbone.pth \
                    --config.experts.priors=workdirs/priors_bfm --config.experts.parser=workdirs/parser
                Hardware: 8 GPUs for days (the original: 4 P100 x 12 days); bench with
                `python -m jaxface.bench.disco --config configs/disco.py:ffhq256`.
  tiny          16x16, a few steps through all three phases, minimal experts: for tests.
Other arguments: res=R overrides the resolution of the synthetic presets.
"""

import ml_collections

from configs import common

PRESETS = ("default", "cpu64", "synthetic128", "synthetic256", "ffhq256", "tiny")


def get_config(arg=""):
  args = common.parse_arg(arg, preset="default", res=0)
  if args.preset not in PRESETS:
    from jaxface.errors import ConfigError
    raise ConfigError(f"unknown preset {args.preset!r} for configs/disco.py; use one of {', '.join(PRESETS)}.")
  preset = args.preset
  tiny = preset == "tiny"
  small, real = preset in ("default", "cpu64", "tiny"), preset == "ffhq256"
  cpu = small  # the CPU recipe (module docstring)
  res = args.res or {"default": 32, "cpu64": 64, "synthetic128": 128, "synthetic256": 256, "ffhq256": 256,
                     "tiny": 16}[preset]

  config = ml_collections.ConfigDict()
  config.trainer = "disco"  # jaxface/train/<trainer>.py
  config.config_file = ""  # filled in by jaxface.config with the file:arg this config came from
  config.batch_size = 8 if small else 16 if real else 32  # global batch (released: 16 at 256x256 on 4 GPUs)
  config.total_steps = {"default": 2000, "cpu64": 8250}.get(preset, 20_000_000 // config.batch_size)  # steps
  common.mesh_and_sharding(config)
  # Frozen experts and the face model stay whole on every device (they are read, never updated).
  config.sharding_rules = [("frozen/.*", "replicate"), (".*", "fsdp")]
  config.compute_dtype = "float32" if small else "bfloat16"
  common.run_blocks(config)
  config.ckpt.every_steps = 250 if small else 5000
  config.log.every_steps = 25 if small else 200
  config.log.samples_every_steps = 500 if small else 5000

  config.data = common.data_block(res, kind="folder" if real else "synthetic")

  config.model = ml_collections.ConfigDict(dict(
      resolution=res,  # output resolution (power of two)
      noise_dim=32,  # ε appended to λ (released: 32)
      w_dim=256 if cpu else 512,  # W size
      mapping_layers=2 if cpu else 8,  # mapping depth (released: 8, lr multiplier 0.01, no input normalization)
      mapping_lr_mul=1.0 if cpu else 0.01,  # mapping learning-rate multiplier
      channel_base=16384,  # channels at resolution r = min(channel_base // r, channel_max)
      d_channel_base=16384,  # the same for the discriminator
      channel_max=64 if small else 512,  # widest layer
      mbstd_group_size=4,  # minibatch-stddev group (released: 4)
      # "" raw λ (released; pose is ~0.2% of the input energy and barely reaches w), "dim" standardised per
      # dimension, "factor" standardised with equal energy per factor (runs/disco_experts.lambda_stats).
      lambda_norm="factor" if cpu else "",  # λ's transform before the mapping (see above)
  ))

  lr = 0.002 if res >= 256 else 0.0015 if res >= 128 else 0.001  # released per-resolution rates
  g_lr, g_beta1 = (0.003, 0.5) if cpu else (lr, 0.0)
  config.optim_G = ml_collections.ConfigDict(dict(lr=g_lr, beta1=g_beta1, beta2=0.99, eps=1e-8))  # Adam for G
  config.optim_D = ml_collections.ConfigDict(dict(lr=lr, beta1=0.0, beta2=0.99, eps=1e-8))  # Adam for D

  config.schedule = ml_collections.ConfigDict(dict(
      # Pixel phase: only w_pix·masked pixel loss imitates (released: while the progressive resolution <= 32,
      # i.e. 3,000 kimg); afterwards the expert terms. Stage 2 adds the contrastive pairs (released: 15,000 kimg).
      pix_kimg={"default": 10.0, "cpu64": 36.0}.get(preset, 3000.0),  # thousands of images in the pixel phase
      stage2_kimg={"default": 1e9, "cpu64": 56.0}.get(preset, 15000.0),  # kimg before stage 2 starts (default: never)
      pairs=2 if small else 4,  # contrastive pairs per changed factor per step (released: 2 per GPU, 8 total)
  ))

  config.loss = ml_collections.ConfigDict(dict(
      w_pix=20.0,  # masked pixel loss in the pixel phase
      w_pix_late=20.0 if cpu else 0.0,  # full-size masked pixel loss after the pixel phase (released: 0)
      pix_res=res if cpu else 32,  # resolution the pixel loss compares at (released: progressive res <= 32)
      w_pix_diff=120.0 if cpu else 0.0,  # pose pairs' image difference imitates the renders' (released: 0 = off)
      # "agree" leaves out pixels where one render has face and the other black background: imitating that
      # difference painted dark bands beside turned heads. The pixel phase always uses the whole frame.
      pix_diff_mask="agree" if cpu else "frame",  # after the pixel phase, where it counts: "frame" | "agree"
      pix_mask="full" if cpu else "face",  # pixel phase: "face" region (released) or "full" frame vs render on black
      pixel_phase_gan=not cpu,  # adversarial loss and D updates in the pixel phase (released: yes)
      w_lm=5000.0 if cpu else 500.0,  # landmark loss, stage 1 (released 500; the CPU recipe leans on it x10)
      # The CPU recipe keeps stage 1's landmark weight (the released recipe drops it 5x): at 1000 the stage cost 3
      # deg of yaw error at 64x64, at 5000 about 0.5.
      w_lm_stage2=5000.0 if cpu else 100.0,  # landmark loss, stage 2 (released 100)
      w_gamma=10.0,  # SH lighting re-estimated by R-Net
      w_id=3.0,  # identity: masked fake vs render, 1 - cos clipped below at id_clip
      # 1 - cos is clipped below at this (released 0.3 for FaceNet: "need clip! IMPORTANT"). The synthetic identity
      # net is tighter (same identity 1 - cos ~0.04, different ~0.33), so 0.3 would silence the loss there.
      # cpu64: 0, with an identity expert that also learned from bare renders (its bootstrap's render_mix): against
      # that net the render-like fakes' 1 - cos is 0.001-0.02, so a floor of 0.1 left the term without gradient.
      id_clip=0.3 if real else 0.0 if preset == "cpu64" else 0.1,  # identity loss floor (see above)
      w_skin=20.0,  # mean colour inside the render mask
      w_exp_warp=10.0,  # stage 2: expression pair, flow-warped consistency outside the changed face
      w_gamma_change=10.0,  # stage 2: lighting pair, hair + identity + landmark consistency
      light_hair=1.0,  # inside the lighting pair (released 1, 2, 1000)
      light_id=2.0,  # identity consistency inside the lighting pair
      light_lm=1000.0,  # landmark consistency inside the lighting pair
      w_pose=0.0,  # beyond the released code: pose pair (identity + visible-face warp); 0 = off
      pose_id=2.0,  # its identity weight
      pose_warp=1.0,  # its warp weight
      w_id_contrast=0.0,  # beyond the released code: identity contrast on expression (and pose) pairs; 0 = off
      r1_gamma=10.0,  # R1 weight (released 10)
      r1_interval=16 if cpu else 1,  # R1 every N steps (released: every step; lazy on CPU, as StyleGAN2)
      ema_kimg=1.0 if small else 10.0,  # G_ema half-life in thousands of images (released 10)
      ema_rampup=0.05 if small else 0.0,  # half-life ramp-up as a fraction of images seen (0 = off, as released)
      mirror=True,  # flip reals horizontally with probability 1/2 (released)
  ))

  config.experts = ml_collections.ConfigDict(dict(
      source="bfm" if real else "synthetic",  # synthetic: jaxface-trained on the world; bfm: user-supplied files
      face_model="",  # bfm: BFM_model_front.mat (Deep3DFaceRecon) or BFM_model_front_gan.mat
      priors="",  # workdir of a configs/priors.py run (empty + synthetic: trained into the cache)
      rnet="",  # synthetic: configs/rnet.py workdir (empty: bootstrap); bfm: Deep3DFaceRecon epoch_20.pth
      idnet="",  # synthetic: configs/idnet.py workdir (empty: bootstrap); bfm: ArcFace .onnx / .pth
      parser="",  # configs/parser.py workdir (needed only for stage 2's hair term; empty + synthetic: bootstrap)
      use_latent_fit=True,  # sample z through the priors' fitted latent Gaussian when the run has one
      configs="",  # filled in at start: JSON of the experts' training configs (makes the run self-contained)
      bootstrap=_bootstrap(preset, res),  # what an empty synthetic expert is trained with
  ))

  config.truncation = ml_collections.ConfigDict(dict(
      psi=0.7,  # attribute-preserving truncation: identity part of w pulled toward the mean identity
      layers=0,  # first N W layers truncated; 0 = the released 8 of 14, scaled to this resolution
      w_bar_samples=4096 if small else 50_000,  # samples for the mean identity w (released 50,000)
  ))

  config.eval = ml_collections.ConfigDict(dict(
      groups=8 if small else 64,  # DS: groups (all factors but one fixed) per factor
      group_size=4 if small else 8,  # DS: images per group
      control_samples=64 if small else 1000,  # control accuracy / identity consistency samples
      fid_samples=0 if small else 10_000,  # FID fakes (0 = skip; Inception from jaxface.assets)
      batch_size=16 if small else 64,  # images per evaluation call
      psi=1.0,  # truncation for the metrics (1 = none, as the released FID); sweeps use truncation.psi
      sweep_identities=4,  # rows of the factor-sweep grids written to samples/
      sweep_steps=7,  # columns
  ))
  if tiny:
    _tiny(config)
  return config


def _tiny(config):
  """Test sizes: every phase runs within 4 steps of batch 4."""
  config.batch_size, config.total_steps = 4, 4
  config.ckpt.every_steps, config.log.every_steps, config.log.samples_every_steps = 2, 1, 2
  config.log.num_samples = 4
  config.data.num_identities = 200
  config.model.update(dict(noise_dim=8, w_dim=16, mapping_layers=2, channel_max=16))
  config.schedule.update(dict(pix_kimg=0.004, stage2_kimg=0.008, pairs=1))
  config.loss.pix_res = 8
  config.truncation.w_bar_samples = 64
  config.eval.update(dict(groups=2, group_size=2, control_samples=4, batch_size=4, sweep_identities=2,
                          sweep_steps=3))


# Expert bootstraps per preset: (config spec, field overrides as "group/field": value). The default preset's are
# sized so that all four train in a few minutes on 2 CPU cores; the GPU presets' are the experts' own long runs.
BOOTSTRAPS = {
    "default": {
        "priors": ("configs/priors.py:synthetic", {
            "total_steps": 1500, "data/num_samples": 4000, "data/heldout_samples": 500,
            "data/heldout_identities": 500, "eval/num_samples": 1000, "eval/test_rows": 200,
            "eval/permutations": 50, "log/every_steps": 250, "ckpt/every_steps": 1500}),
        "rnet": ("configs/rnet.py:small", {
            "total_steps": 150, "batch_size": 16, "model/stats_samples": 1024, "optim/warmup_steps": 20,
            "eval/num_samples": 128, "log/every_steps": 25, "ckpt/every_steps": 150, "render_mix": 0.5}),
        "idnet": ("configs/idnet.py:synthetic,res=32", {
            "total_steps": 100, "batch_size": 16, "idnet/num_train_identities": 100, "optim/warmup_steps": 10,
            "eval/num_pairs": 100, "log/every_steps": 25, "ckpt/every_steps": 100}),
        "parser": ("configs/parser.py:small", {
            "total_steps": 100, "batch_size": 16, "optim/warmup_steps": 10, "eval/num_samples": 64,
            "log/every_steps": 25, "ckpt/every_steps": 100}),
    },
}
# The reference run's experts: the default's, trained longer (its R-Net also measures it).
BOOTSTRAPS["cpu64"] = {name: (spec, dict(overrides)) for name, (spec, overrides) in BOOTSTRAPS["default"].items()}
for _name, _extra in {"rnet": {"total_steps": 1500, "optim/warmup_steps": 50, "eval/num_samples": 256,
                               "log/every_steps": 100, "ckpt/every_steps": 500},
                      "idnet": {"total_steps": 600, "idnet/num_train_identities": 400, "optim/warmup_steps": 30,
                                "eval/num_pairs": 200, "log/every_steps": 100, "ckpt/every_steps": 300,
                                "render_mix": 0.5},
                      "parser": {"total_steps": 300, "log/every_steps": 50, "ckpt/every_steps": 300}}.items():
  BOOTSTRAPS["cpu64"][_name][1].update(_extra)
BOOTSTRAPS.update({
    "tiny": {
        "priors": ("configs/priors.py:tiny", {"total_steps": 10}),
        "rnet": ("configs/rnet.py:small,res=16", {
            "total_steps": 2, "batch_size": 8, "model/width": 8, "model/stats_samples": 64, "eval/num_samples": 8,
            "eval/batch_size": 8, "ckpt/every_steps": 2}),
        "idnet": ("configs/idnet.py:tiny", {}),
        "parser": ("configs/parser.py:small,res=32", {
            "total_steps": 2, "batch_size": 8, "model/encoder_width": 8, "model/width": 8, "eval/num_samples": 8,
            "eval/batch_size": 8, "ckpt/every_steps": 2}),
    },
    "gpu": {
        "priors": ("configs/priors.py:synthetic", {}),
        "rnet": ("configs/rnet.py:small,res={r}", {"total_steps": 30_000}),
        "idnet": ("configs/idnet.py:synthetic", {}),
        "parser": ("configs/parser.py:small,res={r}", {"total_steps": 20_000}),
    },
})


def _bootstrap(preset, res):
  """Expert configs trained into the cache when a synthetic expert's workdir is empty."""
  table = BOOTSTRAPS.get(preset, BOOTSTRAPS["gpu"])
  spec = {name: (s.format(r=min(res, 128)), o) for name, (s, o) in table.items()}
  return ml_collections.ConfigDict(dict(
      priors=spec["priors"][0],  # factor VAEs (configs/priors.py spec)
      priors_overrides=spec["priors"][1],  # its field overrides, "group/field": value
      rnet=spec["rnet"][0],  # R-Net (configs/rnet.py spec)
      rnet_overrides=spec["rnet"][1],  # its field overrides
      idnet=spec["idnet"][0],  # identity net (configs/idnet.py spec)
      idnet_overrides=spec["idnet"][1],  # its field overrides
      parser=spec["parser"][0],  # face parser, hair probability for stage 2 (configs/parser.py spec)
      parser_overrides=spec["parser"][1],  # its field overrides
  ))
