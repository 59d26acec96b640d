"""ONNX model files read with the `onnx` package (protobuf parsing only; nothing is executed).

`read_units` turns an inference CNN graph into the ordered list of weight-carrying units a Flax port
needs: convs (with a following BatchNormalization folded into a per-channel affine), stand-alone
batch norms (as affines), PReLUs and fully connected layers. Exporters differ in whether they fold
BN into the preceding conv, keep bias-free convs, or emit Gemm vs MatMul+Add; all of these map to
the same units, so one Flax module (with conv bias + affine) covers every variant.
"""

import numpy as np

from jaxface.errors import AssetError

# Ops that carry no weights and only reshape/route tensors in the nets we port.
_PASSIVE = {"Add", "Flatten", "Reshape", "Identity", "Dropout", "Relu", "Shape", "Gather", "Unsqueeze",
            "Concat", "Constant", "Transpose", "Squeeze", "Cast"}


def _onnx():
  try:
    import onnx  # noqa: PLC0415  (optional dependency, only for users who bring ONNX weights)
    from onnx import numpy_helper  # noqa: PLC0415  (the optional onnx package, as above)
  except ImportError as e:
    raise AssetError("reading ONNX weights needs the `onnx` package: pip install onnx==1.23.2") from e
  return onnx, numpy_helper


def load_graph(path):
  """(nodes, initializers): nodes as dicts {op, name, inputs, outputs, attrs}; initializers as numpy."""
  onnx, numpy_helper = _onnx()
  try:
    model = onnx.load(path, load_external_data=False)
  except Exception as e:  # onnx raises DecodeError/ValueError subclasses on bad bytes
    raise AssetError(f"{path} is not a readable ONNX file ({type(e).__name__}: {e})") from e
  g = model.graph
  inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
  nodes = []
  for n in g.node:
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
    if n.op_type == "Constant" and "value" in attrs:
      inits[n.output[0]] = numpy_helper.to_array(attrs["value"])
    if n.op_type == "Identity" and n.input[0] in inits:  # exporters alias shared constants this way
      inits[n.output[0]] = inits[n.input[0]]
    nodes.append({"op": n.op_type, "name": n.name, "inputs": list(n.input), "outputs": list(n.output),
                  "attrs": attrs})
  return nodes, inits


def _bn_affine(node, inits):
  gamma, beta, mean, var = (inits[i].astype(np.float64) for i in node["inputs"][1:5])
  scale = gamma / np.sqrt(var + node["attrs"].get("epsilon", 1e-5))
  return scale.astype(np.float32), (beta - mean * scale).astype(np.float32)


def read_units(path):
  """Ordered units of an inference graph (see module docstring).

  Each unit: {'type': 'conv', 'kernel': OIHW, 'bias', 'scale', 'offset', 'stride', 'pads', 'group'},
  {'type': 'affine', 'scale', 'offset'}, {'type': 'prelu', 'alpha'}, {'type': 'fc', 'kernel': (in, out),
  'bias', 'scale', 'offset'}.
  """
  nodes, inits = load_graph(path)
  consumers = {}
  for n in nodes:
    for i in n["inputs"]:
      consumers.setdefault(i, []).append(n)
  units, folded = [], set()

  def follow_bn(n, unit, channels):
    """Folds a BatchNormalization that is the sole consumer of n's output into unit's affine."""
    nxt = consumers.get(n["outputs"][0], [])
    if len(nxt) == 1 and nxt[0]["op"] == "BatchNormalization":
      unit["scale"], unit["offset"] = _bn_affine(nxt[0], inits)
      folded.add(id(nxt[0]))
    else:
      unit["scale"], unit["offset"] = np.ones(channels, np.float32), np.zeros(channels, np.float32)

  for n in nodes:
    op = n["op"]
    if id(n) in folded:
      continue
    if op == "Conv":
      w = inits[n["inputs"][1]].astype(np.float32)
      b = inits[n["inputs"][2]].astype(np.float32) if len(n["inputs"]) > 2 and n["inputs"][2] else \
          np.zeros(w.shape[0], np.float32)
      a = n["attrs"]
      unit = {"type": "conv", "kernel": w, "bias": b, "stride": tuple(a.get("strides", (1, 1))),
              "pads": tuple(a.get("pads", (0, 0, 0, 0))), "group": int(a.get("group", 1))}
      if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise AssetError(f"{path}: Conv {n['name']} uses auto_pad, which this reader does not support")
      follow_bn(n, unit, w.shape[0])
      units.append(unit)
    elif op == "BatchNormalization":
      s, o = _bn_affine(n, inits)
      units.append({"type": "affine", "scale": s, "offset": o})
    elif op == "PRelu":
      units.append({"type": "prelu", "alpha": inits[n["inputs"][1]].astype(np.float32).reshape(-1)})
    elif op in ("Gemm", "MatMul"):
      w = inits[n["inputs"][1]].astype(np.float32)
      if op == "Gemm":
        a = n["attrs"]
        if a.get("transA", 0):
          raise AssetError(f"{path}: Gemm {n['name']} with transA is not supported")
        w = (w.T if a.get("transB", 0) else w) * a.get("alpha", 1.0)
        b = inits[n["inputs"][2]].astype(np.float32) * a.get("beta", 1.0) if len(n["inputs"]) > 2 else \
            np.zeros(w.shape[1], np.float32)
        last = n
      else:  # MatMul (+ Add of a bias initializer)
        nxt = consumers.get(n["outputs"][0], [])
        if len(nxt) == 1 and nxt[0]["op"] == "Add" and any(i in inits for i in nxt[0]["inputs"]):
          b = next(inits[i] for i in nxt[0]["inputs"] if i in inits).astype(np.float32).reshape(-1)
          last = nxt[0]
        else:
          b, last = np.zeros(w.shape[1], np.float32), n
      unit = {"type": "fc", "kernel": w, "bias": b}
      follow_bn(last, unit, w.shape[1])
      units.append(unit)
    elif op not in _PASSIVE:
      raise AssetError(f"{path}: op {op} ({n['name']}) is not supported by this converter; "
                       "export the network as a PyTorch state dict instead")
  return units
