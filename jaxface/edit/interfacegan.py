"""InterFaceGAN's editing core (Shen et al., CVPR 2020): boundaries, conditional projection, interpolation.

Everything here is host-side numpy on small arrays: latent codes [N, d] and their attribute scores [N, 1].
The procedure is the original's (genforce/interfacegan `utils/manipulator.py`), restated from its maths:

  train_boundary     sort by score; the top and bottom `chosen` codes (a ratio of N, or a count, capped at N // 2)
                     are positives / negatives, each split 70/30 into train / validation; the middle codes are the
                     "remaining" set, labelled by the midpoint (max + min) / 2 of the scores. A linear C-SVM
                     (C = 1, hinge loss, unregularised intercept: scikit-learn's SVC(kernel="linear"), as the
                     original) is fitted on the train split; the boundary is its weight vector scaled to unit norm, shape (1, d), float32,
                     and the intercept is DROPPED: the hyperplane passes through the origin.
  project_boundary   conditional editing: remove from the primal normal its component in the span of the
                     condition normals (closed forms for 1 and 2 conditions, a linear solve for >= 3).
  linear_interpolate (1, d) codes (Z, W): outputs at ABSOLUTE signed distances linspace(start, end, steps) from the
                     hyperplane; (1, L, d) codes (W+): RELATIVE offsets, the same on every layer. The asymmetry is
                     the original's, kept on purpose (edit.py users rely on it).

Deviations, all documented where they happen: shuffles take an explicit seed (the original's np.random is
unseeded); `invalid_value` drops whole rows (the original's masking only works for d = 1); and the optional
`center` mode for W.

Centred mode: W codes have mean w_avg != 0, so a hyperplane through the origin makes "distance 3" meaningless in W.
Because the SVM intercept is not regularised, translating the codes leaves the fitted normal unchanged (the tests
check this); what `center` changes is where distance 0 lies: `info["offset"] = n . center`, and
`linear_interpolate(..., offset=info["offset"])` measures distances from the plane through the centre.
"""

import numpy as np

from jaxface.errors import UserError


# ---------------------------------------------------------------------------------------------------------------
# Latents


# ---------------------------------------------------------------------------------------------------------------
# The linear SVM: scikit-learn's SVC(kernel="linear"), as the original

def fit_linear_svm(x, y, C=1.0, tol=1e-3):
  """Soft-margin linear SVM: min_w,b 1/2 |w|^2 + C sum_i max(0, 1 - y_i (w.x_i + b)), b not regularised, fitted by
  scikit-learn's SVC(kernel="linear") (libsvm; tol is its stopping tolerance).

  x: [n, d]; y: [n] in {-1, +1} (or any labels, > 0 = positive). Returns (w [d] float64, b float,
  info dict(iterations)).
  """
  from sklearn import svm  # function-local: scikit-learn takes a second or two to import
  x = np.asarray(x, np.float64)
  positive = np.asarray(y) > 0
  if not (np.any(positive) and np.any(~positive)):
    raise UserError("the SVM needs both positive and negative samples; check the scores and chosen_num_or_ratio.")
  clf = svm.SVC(kernel="linear", C=C, tol=tol).fit(x, positive.astype(np.int64))
  return clf.coef_.reshape(-1).astype(np.float64), float(clf.intercept_[0]), {"iterations": int(clf.n_iter_[0])}


# ---------------------------------------------------------------------------------------------------------------
# Boundaries

