"""A patch classifier with a fully connected head, and its fully convolutional twin.

Follows Long, Shelhamer & Darrell (2015), "Fully Convolutional Networks for Semantic
Segmentation": a classifier's Linear layers are convolutions whose kernel covers the
whole feature map, so :func:`convolutionalize` rewrites them as ``Conv2d`` layers with
the same weights, and the network then takes any input size and returns a score map.
"""

from __future__ import annotations

import copy
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

__all__ = [
    "PatchClassifier",
    "FullyConvNet",
    "convolutionalize",
    "LayerParameters",
    "parameter_table",
    "sample_patches",
]

# Layers that act on each number on its own: they work unchanged on (N, C) vectors and
# on (N, C, H, W) maps, so they can stay as they are in a convolutionalized head.
_ELEMENTWISE = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Identity, nn.Dropout)


def _feature_size(patch_size: int, blocks: int, padding: int) -> int | None:
    """Side of the last feature map, or None if a 3×3 conv or 2×2 pool would not fit evenly."""
    size = patch_size
    for _ in range(blocks):
        size += 2 * padding - 2  # 3×3 conv
        if size < 2 or size % 2:  # each pool must see whole 2×2 windows: no row left over
            return None
        size //= 2
    return size


class PatchClassifier(nn.Module):
    """A small VGG-style classifier of fixed-size patches: conv features, then an FC head.

    Each entry of ``channels`` adds a block ``Conv3×3 → ReLU → MaxPool 2×2``, as in VGG
    (Simonyan & Zisserman, 2015); the head is ``Flatten → Linear → ReLU → Dropout → Linear``.
    The first Linear sees every feature at every position, so the patch size is baked into
    its weight matrix.

    With ``padding=1`` (VGG's choice) the convs keep the size and ``patch_size`` must be
    divisible by ``2 ** len(channels)``. With ``padding=0`` (unpadded, as in Ciresan et al.
    2012 and the U-Net) each conv trims a pixel on every side; the network then never sees
    the zeros of a padded border, and once convolutionalized it computes exactly the
    classifier on every window of a larger image. Every map before a pool must have an
    even side, which allows ``patch_size`` 22, 30, 38, 46, ... (8k + 6) for three blocks.

    Args:
        in_channels: channels of the input patches. Default 1.
        num_classes: number of classes scored. Default 2.
        patch_size: side of the square patches. Default 32.
        channels: output channels of each conv block. Default ``(16, 32, 64)``.
        hidden: width of the hidden FC layer. Default 256.
        dropout: dropout probability before the last Linear. Default 0.5.
        padding: zero padding of each 3×3 conv, 1 or 0. Default 1.

    Shape:
        input ``(N, in_channels, patch_size, patch_size)`` → logits ``(N, num_classes)``.

    Example:
        >>> model = PatchClassifier(patch_size=32)
        >>> model(torch.zeros(4, 1, 32, 32)).shape
        torch.Size([4, 2])

    Taught in chapter 2 (FC layers vs fully convolutional networks).
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 2,
        patch_size: int = 32,
        channels: tuple[int, ...] = (16, 32, 64),
        hidden: int = 256,
        dropout: float = 0.5,
        padding: int = 1,
    ) -> None:
        super().__init__()
        if padding not in (0, 1) or not channels:
            raise ValueError(f"expected padding 0 or 1 and at least one conv block, got padding={padding}, channels={channels}")
        feature_size = _feature_size(patch_size, len(channels), padding)
        if feature_size is None:
            valid = [size for size in range(1, 4 * patch_size + 64) if _feature_size(size, len(channels), padding)]
            nearest = sorted(valid, key=lambda size: abs(size - patch_size))[:2]
            raise ValueError(
                f"patch_size={patch_size} does not fit {len(channels)} blocks of 3×3 conv (padding={padding}) and "
                f"2×2 pool: every map before a pool needs an even side. Use e.g. patch_size="
                + " or ".join(str(size) for size in sorted(nearest))
            )
        self.in_channels, self.patch_size, self.feature_size = in_channels, patch_size, feature_size
        layers: list[nn.Module] = []
        previous = in_channels
        for width in channels:
            layers += [nn.Conv2d(previous, width, 3, padding=padding), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            previous = width
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(previous * feature_size**2, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels or x.shape[-2:] != (self.patch_size, self.patch_size):
            got = "×".join(str(n) for n in x.shape)
            raise ValueError(
                f"PatchClassifier expects input (N, {self.in_channels}, {self.patch_size}, {self.patch_size}), got {got}: "
                f"its first Linear layer has a fixed {self.classifier[1].in_features} inputs, one per feature "
                f"at each position of a {self.patch_size}×{self.patch_size} patch. Crop the input to "
                f"{self.patch_size}×{self.patch_size}, or call unet_course.convolutionalize(model) "
                f"for a fully convolutional network that takes any size."
            )
        x = self.features(x)  # (N, C, feature_size, feature_size)
        return self.classifier(x)  # (N, num_classes)


class FullyConvNet(nn.Module):
    """Conv features followed by a head of convolutions: any input size, a map of scores.

    Made by :func:`convolutionalize`. ``head`` holds the classifier's Linear layers as
    ``Conv2d``: the first with a kernel as large as the feature map it used to flatten,
    the later ones 1×1.

    Args:
        features: the convolutional part, ``(N, C_in, H, W) → (N, C, h, w)``.
        head: the convolutionalized classifier, ``(N, C, h, w) → (N, num_classes, h', w')``.

    Shape:
        input ``(N, C_in, H, W)`` → scores ``(N, num_classes, H', W')``. For a
        :class:`PatchClassifier` with ``B`` blocks and patch size ``P``, one score vector
        per ``P × P`` window, windows ``2**B`` pixels apart; with ``padding=1`` and ``H``
        divisible by ``2**B``, ``H' = H // 2**B - P // 2**B + 1``.

    Example:
        >>> fcn = convolutionalize(PatchClassifier(patch_size=32))
        >>> fcn(torch.zeros(1, 1, 64, 96)).shape
        torch.Size([1, 2, 5, 9])

    Taught in chapter 2 (FC layers vs fully convolutional networks).
    """

    def __init__(self, features: nn.Module, head: nn.Sequential) -> None:
        super().__init__()
        self.features = features
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # (N, C, h, w)
        return self.head(x)  # (N, num_classes, h - k + 1, w - k + 1) for a k×k first kernel


def _split(model: nn.Module) -> tuple[nn.Module, nn.Module | None, list[nn.Module]]:
    """``(features, pool_or_None, classifier_layers)`` of a supported model, else ValueError."""
    if isinstance(model, nn.Sequential):
        flattens = [i for i, layer in enumerate(model) if isinstance(layer, nn.Flatten)]
        if len(flattens) != 1:
            raise ValueError(
                f"convolutionalize needs an nn.Sequential with exactly one nn.Flatten between the conv "
                f"features and the Linear layers, got {len(flattens)} Flatten layers"
            )
        return model[: flattens[0]], None, list(model[flattens[0] + 1 :])
    if not (hasattr(model, "features") and isinstance(getattr(model, "classifier", None), nn.Sequential)):
        raise ValueError(
            f"convolutionalize supports models with .features and an nn.Sequential .classifier "
            f"(like PatchClassifier or torchvision's VGG/AlexNet) or an nn.Sequential with one nn.Flatten; "
            f"got {type(model).__name__}. Wrap your layers in one of these layouts."
        )
    pool = getattr(model, "avgpool", None)
    pool = None if isinstance(pool, nn.Identity) else pool
    return model.features, pool, [layer for layer in model.classifier if not isinstance(layer, nn.Flatten)]


def _as_conv(linear: nn.Linear, channels: int, kernel: tuple[int, int]) -> nn.Conv2d:
    """A Conv2d computing ``linear`` on each ``channels × kernel`` window, sharing no memory with it."""
    # Built on the meta device, then given the Linear's own numbers: skips a random
    # initialisation that would be thrown away (102M numbers for VGG-16).
    conv = nn.Conv2d(channels, linear.out_features, kernel, bias=linear.bias is not None, device="meta")
    # Flatten orders a (C, h, w) map channel-major, row by row: the same order as view().
    conv.weight = nn.Parameter(linear.weight.detach().reshape(linear.out_features, channels, *kernel).clone())
    if linear.bias is not None:
        conv.bias = nn.Parameter(linear.bias.detach().clone())
    return conv


def convolutionalize(model: nn.Module, feature_size: int | tuple[int, int] | None = None) -> FullyConvNet:
    """The same network with its Linear layers turned into convolutions (same weights, copied).

    The first Linear becomes a ``Conv2d`` whose kernel covers the whole feature map it
    used to flatten; each later Linear becomes a 1×1 ``Conv2d``; ReLU and Dropout stay.
    At the input size the classifier was built for, the result gives the same numbers
    (as a ``1 × 1`` map); on a larger input it gives a map of class scores, one per
    window the classifier would have seen. ``model`` is left untouched.

    Supported layouts: a model with ``.features`` and an ``nn.Sequential`` ``.classifier``
    of Linear, Flatten, Dropout and element-wise activation layers (``PatchClassifier``,
    torchvision's VGG and AlexNet, whose ``avgpool`` is the identity at their native input
    size and is dropped); or an ``nn.Sequential`` with one ``nn.Flatten`` between its
    features and its Linear layers.

    Args:
        model: the classifier.
        feature_size: side (or ``(height, width)``) of the feature map the first Linear
            flattens. Default None: read from the model's ``avgpool`` if it has one,
            else taken as square.

    Returns:
        A :class:`FullyConvNet` in the same train/eval mode as ``model``.

    Shape:
        input ``(N, C_in, H, W)`` → scores ``(N, num_classes, H', W')``; ``H' = W' = 1``
        at the classifier's own input size.

    Example:
        >>> model = PatchClassifier(patch_size=32).eval()
        >>> convolutionalize(model)(torch.zeros(1, 1, 128, 128)).shape
        torch.Size([1, 2, 13, 13])

    Taught in chapter 2 (FC layers vs fully convolutional networks).
    """
    features, pool, layers = _split(model)
    linears = [layer for layer in layers if isinstance(layer, nn.Linear)]
    unsupported = [type(layer).__name__ for layer in layers if not isinstance(layer, (nn.Linear, *_ELEMENTWISE))]
    if not linears or unsupported:
        raise ValueError(
            f"convolutionalize needs a classifier of Linear layers with element-wise layers between them "
            f"(ReLU, Dropout, ...); got {[type(layer).__name__ for layer in layers]}"
            + (f", where {', '.join(unsupported)} cannot act on a map of positions" if unsupported else "")
            + ". Replace those layers, or convolutionalize by hand."
        )
    convs = [module for module in features.modules() if isinstance(module, nn.Conv2d)]
    if not convs:
        raise ValueError("convolutionalize found no nn.Conv2d in the features; it needs them to know the channel count")
    channels = convs[-1].out_channels

    if feature_size is None and isinstance(pool, nn.AdaptiveAvgPool2d):
        feature_size = pool.output_size
    elif pool is not None and not isinstance(pool, nn.AdaptiveAvgPool2d):
        raise ValueError(f"convolutionalize can drop an nn.AdaptiveAvgPool2d avgpool, got {type(pool).__name__}")
    positions, remainder = divmod(linears[0].in_features, channels)
    if feature_size is None:
        side = int(round(positions**0.5))
        feature_size = (side, side)
    kernel = (feature_size, feature_size) if isinstance(feature_size, int) else tuple(feature_size)
    if remainder or kernel[0] * kernel[1] != positions:
        raise ValueError(
            f"the first Linear has {linears[0].in_features} inputs, which is not {channels} channels × "
            f"{kernel[0]}×{kernel[1]} positions; pass feature_size=(height, width) of the flattened feature map"
        )

    head: list[nn.Module] = []
    for layer in layers:
        if isinstance(layer, nn.Linear):
            head.append(_as_conv(layer, channels, kernel))
            channels, kernel = layer.out_features, (1, 1)
        else:
            head.append(copy.deepcopy(layer))
    return FullyConvNet(copy.deepcopy(features), nn.Sequential(*head)).train(model.training)


class LayerParameters(NamedTuple):
    """One row of :func:`parameter_table`."""

    name: str  # the module's name inside the model, e.g. "classifier.1"
    kind: str  # its class, e.g. "Linear"
    shape: tuple[int, ...]  # the weight's shape
    parameters: int  # weights + biases


def parameter_table(model: nn.Module) -> list[LayerParameters]:
    """Per-layer parameter counts, in the order the layers are registered.

    Only layers that hold parameters of their own are listed. Works on the meta device,
    so a VGG-16 can be counted without allocating its 138M numbers.

    Example:
        >>> rows = parameter_table(PatchClassifier())
        >>> [row.parameters for row in rows]
        [160, 4640, 18496, 262400, 514]

    Taught in chapter 2 (FC layers vs fully convolutional networks).
    """
    rows = []
    for name, module in model.named_modules():
        own = list(module.parameters(recurse=False))
        if own:
            weight = getattr(module, "weight", own[0])
            rows.append(LayerParameters(name, type(module).__name__, tuple(weight.shape), sum(p.numel() for p in own)))
    return rows


def sample_patches(
    image: np.ndarray,
    mask: np.ndarray,
    count: int,
    patch_size: int = 32,
    *,
    balanced: bool = True,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random square crops of an image, each labelled by the class of its centre pixel.

    This is the training set of a sliding-window pixel classifier (Ciresan et al., 2012),
    the approach the U-Net paper improves on.

    Args:
        image: ``(H, W)`` grayscale image.
        mask: ``(H, W)`` class indices.
        count: number of patches.
        patch_size: side of each patch, at most ``min(H, W)``. Default 32.
        balanced: draw each class of the centre pixel equally often. Default True.
        seed: the random seed.

    Returns:
        ``(patches (count, 1, patch_size, patch_size) float32, labels (count,) int64)``;
        the label is ``mask[top + patch_size // 2, left + patch_size // 2]``.

    Example:
        >>> patches, labels = sample_patches(np.zeros((64, 64)), np.ones((64, 64)), 8)
        >>> patches.shape, labels.tolist()
        (torch.Size([8, 1, 32, 32]), [1, 1, 1, 1, 1, 1, 1, 1])
    """
    height, width = image.shape
    if mask.shape != image.shape or patch_size > min(height, width):
        raise ValueError(
            f"expected image and mask of the same (H, W), at least {patch_size} pixels each, "
            f"got image {image.shape} and mask {mask.shape}; pass a smaller patch_size or a larger image"
        )
    rng = np.random.default_rng(seed)
    half = patch_size // 2
    # Candidate centres: every pixel whose patch fits inside the image.
    centres = mask[half : height - patch_size + half + 1, half : width - patch_size + half + 1]
    if balanced:
        classes = np.unique(centres)
        shares = np.array_split(np.arange(count), len(classes))  # count split as evenly as it goes
        chosen = np.concatenate([rng.choice(np.flatnonzero(centres == c), size=len(share)) for c, share in zip(classes, shares)])
        chosen = rng.permutation(chosen)
    else:
        chosen = rng.choice(centres.size, size=count)
    tops, lefts = np.unravel_index(chosen, centres.shape)
    patches = np.stack([image[t : t + patch_size, l : l + patch_size] for t, l in zip(tops, lefts)])
    labels = centres[tops, lefts]
    return torch.from_numpy(patches.astype(np.float32))[:, None], torch.from_numpy(labels.astype(np.int64))
