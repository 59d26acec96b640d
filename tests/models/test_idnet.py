"""Identity networks: dlib descriptor vs dlib-bin on real faces; ArcFace converters vs torch."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxface import assets
from jaxface.errors import AssetError
from jaxface.models import idnet

import _torch_reference_nets as torch_refs  # noqa: E402  (sibling helper; tests/models is on sys.path)
import torch  # noqa: E402  (test requirement)
from jaxface.convert import arcface


def _faces():
  """Real faces: the astronaut (public domain) cut by dlib as dlib's docs do, plus LFW faces from
  scikit-image's lfw_subset (25x25 grey, upsampled to chip size: different people, still real faces)."""
  import dlib  # noqa: PLC0415  (test requirement: dlib-bin)
  from PIL import Image  # noqa: PLC0415
  from skimage import data as skimage_data  # noqa: PLC0415

  img = skimage_data.astronaut()
  det = dlib.get_frontal_face_detector()
  sp5 = dlib.shape_predictor(assets.fetch("dlib_shape5"))
  rects = list(det(img, 1))
  assert rects, "dlib found no face in the astronaut image"
  chips = [dlib.get_face_chip(img, sp5(img, r), size=150, padding=0.25) for r in rects[:1]]
  chips.append(np.ascontiguousarray(chips[0][:, ::-1]))
  lfw = skimage_data.lfw_subset()[:4]  # the first 100 are faces
  for face in lfw:
    grey = np.asarray(Image.fromarray((face * 255).astype(np.uint8)).resize((150, 150), Image.BICUBIC))
    chips.append(np.repeat(grey[..., None], 3, -1))
  rec = dlib.face_recognition_model_v1(assets.fetch("dlib_resnet"))
  ref = np.array([rec.compute_face_descriptor(c) for c in chips])
  return np.stack(chips), ref


def test_dlib_descriptor_matches_dlib_bin():
  chips, ref = _faces()
  variables = idnet.dlib_params(assets.load_params("dlib_resnet"))
  model = idnet.DlibResNet()
  eager = np.asarray(model.apply(variables, chips[:2]))
  jitted = np.asarray(jax.jit(model.apply)(variables, chips))
  assert np.abs(eager - ref[:2]).max() <= 1e-5
  assert np.abs(jitted - ref).max() <= 1e-5
  assert np.linalg.norm(ref, axis=1).min() > 0.5  # real descriptors, not zeros
  d = np.linalg.norm(ref[:, None] - ref[None], axis=-1)
  assert d[2:, 2:][np.triu_indices(4, 1)].min() > 0.3  # different LFW people are told apart
  # bfloat16 activations (the GPU setting) stay close to the float32 descriptor.
  bf = np.asarray(jax.jit(idnet.DlibResNet(jnp.bfloat16).apply)(variables, chips))
  assert np.abs(bf - ref).max() < 0.05
  # A loss through it is differentiable w.r.t. the image.
  g = jax.jit(jax.grad(lambda x: jnp.sum(model.apply(variables, x) ** 2)))(chips[:2].astype(np.float32))
  assert np.isfinite(np.asarray(g)).all() and np.abs(np.asarray(g)).max() > 0


def _arcface_torch(seed=0):
  torch.manual_seed(seed)
  net = torch_refs.randomize_bn(torch_refs.IResNet((1, 2, 1, 1), embed=64, size=32), seed).eval()
  x = np.random.default_rng(seed).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
  with torch.no_grad():
    ref = net(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()
  return net, x, ref


def assert_matches_torch(flat, x, ref):
  model, variables = idnet.arcface_from_flat(flat)
  assert model.layers == (1, 2, 1, 1) and model.embed == 64
  out = np.asarray(jax.jit(model.apply)(variables, x))
  np.testing.assert_allclose(out, ref, atol=1e-4 * np.abs(ref).max(), rtol=0)


def test_arcface_state_dict_matches_torch(tmp_path):
  net, x, ref = _arcface_torch(0)
  path = tmp_path / "backbone.pth"
  torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, path)  # DataParallel-saved
  assert_matches_torch(arcface.convert_arcface(str(path)), x, ref)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_arcface_onnx_matches_torch(tmp_path):
  net, x, ref = _arcface_torch(1)
  path = tmp_path / "w600k_r_tiny.onnx"
  # The legacy exporter folds each BN into its conv, like insightface's released ONNX files.
  torch.onnx.export(net, torch.zeros(1, 3, 32, 32), str(path), dynamo=False, input_names=["input.1"])
  assert_matches_torch(arcface.convert_arcface(str(path)), x, ref)


