"""unet_course: the U-Net paper (Ronneberger, Fischer & Brox, 2015) as a small PyTorch library.

Each module holds one idea the course teaches; see the book's API page for the list.
Importing the package never touches the network.
"""

from .budget import Budget, best_device, describe_runtime, get_budget, seed_everything, training_run
from .data import ISBI2012, ImageMaskFolder, SyntheticCells, SyntheticMembranes, synthetic_cells, synthetic_membranes
from .data import ROAD_CLASSES, CamVidTiny, SyntheticRoads, synthetic_roads
from .augment import Deformed, ElasticDeformation, displacement_field, elastic_deform, random_displacement
from .gray_values import GrayValues, random_gray_values, vary_gray_values
from .models.fcn import PatchClassifier, convolutionalize
from .models.unet import UNet, unet_input_size_for, unet_margin, unet_output_size, unet_valid_input_size
from .sizes import check_tile_size
from .tiling import mirror_pad, predict_tiled
from .weight_map import (
    border_weight_map,
    class_weight_map,
    instances_from_mask,
    semantic_target,
    separation_border,
    unet_weight_map,
)
from .losses import center_crop, weighted_cross_entropy
from .metrics import (
    InstanceMatch,
    RandScores,
    challenge_sweep,
    dice,
    instance_iou,
    iou,
    match_instances,
    nvidia_dice,
    nvidia_resize,
    pixel_error,
    rand_error,
    rand_scores,
    topology_preserving_warp,
    v_info,
    v_rand,
    warping_error,
)
from .runs import History
from .batches import paper_augmentation
from .train import fit, paper_loss, validate
from .hub import pretrained, pretrained_config
from .calibrate import choose_threshold
from .evaluation import evaluate_folder

__version__ = "0.1.0"

__all__ = [
    "History",
    "fit",
    "validate",
    "paper_loss",
    "paper_augmentation",
    "pretrained",
    "pretrained_config",
    "choose_threshold",
    "evaluate_folder",
    "Budget",
    "best_device",
    "describe_runtime",
    "get_budget",
    "training_run",
    "seed_everything",
    "ISBI2012",
    "ImageMaskFolder",
    "SyntheticCells",
    "SyntheticMembranes",
    "synthetic_cells",
    "synthetic_membranes",
    "ROAD_CLASSES",
    "CamVidTiny",
    "SyntheticRoads",
    "synthetic_roads",
    "elastic_deform",
    "random_displacement",
    "GrayValues",
    "random_gray_values",
    "vary_gray_values",
    "displacement_field",
    "ElasticDeformation",
    "Deformed",
    "PatchClassifier",
    "convolutionalize",
    "UNet",
    "unet_output_size",
    "unet_input_size_for",
    "unet_valid_input_size",
    "unet_margin",
    "predict_tiled",
    "check_tile_size",
    "mirror_pad",
    "unet_weight_map",
    "border_weight_map",
    "class_weight_map",
    "separation_border",
    "semantic_target",
    "instances_from_mask",
    "weighted_cross_entropy",
    "center_crop",
    "pixel_error",
    "iou",
    "dice",
    "rand_error",
    "rand_scores",
    "RandScores",
    "warping_error",
    "topology_preserving_warp",
    "match_instances",
    "instance_iou",
    "InstanceMatch",
    "v_rand",
    "v_info",
    "challenge_sweep",
    "nvidia_dice",
    "nvidia_resize",
]
