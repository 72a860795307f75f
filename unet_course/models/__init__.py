"""Networks of the course: the FC-vs-FCN classifier and the U-Net."""

from .fcn import FullyConvNet, LayerParameters, PatchClassifier, convolutionalize, parameter_table, sample_patches
from .unet import (
    UNet,
    center_crop,
    unet_input_size_for,
    unet_layer_shapes,
    unet_margin,
    unet_nearest_valid_sizes,
    unet_num_parameters,
    unet_output_size,
    unet_valid_input_size,
)

__all__ = [
    "FullyConvNet",
    "LayerParameters",
    "PatchClassifier",
    "convolutionalize",
    "parameter_table",
    "sample_patches",
    "UNet",
    "center_crop",
    "unet_input_size_for",
    "unet_layer_shapes",
    "unet_margin",
    "unet_nearest_valid_sizes",
    "unet_num_parameters",
    "unet_output_size",
    "unet_valid_input_size",
]