def test_arcface_user_asset_errors(tmp_path):
  with pytest.raises(AssetError, match="experts.idnet"):
    assets.fetch("arcface")
  with pytest.raises(AssetError, match="does not exist"):
    assets.fetch("arcface", str(tmp_path / "missing.onnx"))
  bad = tmp_path / "bad.onnx"
  bad.write_bytes(b"\x00\x01 not a protobuf at all \xff" * 10)
  with pytest.raises(AssetError):
    arcface.convert_arcface(str(bad))


def _write_unfolded_iresnet_onnx(path, layers=(1, 1, 1, 1), embed=16, size=32, seed=0):
  """An iresnet ONNX written directly with onnx.helper, in the *unfolded* export style: bias-free convs
  each followed by BatchNormalization, and a MatMul + Add head (other exporters' layout)."""
  import onnx  # noqa: PLC0415
  from onnx import TensorProto, helper, numpy_helper  # noqa: PLC0415
  g = np.random.default_rng(seed)
  inits, nodes, n = [], [], [0]

  def const(arr):
    n[0] += 1
    name = f"c{n[0]}"
    inits.append(numpy_helper.from_array(np.asarray(arr, np.float32), name))
    return name

  def node(op, ins, **attrs):
    n[0] += 1
    out = f"v{n[0]}"
    nodes.append(helper.make_node(op, ins, [out], **attrs))
    return out

  def bn(x, c):
    return node("BatchNormalization", [x, const(g.uniform(0.5, 1.5, c)), const(g.normal(0, 0.1, c)),
                                       const(g.normal(0, 0.1, c)), const(g.uniform(0.5, 1.5, c))], epsilon=2e-5)

  def conv(x, cin, cout, k, stride):
    w = const(g.normal(0, (2.0 / (cin * k * k)) ** 0.5, (cout, cin, k, k)))
    return bn(node("Conv", [x, w], kernel_shape=[k, k], strides=[stride, stride], pads=[k // 2] * 4), cout)

  def prelu(x, c):
    return node("PRelu", [x, const(g.uniform(0, 0.5, (c, 1, 1)))])

  x = prelu(conv("input", 3, 64, 3, 1), 64)
  cin = 64
  for i, nb in enumerate(layers):
    c = 64 * 2 ** i
    for j in range(nb):
      y = prelu(conv(bn(x, cin), cin, c, 3, 1), c)
      y = conv(y, c, c, 3, 2 if j == 0 else 1)
      sc = conv(x, cin, c, 1, 2) if j == 0 else x
      x, cin = node("Add", [y, sc]), c
  x = node("Flatten", [bn(x, 512)], axis=1)
  hw = size // 16
  x = node("Add", [node("MatMul", [x, const(g.normal(0, 0.01, (512 * hw * hw, embed)))]),
                   const(g.normal(0, 0.1, embed))])
  out = bn(x, embed)
  graph = helper.make_graph(nodes, "iresnet", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                            [None, 3, size, size])],
                            [helper.make_tensor_value_info(out, TensorProto.FLOAT, [None, embed])], inits)
  # opset >= 14: onnx.reference evaluates older BatchNormalization with batch statistics mixed in.
  onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def test_arcface_onnx_written_directly_matches_onnx_reference(tmp_path):
  """No torch involved: onnx's own reference evaluator (numpy) is the ground truth."""
  from onnx.reference import ReferenceEvaluator  # noqa: PLC0415
  path = tmp_path / "unfolded.onnx"
  _write_unfolded_iresnet_onnx(path)
  x = np.random.default_rng(3).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
  ref = ReferenceEvaluator(str(path)).run(None, {"input": x.transpose(0, 3, 1, 2).copy()})[0]
  model, variables = idnet.arcface_from_flat(arcface.convert_arcface(str(path)))
  assert model.layers == (1, 1, 1, 1) and model.embed == 16
  out = np.asarray(jax.jit(model.apply)(variables, x))
  np.testing.assert_allclose(out, ref, atol=1e-4 * np.abs(ref).max(), rtol=0)
