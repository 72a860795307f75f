"""Chapter 8 on CamVid: the path a Colab reader takes, run on a small CamVid-format folder made here.

The stored chapter runs offline on synthetic scenes. Here `$UNET_COURSE_DATA/camvid/camvid_tiny` holds
twelve scenes in fastai's layout (``codes.txt`` with CamVid's 32 class names, ``images/NAME.png``,
``labels/NAME_P.png``), drawn like a street: sky above the horizon, a road in perspective with a
dashed lane marking and a car, roadside around it. Every code cell of the chapter runs under the
smoke budget, as CI runs it, with the Hugging Face hub offline so that `smp.Unet` falls back to
random encoder weights without opening a connection.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = ROOT / "book" / "08_beyond_biomedicine.ipynb"
INSTALL_MARKER = "# Install the course library"  # the Colab-only install cell never runs here
CODES = ["Animal", "Archway", "Bicyclist", "Bridge", "Building", "Car", "CartLuggagePram", "Child", "Column_Pole",
         "Fence", "LaneMkgsDriv", "LaneMkgsNonDriv", "Misc_Text", "MotorcycleScooter", "OtherMoving", "ParkingBlock",
         "Pedestrian", "Road", "RoadShoulder", "Sidewalk", "SignSymbol", "Sky", "SUVPickupTruck", "TrafficCone",
         "TrafficLight", "Train", "Tree", "Truck_Bus", "Tunnel", "VegetationMisc", "Void", "Wall"]  # CamVid's codes.txt
COLOURS = {"Sky": (120, 170, 240), "Road": (90, 90, 95), "LaneMkgsDriv": (250, 230, 60), "Car": (200, 40, 40),
           "Tree": (60, 140, 60), "Building": (170, 120, 100)}


def street_scene(rng: np.random.Generator, height: int = 96, width: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """An RGB street scene (H, W, 3) uint8 and its CamVid label image (H, W) of indices into CODES."""
    horizon = int(rng.integers(30, 40))
    rows, cols = np.mgrid[0:height, 0:width]
    labels = np.full((height, width), CODES.index("Sky"), dtype=np.uint8)
    labels[horizon:] = CODES.index(rng.choice(["Tree", "Building"]))
    centre = width / 2 + rng.uniform(-10, 10)
    half = (rows - horizon) * 0.8 + 1  # the road widens towards the car
    road = (rows >= horizon) & (np.abs(cols - centre) < half)
    labels[road] = CODES.index("Road")
    dashes = road & (np.abs(cols - centre) < 1 + (rows - horizon) / 40) & ((rows // 6) % 2 == 0)
    labels[dashes] = CODES.index("LaneMkgsDriv")
    top = int(rng.integers(horizon + 20, height - 20))
    left = int(centre + rng.uniform(4, 14))
    labels[top:top + 12, left:left + 18] = CODES.index("Car")
    image = np.zeros((height, width, 3), dtype=np.float64)
    for name, colour in COLOURS.items():
        image[labels == CODES.index(name)] = colour
    image += rng.normal(0, 8, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), labels


def make_camvid_folder(root: Path, count: int = 12) -> None:
    folder = root / "camvid" / "camvid_tiny"
    (folder / "images").mkdir(parents=True)
    (folder / "labels").mkdir()
    (folder / "codes.txt").write_text("\n".join(CODES) + "\n")
    rng = np.random.default_rng(0)
    for index in range(count):
        image, labels = street_scene(rng)
        Image.fromarray(image).save(folder / "images" / f"0001TP_{index:06d}.png")
        Image.fromarray(labels).save(folder / "labels" / f"0001TP_{index:06d}_P.png")


def test_the_scenes_read_back_as_the_five_road_classes(tmp_path):
    from unet_course.data import ROAD_CLASSES, CamVidTiny

    make_camvid_folder(tmp_path)
    data = CamVidTiny(tmp_path / "camvid")
    image, mask = data[0]
    assert len(data) == 12 and image.shape == (3, 96, 128) and mask.shape == (96, 128)
    assert set(mask.unique().tolist()) == {ROAD_CLASSES.index(name) for name in ("sky", "road", "lane marking",
                                                                                 "vehicle", "roadside")}


@pytest.mark.slow
def test_the_chapter_runs_on_camvid(tmp_path, monkeypatch):
    make_camvid_folder(tmp_path / "data")
    notebook = json.loads(CHAPTER.read_text())
    sources = ["".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "code"
               and not "".join(cell["source"]).startswith(INSTALL_MARKER)]
    sources.append("print(type(data).__name__, online, encoder_weights, len(train_data), len(val_data), "
                   "float(np.nanmean(scores['our UNet'])), float(np.nanmean(scores['smp.Unet'])))")
    runnable = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in sources])
    runnable.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    monkeypatch.setenv("UNET_COURSE_BUDGET", "smoke")
    monkeypatch.setenv("UNET_COURSE_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # no ImageNet weights: smp.Unet starts from random ones
    work = tmp_path / "work"
    work.mkdir()
    client = NotebookClient(runnable, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(work)}})
    client.execute()  # every assert of the chapter holds on CamVid scenes
    summary = "".join(output.get("text", "") for output in runnable.cells[-1].outputs).split()
    assert summary[:5] == ["CamVidTiny", "True", "None", "8", "4"], summary  # CamVid read, random encoder weights
    assert all(0 <= float(value) <= 1 for value in summary[5:7]), summary
    loaded = "".join(output.get("text", "") for cell in runnable.cells for output in cell.outputs)
    assert "CamVid tiny: 12 scenes → 8 for training, 4 held out; images (3, 96, 128)" in loaded
    assert "could not load the ImageNet weights" in loaded and "network connections while building: 0" in loaded
