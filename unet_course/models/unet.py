"""The U-Net of Ronneberger, Fischer & Brox (2015), faithful to the paper, and its size arithmetic.

Unpadded 3×3 convolutions, 2×2 max-pooling, 2×2 up-convolutions, crop-and-concat, a final
1×1 convolution and He initialisation: with the defaults it maps a 572×572 tile to a
388×388 map through 23 convolution layers and 31,030,658 parameters. ``padding="same"``
gives the common padded variant. The size functions below need no model (chapter 3).
"""

from __future__ import annotations

import math
from typing import TypeVar

import numpy as np
import torch
from torch import nn

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)

__all__ = [
    "UNet",
    "center_crop",
    "unet_output_size",
    "unet_input_size_for",
    "unet_valid_input_size",
    "unet_nearest_valid_sizes",
    "unet_margin",
    "unet_layer_shapes",
    "unet_num_parameters",
    "he_init",
]

PADDINGS = ("valid", "same")


def _check_config(depth: int, padding: str) -> None:
    if padding not in PADDINGS:
        raise ValueError(f"padding must be 'valid' (the paper) or 'same' (padded convolutions), got {padding!r}")
    if not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth (the number of 2×2 poolings) must be an integer >= 1, got {depth!r}; the paper uses 4")


def _walk(size: int, depth: int, padding: str) -> tuple[int | None, str]:
    """Follow one side length through the network: ``(output, "")`` or ``(None, why not)``."""
    shrink = 4 if padding == "valid" else 0  # two unpadded 3×3 convs lose 2 pixels each
    n = size
    for level in range(1, depth + 1):
        n -= shrink
        if n < 2:
            return None, f"too small: the map shrinks to {max(n, 0)} px before max-pool {level}"
        if n % 2:
            return None, (f"the map is {n} px before max-pool {level}, an odd size, so 2×2 pooling "
                          f"would drop a pixel and crop-and-concat could no longer line up")
        n //= 2
    n -= shrink
    if n < 1:
        return None, f"too small: the map shrinks to {max(n, 0)} px at the bottom of the U"
    for level in range(depth, 0, -1):
        n = 2 * n - shrink
        if n < 1:
            return None, f"too small: the map shrinks to {max(n, 0)} px on level {level - 1} of the expansive path"
    return n, ""


def unet_nearest_valid_sizes(size: int, depth: int = 4, padding: str = "valid") -> tuple[int | None, int]:
    """The largest valid input side ``<= size`` (None if there is none) and the smallest ``>= size``.

    Example:
        >>> unet_nearest_valid_sizes(500)
        (492, 508)
    """
    _check_config(depth, padding)
    below = next((n for n in range(size, 0, -1) if _walk(n, depth, padding)[0] is not None), None)
    above = max(size, 1)
    while _walk(above, depth, padding)[0] is None:  # valid sizes recur every 2**depth pixels
        above += 1
    return below, above


def _misfit(size: int, depth: int, padding: str) -> str | None:
    """Why ``size`` does not fit and which sizes would, or None if it fits."""
    output, reason = _walk(size, depth, padding)
    if output is not None:
        return None
    below, above = unet_nearest_valid_sizes(size, depth, padding)
    options = [f"{n} (output {_walk(n, depth, padding)[0]})" for n in (below, above) if n is not None]
    return f"{reason}. Nearest valid input sizes: {' and '.join(options)}."


def unet_output_size(size: int, depth: int = 4, padding: str = "valid") -> int:
    """The output side length for an input side length; a clear ``ValueError`` if it does not fit.

    Args:
        size: input height or width in pixels.
        depth: number of 2×2 max-poolings (4 in the paper). Default 4.
        padding: ``"valid"`` (unpadded convolutions, the paper) or ``"same"``. Default "valid".

    Example:
        >>> unet_output_size(572)
        388
    """
    _check_config(depth, padding)
    misfit = _misfit(int(size), depth, padding)
    if misfit:
        raise ValueError(f"an input of {size} px does not fit UNet(depth={depth}, padding={padding!r}): {misfit}")
    return _walk(int(size), depth, padding)[0]


