"""Segmentation metrics: the three ISBI 2012 scores of the U-Net paper, overlap, instances.

- ``pixel.py``: pixel error, IoU and Dice per class;
- ``rand.py``: the foreground-restricted Rand error (Arganda-Carreras et al., 2015);
- ``warping.py``: the topology-aware warping error (Jain et al., 2010);
- ``instances.py``: matching predicted to true objects at IoU thresholds.

Inputs are numpy arrays or torch tensors (detached, moved to the CPU); results are
Python floats, numpy arrays or small dataclasses.
"""

from .instances import InstanceMatch, instance_iou, match_instances
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
]
