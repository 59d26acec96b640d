"""TFLite flatbuffers -> flat numpy params + a JSON op graph (for `jaxface.models.landmarks.run_graph`).

The flatbuffer is parsed with the `tflite` package (generated schema readers; nothing is executed).
Float constants (float32, or float16 behind DEQUANTIZE) become float32 params `t<tensor index>`, so the
network is differentiable in JAX; integer constants (pad amounts, shapes) go into the graph JSON and stay
static. The JSON holds, per op, its name, input/output tensor indices and decoded options, so running
the converted `.npz` needs neither `tflite` nor TensorFlow.
"""

import json

import numpy as np

from jaxface.errors import AssetError

# op name -> (options class name, [(json key, accessor)])
_PADDING = {0: "SAME", 1: "VALID"}
_ACT = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH"}
SUPPORTED = ("CONV_2D", "DEPTHWISE_CONV_2D", "PRELU", "RELU", "ADD", "MUL", "MAX_POOL_2D",
             "AVERAGE_POOL_2D", "PAD", "RESHAPE", "CONCATENATION", "DEQUANTIZE", "LOGISTIC")


def _tflite():
  try:
    import tflite  # noqa: PLC0415  (optional dependency, only for converting MediaPipe .tflite files)
  except ImportError as e:
    raise AssetError("converting .tflite files needs the `tflite` package: pip install tflite==2.18.0") from e
  return tflite


def _options(tfl, name, op):
  t = op.BuiltinOptions()
  if t is None:
    return {}

  def get(cls):
    o = getattr(tfl, cls)()
    o.Init(t.Bytes, t.Pos)
    return o

  if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
    o = get("Conv2DOptions" if name == "CONV_2D" else "DepthwiseConv2DOptions")
    return {"stride": [o.StrideH(), o.StrideW()], "dilation": [o.DilationHFactor(), o.DilationWFactor()],
            "padding": _PADDING[o.Padding()], "act": _ACT[o.FusedActivationFunction()]}
  if name in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
    o = get("Pool2DOptions")
    return {"window": [o.FilterHeight(), o.FilterWidth()], "stride": [o.StrideH(), o.StrideW()],
            "padding": _PADDING[o.Padding()], "act": _ACT[o.FusedActivationFunction()]}
  if name in ("ADD", "MUL"):
    o = get("AddOptions" if name == "ADD" else "MulOptions")
    return {"act": _ACT[o.FusedActivationFunction()]}
  if name == "CONCATENATION":
    o = get("ConcatenationOptions")
    return {"axis": o.Axis(), "act": _ACT[o.FusedActivationFunction()]}
  if name == "RESHAPE":
    o = get("ReshapeOptions")
    return {"new_shape": [int(v) for v in o.NewShapeAsNumpy()]} if o.NewShapeLength() else {}
  return {}


_NP = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 9: np.int8}


def convert(path):
  """A .tflite model -> {'t<i>': float32 param, ..., '__graph__': JSON string}."""
  tfl = _tflite()
  from tflite.BuiltinOperator import BuiltinOperator  # noqa: PLC0415  (the optional tflite package, as above)
  opnames = {v: k for k, v in BuiltinOperator.__dict__.items() if not k.startswith("_")}
  with open(path, "rb") as f:
    buf = f.read()
  try:
    model = tfl.Model.GetRootAsModel(buf, 0)
    if model.SubgraphsLength() != 1:
      raise AssetError(f"{path}: {model.SubgraphsLength()} subgraphs; only single-graph models are supported")
    g = model.Subgraphs(0)
    params, ints = {}, {}
    shapes = {}
    for i in range(g.TensorsLength()):
      t = g.Tensors(i)
      shapes[i] = [int(d) for d in t.ShapeAsNumpy()] if t.ShapeLength() else []
      b = model.Buffers(t.Buffer())
      if b is None or b.DataLength() == 0:
        continue
      if t.Sparsity() is not None:
        raise AssetError(f"{path}: sparse tensors (DENSIFY) are not supported")
      if t.Type() not in _NP:
        raise AssetError(f"{path}: tensor type {t.Type()} is not supported (quantized model?)")
      arr = np.frombuffer(b.DataAsNumpy().tobytes(), _NP[t.Type()]).reshape(shapes[i])
      if arr.dtype.kind == "f":
        params[f"t{i}"] = arr.astype(np.float32)
      else:
        ints[str(i)] = arr.astype(np.int64).tolist()
    ops = []
    for i in range(g.OperatorsLength()):
      op = g.Operators(i)
      oc = model.OperatorCodes(op.OpcodeIndex())
      name = opnames.get(max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode()), "CUSTOM")
      if name not in SUPPORTED:
        raise AssetError(f"{path}: op {name} is not supported by the JAX interpreter "
                         f"(supported: {', '.join(SUPPORTED)})")
      ops.append({"op": name, "in": [int(j) for j in op.InputsAsNumpy()],
                  "out": [int(j) for j in op.OutputsAsNumpy()], "opt": _options(tfl, name, op)})
    graph = {"inputs": [int(j) for j in g.InputsAsNumpy()], "outputs": [int(j) for j in g.OutputsAsNumpy()],
             "shapes": {str(k): v for k, v in shapes.items()}, "ints": ints, "ops": ops}
  except (AttributeError, IndexError, ValueError, TypeError) as e:  # malformed flatbuffer
    raise AssetError(f"{path} is not a readable TFLite model ({e})") from e
  params["__graph__"] = np.asarray(json.dumps(graph))
  return params