def unet_valid_input_size(size: int, depth: int = 4, padding: str = "valid") -> int:
    """The smallest valid input side length ``>= size``. Example: ``unet_valid_input_size(500) == 508``."""
    return unet_nearest_valid_sizes(size, depth, padding)[1]


def unet_margin(depth: int = 4, padding: str = "valid") -> int:
    """Pixels lost on each side, ``(input - output) / 2``: 92 for the paper's U-Net, 0 for "same".

    Each unpadded 3×3 conv at level ``l`` (resolution ``1/2**l``) costs ``2**l`` input pixels
    per side: two convs on each of the ``depth`` levels down and up, two at the bottom, so
    ``2·2·(2**depth - 1) + 2·2**depth = 6·2**depth - 4``.
    """
    _check_config(depth, padding)
    return 6 * 2**depth - 4 if padding == "valid" else 0


def unet_input_size_for(output_size: int, depth: int = 4, padding: str = "valid") -> int:
    """The smallest valid input side whose output is at least ``output_size`` (388 → 572)."""
    return unet_valid_input_size(output_size + 2 * unet_margin(depth, padding), depth, padding)


def unet_layer_shapes(size: int, depth: int = 4, base_channels: int = 64, in_channels: int = 1,
                      num_classes: int = 2, padding: str = "valid") -> list[tuple[str, int, int]]:
    """Every feature map of the U as ``(name, channels, side)``, computed without a model.

    Names are ``input``, ``down{l}.conv{1,2}``, ``down{l}.pool``, ``bottom.conv{1,2}``,
    ``up{l}.upconv``, ``up{l}.concat``, ``up{l}.conv{1,2}`` and ``head``, in execution order.
    """
    unet_output_size(size, depth, padding)  # raises the helpful error for invalid sizes
    shrink = 2 if padding == "valid" else 0
    shapes, n = [("input", in_channels, size)], size
    for level in range(depth):
        channels = base_channels * 2**level
        for conv in (1, 2):
            n -= shrink
            shapes.append((f"down{level + 1}.conv{conv}", channels, n))
        n //= 2
        shapes.append((f"down{level + 1}.pool", channels, n))
    for conv in (1, 2):
        n -= shrink
        shapes.append((f"bottom.conv{conv}", base_channels * 2**depth, n))
    for level in range(depth - 1, -1, -1):
        channels, n = base_channels * 2**level, 2 * n
        shapes += [(f"up{level + 1}.upconv", channels, n), (f"up{level + 1}.concat", 2 * channels, n)]
        for conv in (1, 2):
            n -= shrink
            shapes.append((f"up{level + 1}.conv{conv}", channels, n))
    shapes.append(("head", num_classes, n))
    return shapes


def unet_num_parameters(in_channels: int = 1, num_classes: int = 2, base_channels: int = 64,
                        depth: int = 4, batch_norm: bool = False) -> int:
    """The number of trainable parameters of ``UNet(...)`` with these settings, without building it."""
    def conv(c_in: int, c_out: int, k: int = 3, bias: bool = True) -> int:
        return c_in * c_out * k * k + (c_out if bias else 0) + (2 * c_out if batch_norm and k == 3 else 0)

    def block(c_in: int, c_out: int) -> int:  # conv3×3 (+BN) + conv3×3 (+BN); BN makes the bias redundant
        return conv(c_in, c_out, bias=not batch_norm) + conv(c_out, c_out, bias=not batch_norm)

    widths = [base_channels * 2**level for level in range(depth + 1)]
    total = block(in_channels, widths[0]) + conv(widths[0], num_classes, k=1)
    for level in range(1, depth + 1):
        total += block(widths[level - 1], widths[level])  # contracting path (level depth = bottom)
        total += conv(widths[level], widths[level - 1], k=2)  # 2×2 up-convolution halving the channels
        total += block(widths[level], widths[level - 1])  # expansive path, after the concat
    return total


