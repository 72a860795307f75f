"""unet_course: the U-Net paper (Ronneberger, Fischer & Brox, 2015) as a small PyTorch library.

Each module holds one idea the course teaches; see the book's API page for the list.
Importing the package never touches the network.
"""

from .budget import Budget, device, get_budget, seed_everything
from .data import ISBI2012, ImageMaskFolder, SyntheticCells, SyntheticMembranes, synthetic_cells, synthetic_membranes

__version__ = "0.1.0"

__all__ = [
    "Budget",
    "device",
    "get_budget",
    "seed_everything",
    "ISBI2012",
    "ImageMaskFolder",
    "SyntheticCells",
    "SyntheticMembranes",
    "synthetic_cells",
    "synthetic_membranes",
]
