"""The "use it in your project" page: its example runs as printed, and its API table is real.

The example's code block is read from the page and executed on a tiny folder of images, with
only its settings line swapped for a 2-step, small-model run.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PIL import Image

import unet_course

PAGE = Path(__file__).resolve().parents[1] / "book" / "use_in_your_project.md"
SETTINGS = "steps, tile_size, base_channels = 2000, 572, 32"


def _example() -> str:
    text = PAGE.read_text()
    section = text.split("## Train on your own folder of images", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_example_is_about_twenty_lines_and_has_the_settings_line():
    code = _example()
    assert SETTINGS in code
    assert len([line for line in code.splitlines() if line.strip()]) <= 22


def test_example_trains_saves_and_predicts_on_a_tiny_folder(tmp_path, monkeypatch, capsys):
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        mask = np.zeros((100, 112), dtype=np.uint8)  # fit mirror-pads by 92 px: larger than that
        mask[20:70, 10 + rng.integers(0, 20) : 90] = 255  # a bright rectangle on a dark background
        image = (0.2 * 255 + 0.6 * mask + rng.normal(0, 10, mask.shape)).clip(0, 255).astype(np.uint8)
        for folder, array in (("images", image), ("masks", mask)):
            (tmp_path / "my_data" / folder).mkdir(parents=True, exist_ok=True)
            Image.fromarray(array).save(tmp_path / "my_data" / folder / f"{name}.png")
    monkeypatch.chdir(tmp_path)
    code = _example().replace(SETTINGS, "steps, tile_size, base_channels = 2, 188, 4")
    namespace: dict = {}
    exec(compile(code, str(PAGE), "exec"), namespace)
    assert (tmp_path / "my_data" / "unet.pt").exists()
    assert namespace["num_classes"] == 2 and len(namespace["history"].loss) == 2
    assert namespace["probabilities"].shape == (2, 100, 112)
    assert namespace["labels"].shape == (100, 112)
    assert "final loss" in capsys.readouterr().out


def test_every_name_in_the_api_table_is_exported():
    section = PAGE.read_text().split("## The public API on one screen", 1)[1].split("## ", 1)[0]
    table = "\n".join(line for line in section.splitlines() if line.startswith("|"))
    names = {re.match(r"\w+", code).group(0) for code in re.findall(r"`([A-Za-z_]\w*)", table)}
    missing = sorted(name for name in names if not hasattr(unet_course, name))
    assert not missing, f"the page lists names unet_course does not export: {missing}"
    assert len(names) > 30
