"""Small PyTorch reference networks for converter tests (randomly initialised; torch is test-only).

Written from the published layouts (torchvision ResNet v1.5, Deep3DFaceRecon's ReconNet head,
insightface arcface_torch iresnet) so the tests can build weight files in the exact formats users have.
"""

import torch
from torch import nn


def randomize_bn(model, seed=0):
  """Random running stats / affine so that a conversion that ignores them fails the comparison."""
  g = torch.Generator().manual_seed(seed)
  for m in model.modules():
    if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
      m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
      m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
      if m.weight is not None:
        m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
        m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    if isinstance(m, nn.PReLU):
      m.weight.data.copy_(torch.rand(m.weight.shape, generator=g) * 0.5)
  return model


class Bottleneck(nn.Module):
  expansion = 4

  def __init__(self, cin, c, stride):
    super().__init__()
    self.conv1, self.bn1 = nn.Conv2d(cin, c, 1, bias=False), nn.BatchNorm2d(c)
    self.conv2, self.bn2 = nn.Conv2d(c, c, 3, stride, 1, bias=False), nn.BatchNorm2d(c)
    self.conv3, self.bn3 = nn.Conv2d(c, 4 * c, 1, bias=False), nn.BatchNorm2d(4 * c)
    self.downsample = None
    if stride != 1 or cin != 4 * c:
      self.downsample = nn.Sequential(nn.Conv2d(cin, 4 * c, 1, stride, bias=False), nn.BatchNorm2d(4 * c))

  def forward(self, x):
    y = torch.relu(self.bn1(self.conv1(x)))
    y = torch.relu(self.bn2(self.conv2(y)))
    y = self.bn3(self.conv3(y))
    return torch.relu(y + (x if self.downsample is None else self.downsample(x)))


class Basic(nn.Module):
  expansion = 1

  def __init__(self, cin, c, stride):
    super().__init__()
    self.conv1, self.bn1 = nn.Conv2d(cin, c, 3, stride, 1, bias=False), nn.BatchNorm2d(c)
    self.conv2, self.bn2 = nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c)
    self.downsample = None
    if stride != 1 or cin != c:
      self.downsample = nn.Sequential(nn.Conv2d(cin, c, 1, stride, bias=False), nn.BatchNorm2d(c))

  def forward(self, x):
    y = torch.relu(self.bn1(self.conv1(x)))
    y = self.bn2(self.conv2(y))
    return torch.relu(y + (x if self.downsample is None else self.downsample(x)))


class ResNet(nn.Module):
  """torchvision layout, returning (N, C, 1, 1) pooled features like Deep3DFaceRecon's use_last_fc=False."""

  def __init__(self, depth):
    super().__init__()
    sizes, block = {18: ((2, 2, 2, 2), Basic), 50: ((3, 4, 6, 3), Bottleneck)}[depth]
    self.conv1, self.bn1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64)
    self.maxpool = nn.MaxPool2d(3, 2, 1)
    cin = 64
    for i, n in enumerate(sizes):
      blocks = []
      for j in range(n):
        blocks.append(block(cin, 64 * 2 ** i, 2 if (j == 0 and i > 0) else 1))
        cin = 64 * 2 ** i * block.expansion
      setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
    self.avgpool = nn.AdaptiveAvgPool2d(1)

  def forward(self, x):
    x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
    for i in range(1, 5):
      x = getattr(self, f"layer{i}")(x)
    return self.avgpool(x)


class ReconNet(nn.Module):
  """Deep3DFaceRecon's ReconNetWrapper: backbone + seven 1x1 conv heads, concatenated and flattened."""

  def __init__(self, depth=50, splits=(80, 64, 80, 3, 27, 2, 1)):
    super().__init__()
    self.backbone = ResNet(depth)
    dim = 2048 if depth == 50 else 512
    self.final_layers = nn.ModuleList([nn.Conv2d(dim, n, 1, bias=True) for n in splits])

  def forward(self, x):
    f = self.backbone(x)
    return torch.flatten(torch.cat([l(f) for l in self.final_layers], 1), 1)


class IBasicBlock(nn.Module):
  def __init__(self, cin, c, stride):
    super().__init__()
    self.bn1 = nn.BatchNorm2d(cin, eps=1e-5)
    self.conv1 = nn.Conv2d(cin, c, 3, 1, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(c, eps=1e-5)
    self.prelu = nn.PReLU(c)
    self.conv2 = nn.Conv2d(c, c, 3, stride, 1, bias=False)
    self.bn3 = nn.BatchNorm2d(c, eps=1e-5)
    self.downsample = None
    if stride != 1 or cin != c:
      self.downsample = nn.Sequential(nn.Conv2d(cin, c, 1, stride, bias=False), nn.BatchNorm2d(c, eps=1e-5))

  def forward(self, x):
    y = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
    return y + (x if self.downsample is None else self.downsample(x))


class IResNet(nn.Module):
  """arcface_torch iresnet (112x112 input -> 7x7 final map -> fc -> BN features)."""

  def __init__(self, layers=(2, 2, 2, 2), embed=512, size=112):
    super().__init__()
    self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(64, eps=1e-5)
    self.prelu = nn.PReLU(64)
    cin = 64
    for i, n in enumerate(layers):
      c = 64 * 2 ** i
      setattr(self, f"layer{i + 1}", nn.Sequential(*[IBasicBlock(cin if j == 0 else c, c, 2 if j == 0 else 1)
                                                     for j in range(n)]))
      cin = c
    self.bn2 = nn.BatchNorm2d(512, eps=1e-5)
    hw = size // 16
    self.fc = nn.Linear(512 * hw * hw, embed)
    self.features = nn.BatchNorm1d(embed, eps=1e-5)

  def forward(self, x):
    x = self.prelu(self.bn1(self.conv1(x)))
    for i in range(1, 5):
      x = getattr(self, f"layer{i}")(x)
    x = torch.flatten(self.bn2(x), 1)
    return self.features(self.fc(x))