def center_crop(array: ArrayT, size: int | tuple[int, int]) -> ArrayT:
    """The central ``size`` window of the last two axes of a tensor or array.

    When a side shrinks by an odd number of pixels the extra one is cut at the bottom
    or right. A valid-convolution U-Net shrinks both sides evenly (572 → 388), so the
    crop is exactly the region its output pixels see the centre of.

    Args:
        array: tensor or numpy array ``(..., H, W)``.
        size: output side ``s`` (for ``(s, s)``) or ``(height, width)``.

    Returns:
        A view of ``array`` (no copy), of the same kind.

    Shape:
        ``(..., H, W)`` → ``(..., height, width)``.

    Example:
        >>> import torch
        >>> center_crop(torch.zeros(1, 3, 572, 572), 388).shape
        torch.Size([1, 3, 388, 388])

    Taught in chapter 3 (crop-and-concat) and used by the loss in chapter 5.
    """
    height, width = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    in_height, in_width = array.shape[-2:]
    if not (0 < height <= in_height and 0 < width <= in_width):
        raise ValueError(
            f"center_crop: cannot cut ({height}, {width}) out of ({in_height}, {in_width}); "
            "the crop must be positive and no larger than the input."
        )
    top, left = (in_height - height) // 2, (in_width - width) // 2
    return array[..., top : top + height, left : left + width]