def select_samples(scores, chosen_num_or_ratio=0.02, split_ratio=0.7, seed=0):
  """The original's sample selection, as indices into `scores` ([N, 1] or [N]).

  Returns dict(pos_train, pos_val, neg_train, neg_val, remaining, remaining_labels, chosen_num, threshold).
  """
  s = np.asarray(scores, np.float64).reshape(-1)
  n = s.shape[0]
  if chosen_num_or_ratio <= 0:
    raise UserError(f"chosen_num_or_ratio must be positive, got {chosen_num_or_ratio}")
  if not 0 < split_ratio <= 1:
    raise UserError(f"split_ratio must lie in (0, 1], got {split_ratio}")
  order = np.argsort(s, kind="stable")[::-1]  # descending
  chosen = int(n * chosen_num_or_ratio) if chosen_num_or_ratio <= 1 else int(chosen_num_or_ratio)
  chosen = min(chosen, n // 2)
  train_num = int(chosen * split_ratio)
  if train_num < 1:
    raise UserError(f"{n} samples with chosen_num_or_ratio={chosen_num_or_ratio} and split_ratio={split_ratio} leave "
                    f"no training sample per class; generate more samples or raise the ratio.")
  rng = np.random.default_rng(seed)
  top, bottom = order[:chosen], order[n - chosen:]
  p, q = rng.permutation(chosen), rng.permutation(chosen)
  middle = order[chosen:n - chosen]
  threshold = (s[order[0]] + s[order[-1]]) / 2  # midpoint of max and min, as the original (not 0, not the median)
  return dict(pos_train=top[p[:train_num]], pos_val=top[p[train_num:]], neg_train=bottom[q[:train_num]],
              neg_val=bottom[q[train_num:]], remaining=middle, remaining_labels=(s[middle] >= threshold),
              chosen_num=chosen, threshold=float(threshold))


def train_boundary(latent_codes, scores, chosen_num_or_ratio=0.02, split_ratio=0.7, invalid_value=None, *,
                   seed=0, center=None, C=1.0, tol=1e-3, return_info=False):
  """Fits the boundary of one attribute. latent_codes [N, d] (or [N, L, d], flattened: one W+ boundary over all
  layers); scores [N, 1]. Returns the unit normal (1, d) float32, and with return_info=True also a dict with the
  split sizes, validation and remaining accuracies (intercept included, like the original's `classifier.predict`),
  the SVM intercept and `offset` (n . center, 0 without `center`).

  center: None (the original: plane through the origin), "mean" (the mean of the codes) or a [d] vector (e.g.
  the generator's w_avg); see the module docstring.
  """
  codes = np.asarray(latent_codes)
  scores = np.asarray(scores)
  if codes.ndim not in (2, 3) or codes.shape[0] == 0:
    raise UserError(f"latent codes must have shape [N, d] (or [N, L, d] for W+), got {codes.shape}")
  n = codes.shape[0]
  codes = codes.reshape(n, -1).astype(np.float64)
  if scores.ndim != 2 or scores.shape != (n, 1):
    raise UserError(f"scores must have shape [N, 1] = [{n}, 1] to match the {n} latent codes, got {scores.shape}. "
                    f"Save one attribute's scores per file (generate_data writes <attribute>_scores.npy).")
  if not (np.all(np.isfinite(codes)) and np.all(np.isfinite(scores.astype(np.float64)))):
    raise UserError("latent codes or scores contain NaN/Inf; regenerate them (or mark them with --invalid_value).")
  if invalid_value is not None:
    keep = scores[:, 0] != invalid_value
    codes, scores = codes[keep], scores[keep]
  d = codes.shape[1]
  sel = select_samples(scores, chosen_num_or_ratio, split_ratio, seed)
  if center is None:
    c = np.zeros(d)
  elif isinstance(center, str) and center == "mean":
    c = codes.mean(0)
  else:
    c = np.asarray(center, np.float64).reshape(-1)
    if c.shape != (d,):
      raise UserError(f"center has {c.size} values but the latent codes have {d} dimensions")
  x = codes - c
  train_x = x[np.concatenate([sel["pos_train"], sel["neg_train"]])]
  train_y = np.concatenate([np.ones(len(sel["pos_train"])), -np.ones(len(sel["neg_train"]))])
  w, b, fit = fit_linear_svm(train_x, train_y, C=C, tol=tol)
  norm = np.linalg.norm(w)
  if not norm > 0:
    raise UserError("the SVM found no direction (all weights zero): the positive and negative codes are identical; "
                    "check that the scores vary across samples.")
  boundary = (w / norm).reshape(1, d).astype(np.float32)
  boundary = boundary / np.linalg.norm(boundary)
  if not return_info:
    return boundary

  def accuracy(idx, labels):
    if len(idx) == 0:
      return None
    return float(np.mean(((x[idx] @ w + b) > 0) == labels))

  val_idx = np.concatenate([sel["pos_val"], sel["neg_val"]])
  val_labels = np.concatenate([np.ones(len(sel["pos_val"]), bool), np.zeros(len(sel["neg_val"]), bool)])
  info = dict(num_samples=int(codes.shape[0]), chosen_num=sel["chosen_num"], train_num=len(sel["pos_train"]),
              val_num=len(sel["pos_val"]), remaining_num=len(sel["remaining"]),
              remaining_positive=int(sel["remaining_labels"].sum()), threshold=sel["threshold"],
              val_accuracy=accuracy(val_idx, val_labels),
              remaining_accuracy=accuracy(sel["remaining"], sel["remaining_labels"]),
              intercept=float(b / norm), offset=float(boundary[0].astype(np.float64) @ c), **fit)
  return boundary, info


def check_boundary(b, name, dim=None):
  b = np.asarray(b, np.float64)
  if b.ndim != 2 or b.shape[0] != 1 or (dim is not None and b.shape[1] != dim):
    want = f"(1, {dim})" if dim is not None else "(1, d)"
    raise UserError(f"{name} has shape {b.shape}; boundaries are unit normals of shape {want}, as train_boundary "
                    f"saves them (boundary.npy).")
  norm = np.linalg.norm(b)
  if not np.isfinite(norm) or norm == 0:
    raise UserError(f"{name} is zero or not finite; retrain it with train_boundary.")
  if abs(norm - 1) > 1e-3:
    raise UserError(f"{name} has norm {norm:.4f}; boundaries must be unit normals (as train_boundary saves them).")
  return b


def project_boundary(primal, *conditions):
  """The primal normal with its component in span(conditions) removed, renormalised: editing along it leaves the
  condition attributes' distances unchanged. All inputs (1, d) unit normals; returns (1, d) float64.

  1 condition: n - (n.c) c. 2 conditions: the original's closed form, including its 1e-8 stabiliser
  in the denominators. >= 3: the least-squares coefficients x from (C C') x = C n' (the original's
  generalisation), n - x'C.
  """
  primal = check_boundary(primal, "primal boundary")
  conds = [check_boundary(c, f"condition boundary {k + 1}", primal.shape[1]) for k, c in enumerate(conditions)]
  if not conds:
    return primal
  if len(conds) == 1:
    (c,) = conds
    new = primal - (primal @ c.T) * c
  elif len(conds) == 2:
    new = _project_two_closed_form(primal, *conds)
  else:
    new = _project_solve(primal, conds)
  norm = np.linalg.norm(new)
  if norm < 1e-6:
    raise UserError("the primal boundary lies in the span of the conditions: nothing is left to edit once they "
                    "are held fixed. Drop a condition.")
  return new / norm


def _project_two_closed_form(primal, c1, c2):
  p1, p2, c12 = (primal @ c1.T).item(), (primal @ c2.T).item(), (c1 @ c2.T).item()
  alpha = (p1 - p2 * c12) / (1 - c12 ** 2 + 1e-8)
  beta = (p2 - p1 * c12) / (1 - c12 ** 2 + 1e-8)
  return primal - alpha * c1 - beta * c2


def _project_solve(primal, conds):
  cmat = np.concatenate(conds, 0)  # [k, d]
  gram = cmat @ cmat.T
  if np.linalg.matrix_rank(gram, tol=1e-6) < len(conds):
    raise UserError("the condition boundaries are linearly dependent (one is a combination of the others); drop "
                    "the redundant one.")
  coef = np.linalg.solve(gram, cmat @ primal.T)  # [k, 1]
  return primal - coef.T @ cmat


# ---------------------------------------------------------------------------------------------------------------
# Editing

def linear_interpolate(latent_code, boundary, start_distance=-3.0, end_distance=3.0, steps=10, *, offset=0.0,
                       layers=None):
  """Edits one code along `boundary` (unit normal).

  latent_code (1, d) (Z or W): returns [steps, d] codes whose signed distance n.x - offset to the hyperplane is
    exactly linspace(start, end, steps): ABSOLUTE distances (the original's edit.py; offset = 0 is its plane
    through the origin). latent_code (1, L, d) (W+): returns [steps, L, d] = code + linspace * n on every layer
    (or only the indices in `layers`): RELATIVE offsets, as the original. A W+ boundary may be (1, d) (the same
    normal on every layer) or (1, L * d) (one flattened W+ boundary).
  """
  code = np.asarray(latent_code, np.float64)
  if code.ndim not in (2, 3) or code.shape[0] != 1:
    raise UserError(f"linear_interpolate takes one code of shape (1, d) or (1, L, d), got {code.shape}")
  d = code.shape[-1]
  b = np.asarray(boundary, np.float64)
  if code.ndim == 3 and b.shape == (1, code.shape[1] * d):
    b = b.reshape(1, code.shape[1], d)
  else:
    b = check_boundary(b, "boundary", d)
  if steps < 1:
    raise UserError(f"steps must be >= 1, got {steps}")
  linspace = np.linspace(start_distance, end_distance, int(steps))
  if code.ndim == 2:
    shift = linspace - (code @ b.T - offset)[0, 0]
    return (code + shift[:, None] * b).astype(np.float32)
  if layers is not None:
    mask = np.zeros((1, code.shape[1], 1))
    mask[:, list(layers)] = 1.0
    b = b.reshape(1, -1, d) * mask if b.ndim == 3 else b[:, None, :] * mask
  b = b.reshape(1, -1, d)
  return (code + linspace[:, None, None] * b).astype(np.float32)


def shift_codes(codes, boundary, distance, layers=None):
  """Relative edit of a batch: codes + distance * n (per layer for W+ codes [N, L, d]); used by the re-scoring
  analysis, where every sample moves by the same amount (absolute distances would send all to one plane)."""
  codes = np.asarray(codes, np.float64)
  b = np.asarray(boundary, np.float64).reshape(-1)
  if codes.ndim == 3 and b.shape[0] == codes.shape[1] * codes.shape[2]:
    b = b.reshape(codes.shape[1], codes.shape[2])
  elif b.shape[0] != codes.shape[-1]:
    raise UserError(f"boundary of size {b.shape[0]} does not fit codes of shape {codes.shape}")
  if codes.ndim == 3:
    mask = np.ones((codes.shape[1], 1)) if layers is None else np.isin(np.arange(codes.shape[1]), layers)[:, None]
    return (codes + distance * b * mask).astype(np.float32)
  return (codes + distance * b).astype(np.float32)


def rescoring_matrix(before, after):
  """Mean score change per (edited boundary, measured attribute): before [N, A], after [B, N, A] -> [B, A].
  Rows are edits, columns attributes; a large diagonal and a small off-diagonal mean disentangled boundaries."""
  before = np.asarray(before, np.float64)
  after = np.asarray(after, np.float64)
  return (after - before[None]).mean(axis=1)


def dominance_margins(matrix, score_std, edits, attributes):
  """Diagonal dominance of a re-scoring matrix, in score-std units so that attributes on different scales compare.

  matrix [B, A] (rescoring_matrix), score_std [A] (the attributes' spread before editing), edits / attributes: the
  row and column names. The square block pairs each edit with the attribute of the same name (edits without one
  are left out). Returns dict(names, standardised [K, K], rows [K], cols [K]): a row margin is |diagonal| / the sum
  of |off-diagonal| entries in that row (how much more the edit moves its own attribute than all others together),
  a column margin the same down the column (how much more its own edit moves that attribute than all other edits).
  Margins > 1 everywhere = strictly diagonal-dominant by rows and by columns."""
  matrix, score_std = np.asarray(matrix, np.float64), np.asarray(score_std, np.float64)
  names = [e for e in edits if e in attributes]
  if not names:
    raise UserError(f"no edit is named after a measured attribute (edits {list(edits)}, attributes "
                    f"{list(attributes)}); name the boundaries NAME=PATH with NAME an attribute to get margins.")
  rows, cols = [list(edits).index(n) for n in names], [list(attributes).index(n) for n in names]
  standardised = matrix[np.ix_(rows, cols)] / np.maximum(score_std[cols], 1e-12)
  a = np.abs(standardised)
  diag = np.diag(a)
  with np.errstate(divide="ignore"):  # no off-diagonal change at all: an infinite margin
    return dict(names=names, standardised=standardised, rows=diag / (a.sum(1) - diag), cols=diag / (a.sum(0) - diag))
