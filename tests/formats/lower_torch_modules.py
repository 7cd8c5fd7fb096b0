"""Tiny PyTorch modules for tests/formats/test_lower_cnn_rnn.py: each exercises one family of the
lowering's CNN/RNN handlers the way torch.onnx exports it. Imported by the tests after they have
checked that torch imports."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812


class ConvT(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1)
        self.grouped = nn.ConvTranspose2d(6, 4, 4, stride=2, padding=1, groups=2, dilation=1)
        self.odd = nn.ConvTranspose1d(4, 3, 5, stride=3, padding=2, output_padding=2, dilation=2)

    def forward(self, x):
        y = self.grouped(torch.relu(self.up(x)))
        return y.sum(dim=2) + self.odd(x.mean(dim=2)).sum()


class Resize(nn.Module):
    def forward(self, x):
        a = F.interpolate(x, scale_factor=2.0, mode="nearest")
        b = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        c = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=True)
        d = F.interpolate(x, size=(5, 7), mode="bicubic", align_corners=False)
        e = F.interpolate(c, size=x.shape[-2:], mode="bilinear")  # sizes known at run time only
        return a + b + c + d.mean() + e.mean()


class Mixed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.grouped = nn.Conv2d(4, 8, (3, 2), groups=2, padding=(0, 1), stride=(1, 2), dilation=(2, 1))
        self.norm = nn.InstanceNorm2d(8, affine=True)
        self.gn = nn.GroupNorm(2, 8)
        self.maxp = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.avgp = nn.AvgPool2d(3, 2, padding=1, count_include_pad=False)
        self.conv1d = nn.Conv1d(8, 4, 3, padding=2, dilation=2)

    def forward(self, x):
        y = self.gn(self.norm(self.grouped(x)))
        y = self.avgp(self.maxp(y))
        return self.conv1d(y.flatten(2)) + F.adaptive_max_pool2d(y, 1).flatten(2).mean()


class Recurrent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(6, 8, num_layers=2, bidirectional=True, batch_first=True)
        self.gru = nn.GRU(16, 5, bidirectional=True)
        self.rnn = nn.RNN(10, 4, nonlinearity="relu", batch_first=True)

    def forward(self, x):
        h, _ = self.lstm(x)
        h, _ = self.gru(h.transpose(0, 1))
        h, _ = self.rnn(h.transpose(0, 1))
        return h


class Volumetric(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(2, 4, 3, padding=1)
        self.bn = nn.BatchNorm3d(4)
        self.up = nn.ConvTranspose3d(4, 3, 3, stride=2, padding=1, output_padding=1)
        self.pool = nn.AvgPool3d(3, stride=1, padding=1, count_include_pad=False)
        with torch.no_grad():
            self.bn.running_mean.uniform_(-0.5, 0.5)
            self.bn.running_var.uniform_(0.5, 2.0)

    def forward(self, x):
        y = F.max_pool3d(torch.relu(self.bn(self.conv(x))), 2)
        return self.pool(self.up(y))


MODULES: dict[str, type[nn.Module]] = {"convtranspose": ConvT, "resize": Resize, "mixed": Mixed,
                                       "recurrent": Recurrent, "volumetric": Volumetric}


def build(kind: str) -> nn.Module:
    """The module, seeded, in eval mode."""
    torch.manual_seed(11)
    return MODULES[kind]().eval()