class ConvBlock(nn.Sequential):
    """Two 3×3 convolutions, each followed by (optional batch norm and) a ReLU."""

    def __init__(self, in_channels: int, out_channels: int, padding: int, batch_norm: bool) -> None:
        layers: list[nn.Module] = []
        for c_in in (in_channels, out_channels):
            layers.append(nn.Conv2d(c_in, out_channels, 3, padding=padding, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out_channels))
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class UNet(nn.Module):
    """The U-Net of the paper (Fig. 1): a contracting path, a bottom, an expansive path.

    Args:
        in_channels: channels of the input image. Default 1.
        num_classes: channels of the output, one logit per class. Default 2.
        base_channels: feature channels of the first level, doubled at each pooling. Default 64.
        depth: number of 2×2 max-poolings (and of up-convolutions). Default 4.
        padding: ``"valid"``: unpadded convolutions, the output is smaller than the input (the
            paper); ``"same"``: zero-padded, output size = input size. Default "valid".
        batch_norm: batch norm after each 3×3 conv (not in the paper). Default False.
        dropout: drop-out probability at the end of the contracting path. Default 0.5. As in the
            authors' released network, two drop-out layers: on the last contracting level's
            map (both the skip connection and the pooling see the dropped map) and on the
            bottom of the U.

    Shape:
        ``(N, in_channels, H, W)`` → ``(N, num_classes, H - 2·margin, W - 2·margin)`` logits,
        with ``margin = 92`` for the defaults; ``model.output_size(572) == 388``.

    Example:
        >>> model = UNet(base_channels=8)
        >>> model(torch.zeros(1, 1, 572, 572)).shape
        torch.Size([1, 2, 388, 388])

    Explained in chapter 3, "The U-Net architecture".
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 2, base_channels: int = 64, depth: int = 4,
                 padding: str = "valid", batch_norm: bool = False, dropout: float = 0.5) -> None:
        super().__init__()
        _check_config(depth, padding)
        self.in_channels, self.num_classes, self.base_channels = in_channels, num_classes, base_channels
        self.depth, self.padding, self.batch_norm = depth, padding, batch_norm
        conv_padding = 1 if padding == "same" else 0
        widths = [base_channels * 2**level for level in range(depth + 1)]
        self.contracting = nn.ModuleList(
            ConvBlock(c_in, c_out, conv_padding, batch_norm)
            for c_in, c_out in zip([in_channels] + widths[:-2], widths[:-1]))
        self.pool = nn.MaxPool2d(2, stride=2)
        self.bottom = ConvBlock(widths[-2], widths[-1], conv_padding, batch_norm)
        self.dropout = nn.Dropout(dropout)
        self.upconvs = nn.ModuleList(nn.ConvTranspose2d(widths[l + 1], widths[l], 2, stride=2)
                                     for l in reversed(range(depth)))
        self.expansive = nn.ModuleList(ConvBlock(2 * widths[l], widths[l], conv_padding, batch_norm)
                                       for l in reversed(range(depth)))
        self.head = nn.Conv2d(widths[0], num_classes, 1)
        self.apply(he_init)

    @property
    def margin(self) -> int:
        """Pixels lost on each side, ``(input - output) / 2``: 92 for the paper, 0 for "same"."""
        return unet_margin(self.depth, self.padding)

    @property
    def downsampling_factor(self) -> int:
        """``2**depth``: valid sizes repeat with this period, and tiles must shift by multiples of it."""
        return 2**self.depth

    def output_size(self, size: int) -> int:
        """Output side for an input side (572 → 388); raises a ``ValueError`` naming valid sizes."""
        return unet_output_size(size, self.depth, self.padding)

    def input_size_for(self, output_size: int) -> int:
        """Smallest valid input side giving at least ``output_size`` output pixels (388 → 572)."""
        return unet_input_size_for(output_size, self.depth, self.padding)

    def valid_input_size(self, size: int) -> int:
        """Smallest valid input side ``>= size`` (500 → 508)."""
        return unet_valid_input_size(size, self.depth, self.padding)

    def nearest_valid_sizes(self, size: int) -> tuple[int | None, int]:
        """Valid input sides just below and just above ``size`` (500 → (492, 508))."""
        return unet_nearest_valid_sizes(size, self.depth, self.padding)

    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"UNet expects images (N, {self.in_channels}, H, W), got shape {tuple(x.shape)}; "
                             f"add the missing dimensions (x[None] for one image) or build "
                             f"UNet(in_channels={x.shape[1] if x.ndim == 4 else '...'}).")
        for side, name in zip(x.shape[-2:], ("height", "width")):
            misfit = _misfit(side, self.depth, self.padding)
            if misfit:
                raise ValueError(f"the input {name} of {side} px does not fit UNet(depth={self.depth}, "
                                 f"padding={self.padding!r}): {misfit} Pad or crop the image to one of them, "
                                 f"or predict any size with unet_course.predict_tiled(model, image).")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)  # a clear error now rather than a size mismatch inside torch.cat
        skips = []
        for level, block in enumerate(self.contracting, start=1):
            x = block(x)  # (N, C, H - 4, W - 4) with valid convolutions
            if level == self.depth:  # the released network's first drop-out layer (after conv_d3b-c)
                x = self.dropout(x)
            skips.append(x)
            x = self.pool(x)  # (N, C, H/2, W/2)
        x = self.dropout(self.bottom(x))  # (N, C·2**depth, h, w); the second drop-out layer (after conv_d4b-c)
        for upconv, block, skip in zip(self.upconvs, self.expansive, reversed(skips)):
            x = upconv(x)  # (N, C/2, 2h, 2w)
            x = torch.cat([center_crop(skip, x.shape[-2:]), x], dim=1)  # (N, C, 2h, 2w)
            x = block(x)  # (N, C/2, 2h - 4, 2w - 4)
        return self.head(x)  # (N, num_classes, H', W') logits


def he_init(module: nn.Module) -> None:
    """Gaussian weights with std √(2/N), N the incoming nodes of one neuron (He et al. 2015), zero bias.

    For a 3×3 conv N = 9·C_in. A 2×2 up-convolution with stride 2 feeds each output pixel from
    one input pixel, so N = C_in there, not the 4·C_out that ``kaiming_normal_`` would assume.
    """
    if isinstance(module, nn.ConvTranspose2d):
        fan_in = module.in_channels * math.prod(k // s for k, s in zip(module.kernel_size, module.stride))
    elif isinstance(module, nn.Conv2d):
        fan_in = module.in_channels * math.prod(module.kernel_size)
    else:
        return
    nn.init.normal_(module.weight, mean=0.0, std=math.sqrt(2.0 / fan_in))
    if module.bias is not None:
        nn.init.zeros_(module.bias)
