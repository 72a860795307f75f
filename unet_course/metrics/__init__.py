"""Segmentation metrics: the three ISBI 2012 scores of the U-Net paper, overlap, instances.

- ``pixel.py``: pixel error, IoU and Dice per class;
- ``rand.py``: the foreground-restricted Rand error (Arganda-Carreras et al., 2015);
- ``warping.py``: the topology-aware warping error (Jain et al., 2010);
- ``instances.py``: matching predicted to true objects at IoU thresholds;
- ``thinning.py``: the challenge's border thinning of predicted membranes to one-pixel lines;
- ``challenge.py``: V_Rand and V_Info after border thinning, the challenge's later scores;
- ``nvidia.py``: NVIDIA's evaluation Dice (soft, per image) and its 512 → 388 resize.

Inputs are numpy arrays or torch tensors (detached, moved to the CPU); results are
Python floats, numpy arrays or small dataclasses.
"""

from .challenge import (
    CHALLENGE_THRESHOLDS,
    ForegroundScores,
    ThresholdSweep,
    challenge_sweep,
    v_info,
    v_info_scores,
    v_rand,
    v_rand_scores,
)
from .instances import InstanceMatch, instance_iou, match_instances
from .nvidia import NVIDIA_EPS, NVIDIA_SIZE, nvidia_dice, nvidia_resize
from .thinning import interior_mask, thin_borders
from .pixel import confusion_matrix, dice, iou, pixel_error
from .rand import RandScores, contingency_table, rand_error, rand_scores
from .warping import simple_point_table, topology_preserving_warp, warping_error

__all__ = [
    "pixel_error",
    "confusion_matrix",
    "iou",
    "dice",
    "RandScores",
    "contingency_table",
    "rand_scores",
    "rand_error",
    "simple_point_table",
    "topology_preserving_warp",
    "warping_error",
    "InstanceMatch",
    "instance_iou",
    "match_instances",
    "CHALLENGE_THRESHOLDS",
    "ForegroundScores",
    "ThresholdSweep",
    "interior_mask",
    "thin_borders",
    "v_rand_scores",
    "v_info_scores",
    "v_rand",
    "v_info",
    "challenge_sweep",
    "NVIDIA_SIZE",
    "NVIDIA_EPS",
    "nvidia_dice",
    "nvidia_resize",
]
