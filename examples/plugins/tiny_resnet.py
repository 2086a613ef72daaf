"""A small residual CNN as a model plugin: conv stem, `blocks` residual blocks of two 3x3 convs,
global average pooling, a linear head. Its forward has no data-dependent control flow, so
dlbench stacks its runs with vmap like the built-in models."""

import torch
from torch import nn

from dlbench import register


class Block(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.conv2(torch.relu(self.conv1(x))))


class TinyResNet(nn.Module):
    def __init__(self, channels: int, width: int, blocks: int, classes: int) -> None:
        super().__init__()
        self.stem = nn.Conv2d(channels, width, 3, padding=1)
        self.blocks = nn.Sequential(*[Block(width) for _ in range(blocks)])
        self.head = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.blocks(torch.relu(self.stem(x)))
        return self.head(h.mean(dim=(2, 3)))


@register.model("tiny_resnet", fields={"width": 16, "blocks": 2})
def tiny_resnet(input_shape: tuple[int, ...], num_classes: int, width: int, blocks: int) -> nn.Module:
    """a small residual CNN: conv stem, residual blocks of two 3x3 convs, global average pool, linear head"""
    if len(input_shape) != 3:
        raise ValueError(f"tiny_resnet takes images (channels, height, width), not samples of shape {input_shape}")
    return TinyResNet(input_shape[0], width, blocks, num_classes)
