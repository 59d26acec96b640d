"""The attribute predictor on held-out synthetic faces: glasses ROC AUC, hair-colour accuracy and R² of every
regressed attribute (the end-of-training evaluation of configs/attributes.py runs).
"""

import jax
import numpy as np

from jaxface.data import synthetic
from jaxface.data import synthetic_factors as sf
from jaxface.errors import ConfigError
from jaxface.runs.attributes import AttributeModel, REGRESSION, hair_luma, targets, world_record


def r2_score(pred, true):
  """Coefficient of determination 1 - SS_res / SS_tot (not the squared correlation: a biased predictor loses)."""
  pred, true = np.asarray(pred, np.float64), np.asarray(true, np.float64)
  ss_tot = ((true - true.mean()) ** 2).sum()
  return float(1.0 - ((true - pred) ** 2).sum() / ss_tot) if ss_tot > 0 else float("nan")


def roc_auc(scores, labels):
  """Area under the ROC curve = P(score of a random positive > score of a random negative), ties counted 1/2
  (the Mann-Whitney U statistic from average ranks). nan when one class is absent."""
  scores, labels = np.asarray(scores, np.float64), np.asarray(labels).astype(bool)
  n_pos, n_neg = int(labels.sum()), int((~labels).sum())
  if n_pos == 0 or n_neg == 0:
    return float("nan")
  order = np.argsort(scores, kind="mergesort")
  ranks = np.empty(len(scores), np.float64)
  ranks[order] = np.arange(1, len(scores) + 1)
  _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
  rank_sum = np.bincount(inverse, weights=ranks)
  ranks = (rank_sum / counts)[inverse]  # tied scores share their average rank
  return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def metrics_from(outputs, glasses, reg, hair):
  """Held-out metrics from the model's outputs (`AttributeModel.outputs`) and the truth (`targets`)."""
  glasses, reg, hair = np.asarray(glasses) > 0.5, np.asarray(reg, np.float64), np.asarray(hair)
  out = {"glasses_accuracy": float(((outputs["glasses_logit"] > 0) == glasses).mean()),
         "glasses_auc": roc_auc(outputs["glasses_logit"], glasses),
         "glasses_rate": float(glasses.mean()),
         "hair_accuracy": float((outputs["hair_logits"].argmax(-1) == hair).mean()),
         "hair_lightness_r2": r2_score(outputs["hair_lightness"], hair_luma()[hair])}
  for i, k in enumerate(REGRESSION):
    out[f"{k}_r2"] = r2_score(outputs["regression"][:, i], reg[:, i])
  out["yaw_median_error_deg"] = float(np.median(np.abs(outputs["regression"][:, -1] - reg[:, -1])))
  return out


def evaluate_model(model, num, start=10 ** 9, batch_size=64):
  """Scores `num` held-out world samples (indices from `start`) with a loaded model; returns metrics_from."""
  if num < 1:
    raise ConfigError(f"the number of held-out samples must be >= 1, got {num}")
  data_cfg = model.config.data
  world = sf.as_world_config(data_cfg)
  res = int(data_cfg.resolution)
  render = jax.jit(lambda f: synthetic.render_batch(f, res, data_cfg)["image"] * 2.0 - 1.0)
  outs, truth = [], []
  for s in range(0, num, batch_size):
    n = min(batch_size, num - s)
    recs = sf.stack([world_record(start + s + min(i, n - 1), world) for i in range(batch_size)])
    images = render({k: recs[k] for k in synthetic.RENDER_KEYS})
    outs.append({k: np.asarray(v)[:n] for k, v in model.outputs(images).items()})
    truth.append([t[:n] for t in targets(recs, np)])
  outputs = {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}
  glasses, reg, hair = (np.concatenate(t) for t in zip(*truth))
  return dict(metrics_from(outputs, glasses, reg, hair), num_samples=int(num), start=int(start))


def run(config, state, workdir):
  del workdir
  model = AttributeModel(config, {"params": state["params"], "batch_stats": state["batch_stats"]},
                         np.asarray(state["target_mean"]), np.asarray(state["target_std"]), int(state["step"]))
  return evaluate_model(model, config.eval.num_samples, config.eval.start, config.eval.batch_size)
