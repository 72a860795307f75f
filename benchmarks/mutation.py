"""Mutation testing with mutmut: does the suite notice small changes to the code it runs?

    python benchmarks/mutation.py                 # every target below (what `make mutation` runs; hours on 2 cores)
    python benchmarks/mutation.py sizes hub       # some targets, by name
    python benchmarks/mutation.py --report        # rewrite benchmarks/results/mutation.md from the stored scores
    python benchmarks/mutation.py --survivors losses   # after adding tests or a stopped run: only survivors and unchecked mutants
    python benchmarks/mutation.py --collect augment    # score a run stopped early (unchecked mutants left out)

mutmut changes one operator, number, string or call at a time (a *mutant*) and runs the tests
that execute the changed function; a mutant the tests still pass is a *survivor*. Each target is
one module (or a few functions of one, for the security paths) with only the test files that
cover it, run in its own scratch copy under ``.mutation/<target>/`` so that the repository is
never touched. The score is killed / (mutants − equivalent), where an equivalent mutant is one
no test can tell apart (listed in ``EQUIVALENT`` with the reason). Each target's counts and
survivors go to ``benchmarks/results/mutation/<target>.json``; ``mutation.md`` sums them up.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRATCH = ROOT / ".mutation"
RESULTS = ROOT / "benchmarks" / "results" / "mutation"


@dataclass(frozen=True)
class Target:
    name: str
    module: str  # the file to mutate
    tests: tuple[str, ...]  # the test files (or test ids) that cover it
    functions: tuple[str, ...] = ()  # only these functions' mutants (mutmut globs); all when empty
    wing: str = "paper"


TARGETS = [
    Target("sizes", "unet_course/sizes.py", ("tests/test_mutation_sizes.py", "tests/test_caught_bugs.py")),
    Target("losses", "unet_course/losses.py", ("tests/test_losses.py", "tests/test_mutation_losses.py")),
    Target("augment", "unet_course/augment.py", ("tests/test_augment.py", "tests/test_pinned_defaults.py",
                                               "tests/test_mutation_augment.py")),
    Target("gray values", "unet_course/gray_values.py", ("tests/test_gray_values.py", "tests/test_pinned_defaults.py")),
    Target("tiling", "unet_course/tiling.py", ("tests/test_tiling.py", "tests/test_mutation_tiling.py")),
    Target("weight map", "unet_course/weight_map.py", ("tests/test_weights.py", "tests/test_pinned_defaults.py",
                                                   "tests/test_mutation_weights.py")),
    Target("unet", "unet_course/models/unet.py", ("tests/test_unet.py", "tests/test_mutation_unet.py")),
    Target("fcn", "unet_course/models/fcn.py", ("tests/test_fcn.py", "tests/test_mutation_fcn.py")),
    Target("metrics.pixel", "unet_course/metrics/pixel.py", ("tests/test_metrics_pixel.py",
                                                         "tests/test_mutation_metrics.py")),
    Target("metrics.rand", "unet_course/metrics/rand.py", ("tests/test_metrics_rand.py",
                                                       "tests/test_mutation_metrics.py")),
    Target("metrics.warping", "unet_course/metrics/warping.py", ("tests/test_metrics_warping.py",
                                                             "tests/test_mutation_metrics.py")),
    Target("metrics.instances", "unet_course/metrics/instances.py", ("tests/test_metrics_instances.py",
                                                                 "tests/test_mutation_metrics.py")),
    Target("metrics.thinning", "unet_course/metrics/thinning.py", ("tests/test_metrics_challenge.py",)),
    Target("metrics.challenge", "unet_course/metrics/challenge.py", ("tests/test_metrics_challenge.py",)),
    Target("metrics.nvidia", "unet_course/metrics/nvidia.py", ("tests/test_metrics_nvidia.py",)),
    Target("download", "unet_course/data/download.py", ("tests/test_data_files.py", "tests/test_mutation_security.py"),
           wing="security"),
    Target("hub", "unet_course/hub.py", ("tests/test_pretrained.py", "tests/test_caught_bugs.py",
                                         "tests/test_mutation_security.py"), wing="security"),
    Target("checkpoint loading", "unet_course/runs.py",
           ("tests/test_mutation_security.py::test_load_checkpoint_loads_tensors_and_refuses_code",
            "tests/test_mutation_security.py::"
            "test_checkpoints_load_weights_only_even_when_the_environment_says_otherwise",
            "tests/test_mutation_security.py::test_load_checkpoint_puts_the_tensors_where_it_is_told",
            "tests/test_mutation_security.py::"
            "test_read_checkpoint_names_the_file_it_refuses_and_a_stream_as_the_checkpoint",
            "tests/test_train.py::test_checkpoint_is_atomic_and_safe",
            "tests/test_train.py::test_read_checkpoint_names_a_damaged_file_and_never_suggests_unsafe_loading"),
           ("unet_course.runs.x_read_checkpoint*",), wing="security"),
    Target("divergence check", "unet_course/train.py",
           ("tests/test_caught_bugs.py::test_an_infinite_loss_stops_training_before_the_update",
            "tests/test_mutation_training_step.py", "tests/test_train.py::test_loss_falls_on_an_easy_problem",
            "tests/test_train.py::test_resume_continues_exactly",
            "tests/test_train.py::test_a_custom_loss_gets_the_cropped_target_and_weight_map",
            "tests/test_train.py::test_a_loss_that_cannot_take_the_crop_is_explained",
            "tests/test_refusals.py::test_library_refusal"),
           ("unet_course.train.x\u01c1_Trainer\u01c1step*",), wing="security"),
    Target("export tolerance", "unet_course/export.py", ("tests/test_caught_bugs.py",),
           ("unet_course.export.x__checked*",), wing="security"),
    Target("run files", "unet_course/runs.py",
           ("tests/test_mutation_runs.py", "tests/test_refusals.py", "tests/test_mutation_security.py"),
           tuple(f"unet_course.runs.{name}*" for name in (  # all but read_checkpoint (above) and History.plot (a figure)
               "x_config_path", "x_run_files", "x_run_threshold", "x_read_config", "x_write_config",
               "x_model_from_config", "x_training_config", "x_model_description", "x_weights_sha256",
               "x_write_checkpoint", "x__check_digest", "x_check_resume", "x__unet_shape", "x_check_config_fits",
               "x_load_parameters", "x_load_run", "x\u01c1History\u01c1record", "x\u01c1History\u01c1last_validation",
               "x\u01c1History\u01c1smoothed_loss", "x\u01c1History\u01c1save", "x\u01c1History\u01c1load")),
           wing="security"),
]

_RING = ("labelling the ring 8-connected for 4-connected cells gives the same 512-entry table (checked): two "
         "diagonal 4-neighbours it joins wrongly enclose a background corner, which makes the background count 2 "
         "anyway")

# Mutants no test can tell apart from the code, by (module, the mutated line as the diff shows it): why.
EQUIVALENT: dict[tuple[str, str], str] = {
    ("unet_course/losses.py", "ignored = -101 if ignore_index is None else ignore_index"):
        "without ignore_index every target is checked to be a class 0..K-1, so no negative value matches a pixel",
    ("unet_course/losses.py", "size, target_size = tuple(logits.shape[+2:]), tuple(target.shape[-2:])"):
        "logits are checked to be 4-D just above, where shape[2:] is shape[-2:]",
    ("unet_course/losses.py", "loss = loss * weight_map.to(device=None, dtype=loss.dtype)"):
        "device=None keeps the weight map where it is; it differs only with logits on a GPU and weights on the CPU, "
        "which a CPU-only test run cannot hold",
    ("unet_course/losses.py", "loss = loss * weight_map.to(dtype=loss.dtype)"):
        "the same as device=None: differs only across devices, which a CPU-only test run cannot hold",
    ("unet_course/augment.py", 'return {"XXsampling_gridXX": None}'):
        "without a tensor among the inputs torchvision calls transform on none of them, so the key is never read",
    ("unet_course/augment.py", 'return {"SAMPLING_GRID": None}'):
        "without a tensor among the inputs torchvision calls transform on none of them, so the key is never read",
    ("unet_course/augment.py", "coarse = random_displacement(1, self.grid, self.elastic_sigma).to(None)"):
        "moves nothing; differs only for inputs on a GPU, which a CPU-only test run cannot hold",
    ("unet_course/augment.py", "if sampling_grid is None and not isinstance(inpt, torch.Tensor):"):
        "torchvision passes only tensors (and PIL images, refused earlier) to transform, so the second test is "
        "always false and `or` and `and` agree",
    ("unet_course/augment.py",
     "return tv_tensors.wrap(out, like=inpt) if (isinstance(inpt, tv_tensors.TVTensor)) or True else out"):
        "wrapping a plain tensor like a plain tensor returns it as a plain tensor",
    ("unet_course/tiling.py", "positions = torch.arange(-before, length + after, device=None)"):
        "the indices are made on the CPU either way in a CPU-only test run; differs only for images on a GPU",
    ("unet_course/tiling.py", "positions = torch.arange(-before, length + after, )"):
        "the indices are made on the CPU either way in a CPU-only test run; differs only for images on a GPU",
    ("unet_course/tiling.py", "if outputs.shape[-1] != expected or outputs.shape[+2] != expected:"):
        "outputs are always (B, K, h, w) here, where dimension 2 is dimension -2",
    ("unet_course/tiling.py",
     'raise ValueError(f"the model mapped a {tile_size}-px tile to {tuple(outputs.shape[+2:])}, "'):
        "outputs are always (B, K, h, w) here, where shape[2:] is shape[-2:]",
    ("unet_course/tiling.py", "return torch.rot90(x, turns, dims=(+2, -1))"):
        "tiles are always (B, C, T, T) here, where dimension 2 is dimension -2",
    ("unet_course/tiling.py", "x = torch.rot90(x, -turns, dims=(+2, -1))"):
        "outputs are always (B, K, t, t) here, where dimension 2 is dimension -2",
    ('unet_course/augment.py', 'ys = torch.linspace(-1, 1, height, device=None, dtype=field.dtype)'):
        "moves nothing in a CPU-only test run; differs only for tensors on a GPU",
    ('unet_course/augment.py', 'ys = torch.linspace(-1, 1, height, dtype=field.dtype)'):
        "moves nothing in a CPU-only test run; differs only for tensors on a GPU",
    ('unet_course/augment.py', 'xs = torch.linspace(-1, 1, width, device=None, dtype=field.dtype)'):
        "moves nothing in a CPU-only test run; differs only for tensors on a GPU",
    ('unet_course/augment.py', 'xs = torch.linspace(-1, 1, width, dtype=field.dtype)'):
        "moves nothing in a CPU-only test run; differs only for tensors on a GPU",
    ('unet_course/augment.py', 'grid = torch.empty(field.shape[0], height, width, 2, device=None, dtype=field.dtype)'):
        "moves nothing in a CPU-only test run; differs only for tensors on a GPU",
    ('unet_course/augment.py',
     'displacement = random_displacement(n, grid, elastic_sigma, generator=generator, device=None)'):
        "moves nothing in a CPU-only test run; differs only for tensors on a GPU",
    ('unet_course/augment.py', 'displacement = random_displacement(n, grid, elastic_sigma, generator=generator, )'):
        "moves nothing in a CPU-only test run; differs only for tensors on a GPU",
    ('unet_course/augment.py', 'field = displacement_field(displacement.to(None, work_dtype), (height, width))'):
        "moves nothing in a CPU-only test run; differs only for tensors on a GPU",
    ('unet_course/augment.py', 'field = displacement_field(displacement.to(work_dtype), (height, width))'):
        "moves nothing in a CPU-only test run; differs only for tensors on a GPU",
    ('unet_course/tiling.py', 'rows = _reflect_indices(image.shape[-2], top, bottom, None)'):
        "moves nothing in a CPU-only test run; differs only for tensors on a GPU",
    ('unet_course/tiling.py', 'cols = _reflect_indices(image.shape[-1], left, right, None)'):
        "moves nothing in a CPU-only test run; differs only for tensors on a GPU",
    ('unet_course/hub.py', 'return torch.load(path, map_location=None, weights_only=True)'):
        "moves nothing in a CPU-only test run; differs only for tensors on a GPU",
    ('unet_course/hub.py', 'return torch.load(path, weights_only=True)'):
        "moves nothing in a CPU-only test run; differs only for tensors on a GPU",
    ("unet_course/augment.py", "height, width = field.shape[+2:]"):
        "the field is always (N, 2, H, W) here, where shape[2:] is shape[-2:]",
    ('unet_course/augment.py',
     'return torch.where(x < 1, near, torch.where(x < 2, far, torch.zeros_like(x)))'):
        'at |x| = 1 both cubic pieces are 0, so which one takes it does not matter',
    ('unet_course/augment.py',
     'return torch.where(x <= 1, near, torch.where(x <= 2, far, torch.zeros_like(x)))'):
        'at |x| = 2 the outer piece is 0, as the zeros are',
    ('unet_course/augment.py',
     'return torch.where(x <= 1, near, torch.where(x < 3, far, torch.zeros_like(x)))'):
        'the four taps of a pixel are never more than 2 grid steps from it, so no distance reaches 2 < |x| < 3',
    ('unet_course/augment.py',
     'if mode != "NEAREST":'):
        'rounding and clamping nearest-neighbour samples of integers changes nothing: they are input values already',
    ('unet_course/augment.py',
     'if mode != "XXnearestXX":'):
        'rounding and clamping nearest-neighbour samples of integers changes nothing: they are input values already',
    ('unet_course/augment.py',
     'rows = _cubic_matrix(coarse.shape[2], height).to(None, dtype)  # (H, grid_h)'):
        'moves nothing in a CPU-only test run; differs only for tensors on a GPU',
    ('unet_course/augment.py',
     'rows = _cubic_matrix(coarse.shape[2], height).to(dtype)  # (H, grid_h)'):
        'moves nothing in a CPU-only test run; differs only for tensors on a GPU',
    ('unet_course/augment.py',
     'cols = _cubic_matrix(coarse.shape[3], width).to(None, dtype)  # (W, grid_w)'):
        'moves nothing in a CPU-only test run; differs only for tensors on a GPU',
    ('unet_course/augment.py',
     'cols = _cubic_matrix(coarse.shape[3], width).to(dtype)  # (W, grid_w)'):
        'moves nothing in a CPU-only test run; differs only for tensors on a GPU',
    ('unet_course/augment.py',
     'grid = torch.empty(field.shape[0], height, width, 2, dtype=field.dtype)'):
        'moves nothing in a CPU-only test run; differs only for tensors on a GPU',
    ('unet_course/augment.py',
     'coarse = torch.randn(n, 2, grid, grid, generator=generator, ) * elastic_sigma'):
        'draws on the CPU either way in a CPU-only test run (a meta device is honoured by the move after it)',
    ('unet_course/augment.py',
     'coarse = torch.randn(n, 2, grid, grid, generator=generator, device=None) * elastic_sigma'):
        'draws on the CPU either way in a CPU-only test run (a meta device is honoured by the move after it)',
    ('unet_course/augment.py',
     'draw_on = None'):
        'a CPU generator draws on the CPU either way; differs only for a GPU generator',
    ('unet_course/augment.py',
     'draw_on = generator.device if (generator is not None) and False else device'):
        'a CPU generator draws on the CPU either way; differs only for a GPU generator',
    ('unet_course/augment.py',
     'return coarse if (device is None) and False else coarse.to(device)'):
        'moving to device None moves nothing',
    ('unet_course/tiling.py',
     'out_h, out_w = model(torch.zeros(1, channels, tile_size, tile_size, device=None, dtype=dtype)).shape[-2:]'):
        'moves nothing in a CPU-only test run; differs only for tensors on a GPU',
    ('unet_course/tiling.py',
     'out_h, out_w = model(torch.zeros(1, channels, tile_size, tile_size, dtype=dtype)).shape[-2:]'):
        'moves nothing in a CPU-only test run; differs only for tensors on a GPU',
    ('unet_course/tiling.py',
     'out_h, out_w = model(torch.zeros(1, channels, tile_size, tile_size, device=device, dtype=dtype)).shape[+2:]'):
        'the output is (1, K, h, w), where shape[2:] is shape[-2:]',
    ('unet_course/tiling.py',
     'out_h, out_w = model(torch.zeros(2, channels, tile_size, tile_size, device=device, dtype=dtype)).shape[-2:]'):
        'a batch of two measures the same output size as a batch of one',
    ("unet_course/train.py", "self.optimizer.zero_grad(set_to_none=False)"):
        "zeroed gradients instead of None: SGD makes the same update for every parameter that gets a gradient, and "
        "one that never gets one keeps None either way; only memory differs",
    ("unet_course/train.py", "self.optimizer.zero_grad(set_to_none=None)"):
        "None is falsy: the same as set_to_none=False (see there)",
    ("unet_course/train.py", "images, masks, weight_maps = (t.to(None) for t in batch)"):
        "moves nothing; differs only when the batch and the model are on different devices, which a CPU-only test "
        "run cannot hold",
    ("unet_course/metrics/pixel.py", 'return float("NAN")'):
        'float() reads "nan" in any case: float("NAN") is the same nan',
    ("unet_course/metrics/pixel.py",
     "counts = confusion_matrix(pred, truth, num_classes, threshold=threshold).astype(None)"):
        "numpy reads dtype None as float64, the dtype asked for",
    ("unet_course/metrics/rand.py", "return np.arange(labels.max() + 1), labels.astype(np.int64, copy=None)"):
        "the index is only read (codes are a new array), so a copy of it changes nothing but memory",
    ("unet_course/metrics/rand.py", "return np.arange(labels.max() + 1), labels.astype(np.int64, )"):
        "the index is only read (codes are a new array), so a copy of it changes nothing but memory",
    ("unet_course/metrics/rand.py", "return np.arange(labels.max() + 1), labels.astype(np.int64, copy=True)"):
        "the index is only read (codes are a new array), so a copy of it changes nothing but memory",
    ("unet_course/metrics/rand.py", "if labels.size and labels.min() > 0 and labels.max() < labels.size:"):
        "picks the fast path (arange) or np.unique, which give the same ids for every label present, in the "
        "same order; the table lists only labels present",
    ("unet_course/metrics/rand.py", "if labels.size and labels.min() >= 1 and labels.max() < labels.size:"):
        "picks the fast path (arange) or np.unique, which give the same ids for every label present, in the "
        "same order; the table lists only labels present",
    ("unet_course/metrics/rand.py", "if labels.size and labels.min() >= 0 and labels.max() <= labels.size:"):
        "picks the fast path (arange) or np.unique, which give the same ids for every label present, in the "
        "same order; the table lists only labels present",
    ("unet_course/metrics/rand.py", "return np.arange(labels.max() + 2), labels.astype(np.int64, copy=False)"):
        "one more id that no pixel carries: the table lists only overlapping pairs, so it never shows",
    ("unet_course/metrics/rand.py", "if len(ids_a) * len(ids_b) <= 5 * max(codes.size, 1):"):
        "chooses between a dense bincount and np.unique, which give the same table; only speed and memory differ",
    ("unet_course/metrics/rand.py", "counts = counts.astype(None)"):
        "float64 counts: pair counts stay exact below 2**53, i.e. for objects under 9.4e7 pixels, larger than any "
        "image a test can hold",
    ("unet_course/metrics/rand.py", "true_sizes = np.bincount(true_index, weights=counts).astype(None)"):
        "float64 sizes: pair counts stay exact below 2**53, i.e. for objects under 9.4e7 pixels, larger than any "
        "image a test can hold",
    ("unet_course/metrics/rand.py", "pred_sizes = np.bincount(pred_index, weights=counts[joined]).astype(None)"):
        "float64 sizes: pair counts stay exact below 2**53, i.e. for objects under 9.4e7 pixels, larger than any "
        "image a test can hold",
    ("unet_course/metrics/rand.py", 'precision = both_pairs / pred_pairs if pred_pairs else float("NAN")'):
        'float() reads "nan" in any case: float("NAN") is the same nan',
    ("unet_course/metrics/rand.py", 'recall = both_pairs / true_pairs if true_pairs else float("NAN")'):
        'float() reads "nan" in any case: float("NAN") is the same nan',
    ("unet_course/metrics/rand.py", 'error = 1.0 - 2.0 * both_pairs / total if total else float("NAN")'):
        'float() reads "nan" in any case: float("NAN") is the same nan',
    ("unet_course/metrics/warping.py",
     "structure = ndimage.generate_binary_structure(2, 1 if (connectivity == 4) and False else 2)"): _RING,
    ("unet_course/metrics/warping.py",
     "structure = ndimage.generate_binary_structure(2, 2 if connectivity == 4 else 2)"):
        _RING,
    ("unet_course/metrics/warping.py",
     "structure = ndimage.generate_binary_structure(2, 1 if connectivity == 5 else 2)"):
        _RING,
    ("unet_course/metrics/warping.py",
     "structure = ndimage.generate_binary_structure(2, 1 if connectivity == 4 else 3)"):
        "generate_binary_structure(2, 3) is the full 3×3 block, as (2, 2) is",
    ("unet_course/metrics/warping.py", "ring[1, 1] = None"): "None stored into a boolean array is False",
    ("unet_course/metrics/warping.py", "offsets = np.array([dr * stride - dc for dr, dc in _NEIGHBOURS])"):
        "reads every neighbourhood mirrored left to right, and whether a pixel is simple does not change under a "
        "mirror (the table is symmetric, checked)",
    ("unet_course/metrics/warping.py", "codes = flat[pixels[:, None] - offsets].astype(np.int64) @ weights"):
        "reads every neighbourhood turned by 180°, and whether a pixel is simple does not change under the turn "
        "(checked on the table)",
    ("unet_course/metrics/warping.py", "pred, truth = pair(pred, truth, )"):
        "topology_preserving_warp, called next, refuses every shape but (H, W) with the same message",
    ("unet_course/metrics/warping.py", "pred, truth = pair(pred, truth, two_d=False)"):
        "topology_preserving_warp, called next, refuses every shape but (H, W) with the same message",
    ("unet_course/metrics/warping.py",
     'return float(np.mean(warped != target)) if target.size else float("NAN")'):
        'float() reads "nan" in any case: float("NAN") is the same nan',
    ('unet_course/gray_values.py', 'for name, value, high in zip(GrayValues._fields, gray_values, (float("INF"), 1.0, 1.0)):'):
        'float() reads "INF" as "inf": the same infinity',
    ('unet_course/gray_values.py', 'uniform = torch.rand(n, 3, generator=generator, device=None) * 2 - 1  # in [-1, 1)'):
        "the draw's device differs only when a generator or the device names a GPU, which a CPU-only test run cannot hold",
    ('unet_course/gray_values.py', 'uniform = torch.rand(n, 3, generator=generator, ) * 2 - 1  # in [-1, 1)'):
        "the draw's device differs only when a generator or the device names a GPU, which a CPU-only test run cannot hold",
    ('unet_course/gray_values.py', 'draw_on = None'):
        'where the numbers are drawn differs only off the CPU (a GPU generator or device), which a CPU-only test run cannot hold',
    ('unet_course/gray_values.py', 'strengths = torch.tensor(gray_values, dtype=None, device=uniform.device)'):
        'torch.tensor of Python floats is float32, the dtype torch.rand draws: the same dtype either way',
    ('unet_course/gray_values.py', 'strengths = torch.tensor(gray_values, dtype=uniform.dtype, device=None)'):
        "the strengths' device differs only off the CPU, which a CPU-only test run cannot hold",
    ('unet_course/gray_values.py', 'strengths = torch.tensor(gray_values, device=uniform.device)'):
        'torch.tensor of Python floats is float32, the dtype torch.rand draws: the same dtype either way',
    ('unet_course/gray_values.py', 'strengths = torch.tensor(gray_values, dtype=uniform.dtype, )'):
        "the strengths' device differs only off the CPU, which a CPU-only test run cannot hold",
    ('unet_course/gray_values.py', 'draw_on = generator.device if (generator is not None) and False else device'):
        'where the numbers are drawn differs only off the CPU (a GPU generator or device), which a CPU-only test run cannot hold',
    ('unet_course/gray_values.py', 'variation = uniform * strengths + torch.tensor([0.0, 1.0, 1.0], device=None)'):
        "the offsets' device differs only off the CPU, which a CPU-only test run cannot hold",
    ('unet_course/gray_values.py', 'variation = uniform * strengths + torch.tensor([0.0, 1.0, 1.0], )'):
        "the offsets' device differs only off the CPU, which a CPU-only test run cannot hold",
    ('unet_course/gray_values.py', 'return variation if (device is None) and False else variation.to(device)'):
        'variation.to(None) returns the variation unchanged, so calling it when device is None changes nothing',
    ('unet_course/gray_values.py', 'return variation if (device is None) or True else variation.to(device)'):
        "skipping .to(device) differs only when device names another device than the draw's, off the CPU",
    ('unet_course/gray_values.py', 'return variation if device is not None else variation.to(device)'):
        'both branches return the variation where it was drawn unless a GPU device is asked for (.to(None) is a no-op)',
    ('unet_course/gray_values.py', 'draw_on = generator.device if (generator is not None) or True else device'):
        'where the numbers are drawn differs only off the CPU (a GPU generator or device), which a CPU-only test run cannot hold',
    ('unet_course/gray_values.py', 'return variation if device is None else variation.to(None)'):
        '.to(None) keeps the variation where it was drawn, which differs from .to(device) only off the CPU',
    ('unet_course/gray_values.py', 'draw_on = generator.device if generator is None else device'):
        'where the numbers are drawn differs only off the CPU (a GPU generator or device), which a CPU-only test run cannot hold',
    ('unet_course/tiling.py', 'padded = mirror_pad(images, (0, covering[1] + width, 0, covering[0] - height))  # far sides only'):
        'the mirror padding past the covered area is never read: every tile lies within the covering size',
    ('unet_course/tiling.py', 'if outputs.shape[+2:] != crops[0].shape[-2:]:'):
        "the model's outputs are checked to be 4-D before, where shape[+2:] is shape[-2:]",
    ('unet_course/tiling.py', 'weight = (fades[0][i][:, None] * fades[1][j][None, :]).to(None)'):
        "the blend weights are float32 like a CPU model's output; .to(output) differs only for half precision or a GPU",
    ('unet_course/tiling.py', 'padded = mirror_pad(images, (0, covering[1] - width, 0, covering[0] + height))  # far sides only'):
        'the mirror padding past the covered area is never read: every tile lies within the covering size',
    ('unet_course/tiling.py', 'return (total * weights)[..., :height, :width]'):
        'the cross-fades sum to 1 at every pixel (cos² + sin²), so dividing by their sum and multiplying by it agree to float rounding',
    ('unet_course/tiling.py', 'if probe.ndim != 4 or probe.shape[0] != 1 or probe.shape[+2] != size:'):
        'probe.ndim is checked to be 4 first in the same condition, where shape[+2] is shape[-2]',
    ('unet_course/tiling.py', 'if outputs.shape[+2:] != probe.shape[-2:]:'):
        'the outputs of a 4-D probe are 4-D, where shape[+2:] is shape[-2:]',
    ('unet_course/tiling.py', 'if outputs.shape[-2:] != probe.shape[+2:]:'):
        'the probe is checked to be 4-D above, where shape[+2:] is shape[-2:]',
    ('unet_course/tiling.py', 'f"{tuple(outputs.shape[+2:])}")'):
        'the outputs of a 4-D probe are 4-D, where shape[+2:] is shape[-2:]',
    ('unet_course/tiling.py', 'offsets = (torch.arange(size, device=None) - size // 2).abs()'):
        "the offsets' device differs only off the CPU, which a CPU-only test run cannot hold",
    ('unet_course/tiling.py', 'offsets = (torch.arange(size, ) - size // 2).abs()'):
        "the offsets' device differs only off the CPU, which a CPU-only test run cannot hold",
    ('unet_course/tiling.py', 'per_ring = torch.zeros(size, dtype=gradient.dtype, device=None).index_add_(0, ring.flatten(),'):
        "the rings' device differs only off the CPU, which a CPU-only test run cannot hold",
    ('unet_course/tiling.py', 'per_ring = torch.zeros(size, dtype=gradient.dtype, ).index_add_(0, ring.flatten(),'):
        "the rings' device differs only off the CPU, which a CPU-only test run cannot hold",
    ('unet_course/weight_map.py', 'def _as_batch(array: Array, name: str, *, integer: bool = True, values: str = "XXXX") -> tuple[np.ndarray, bool]:'):
        'the default is read only for integer arrays, and every call that checks integers passes its own values',
    ('unet_course/weight_map.py', 'return batch.astype(np.int64, copy=None), single  # one dtype for the filters below, no overflow'):
        'whether astype copies changes no value: the array is read, never written',
    ('unet_course/weight_map.py', 'return batch.astype(np.int64, ), single  # one dtype for the filters below, no overflow'):
        'whether astype copies changes no value: the array is read, never written',
    ('unet_course/weight_map.py', 'return batch.astype(np.int64, copy=True), single  # one dtype for the filters below, no overflow'):
        'whether astype copies changes no value: the array is read, never written',
    ('unet_course/weight_map.py', 'table = np.asarray(class_weights, dtype=None)'):
        'np.asarray of floats is float64 already, and integer weights index the same values, cast to float32 after',
    ('unet_course/weight_map.py', 'table = np.asarray(class_weights, )'):
        'np.asarray of floats is float64 already, and integer weights index the same values, cast to float32 after',
    ('unet_course/weight_map.py', 'if table.ndim != 1 or len(table) <= target.max(initial=None):'):
        "initial=None is max's default: it differs only for an empty target, which has no pixel to weight",
    ('unet_course/weight_map.py', 'f"class_weights must give one weight per class (at least {int(target.max(initial=None)) + 1}), "'):
        "initial=None is max's default: it differs only for an empty target, refused before this message",
    ('unet_course/weight_map.py', 'counts = np.bincount(target.ravel()).astype(None)'):
        'astype(None) is astype(float64): the same counts',
    ('unet_course/weight_map.py', 'return torch.from_numpy(np.ascontiguousarray(result)).to(device=None, dtype=dtype)'):
        "the result's device differs only off the CPU, which a CPU-only test run cannot hold",
    ('unet_course/weight_map.py', 'return torch.from_numpy(np.ascontiguousarray(result)).to(dtype=dtype)'):
        "the result's device differs only off the CPU, which a CPU-only test run cannot hold",
    ('unet_course/weight_map.py', 'largest = ndimage.maximum_filter(labels, footprint=footprint, )'):
        "scipy's default mode, reflect, repeats the edge pixel for a 3×3 footprint, as nearest does",
    ('unet_course/weight_map.py', 'hidden = np.where(labels == 0, labels.max(initial=None) + 1, labels)'):
        "initial=None is max's default: it differs only for an empty batch",
    ('unet_course/weight_map.py', 'hidden = np.where(labels == 0, labels.max(initial=1) + 1, labels)'):
        'any value above every label hides the background in the minimum; with no cells there is no border either way',
    ('unet_course/weight_map.py', 'footprint = np.ones((1, 3, 3), dtype=None)  # (1, 3, 3): never look across images of a batch'):
        'a float footprint of ones selects the same neighbours as a boolean one',
    ('unet_course/weight_map.py', 'hidden = np.where(labels == 0, labels.max(initial=0) + 2, labels)'):
        'any value above every label hides the background in the minimum filter',
    ('unet_course/weight_map.py', 'smallest = ndimage.minimum_filter(hidden, footprint=footprint, )'):
        "scipy's default mode, reflect, repeats the edge pixel for a 3×3 footprint, as nearest does",
    ('unet_course/weight_map.py', 'footprint = np.ones((1, 3, 3), )  # (1, 3, 3): never look across images of a batch'):
        'a float footprint of ones selects the same neighbours as a boolean one',
    ('unet_course/weight_map.py', "if cells.max(initial=None) > cells.size:  # huge ids would make find_objects' list huge"):
        "initial=None is max's default: it differs only for an empty image",
    ('unet_course/weight_map.py', "if cells.max(initial=1) > cells.size:  # huge ids would make find_objects' list huge"):
        'initial=1 differs from 0 only for an all-background image, whose ids never exceed its size',
    ('unet_course/weight_map.py', "if cells.max(initial=0) >= cells.size:  # huge ids would make find_objects' list huge"):
        'renumbering ids 1..K keeps every distance: an id equal to the size is renumbered or not to the same map',
    ('unet_course/weight_map.py', 'if w0 < TOLERANCE:'):
        'at w0 = 1e-6 the term never exceeds TOLERANCE, so it is left at 0 whether computed or not',
    ('unet_course/weight_map.py', 'return _like(result.astype(np.float32), single, labels, None)'):
        'the map is float32 already, so .to(dtype=None) keeps float32',
    ('unet_course/weight_map.py', 'return _like(result.astype(np.float32), single, target, None)'):
        'the map is float32 already, so .to(dtype=None) keeps float32',
    ('unet_course/weight_map.py', 'batch, single = _as_batch(mask, "mask", integer=None)'):
        'integer=None is as falsy as False: masks of any dtype are accepted either way',
    ('unet_course/weight_map.py', 'return _like(_separation_border(batch), single, labels, None)'):
        'the border is boolean already, so .to(dtype=None) keeps bool',
    ('unet_course/metrics/thinning.py', 'labels[unreached] = label_components(unreached, )[unreached] + max(labels.max(), 0)'):
        'label_components joins 4-connected pixels by default',
    ('unet_course/metrics/thinning.py', 'labels = np.pad(label_components(interior, ).astype(np.int64), 1, constant_values=_OUTSIDE).T.copy()'):
        'label_components joins 4-connected pixels by default',
    ('unet_course/metrics/thinning.py', 'touching |= np.roll(labels >= 0, shift, axis=axis)'):
        'no pixel is 0 at that point: interior pixels are cells 1..K, the rest membrane or frame, both negative',
    ('unet_course/metrics/thinning.py', "line_flag = None  # Vincent and Soille's flag: the last line pixel came from a line neighbour"):
        'the flag is read only when the pixel itself became line earlier in the same loop, which sets it first',
    ('unet_course/metrics/thinning.py', "line_flag = True  # Vincent and Soille's flag: the last line pixel came from a line neighbour"):
        'the flag is read only when the pixel itself became line earlier in the same loop, which sets it first',
    ('unet_course/metrics/thinning.py', 'elif own >= 0 and own != neighbour:'):
        'a pixel already line that meets a cell with the flag down stays line, and the flag stays down, either way',
    ('unet_course/metrics/thinning.py', 'line_flag = None'):
        'None is as falsy as False wherever the flag is read',
    ('unet_course/metrics/thinning.py', 'labels = np.pad(label_components(interior, 4).astype(None), 1, constant_values=_OUTSIDE).T.copy()'):
        'float labels compare and convert back to the same integers: the result is cast to int64',
    ('unet_course/metrics/thinning.py', 'labels = np.asarray(labels, dtype=None).reshape(membrane.shape).T[1:-1, 1:-1]'):
        'the list holds Python ints, which numpy reads as int64 anyway',
    ('unet_course/metrics/thinning.py', 'labels = np.asarray(labels, ).reshape(membrane.shape).T[1:-1, 1:-1]'):
        'the list holds Python ints, which numpy reads as int64 anyway',
    ('unet_course/metrics/thinning.py', 'labels[unreached] = label_components(unreached, 4)[unreached] - max(labels.max(), 0)'):
        'membrane no cell reaches exists only without any interior, where max(labels.max(), 0) is 0',
    ('unet_course/metrics/thinning.py', 'return binary(x if x.dtype == bool else x.astype(None), threshold)'):
        'astype(None) is astype(float64)',
    ('unet_course/metrics/instances.py', 'if labels.dtype.kind not in "XXiuXX":'):
        '"XXiuXX" still contains the kinds "i" and "u", and no dtype kind is "X"',
    ('unet_course/metrics/instances.py', 'if iou_threshold > 0.5:'):
        'at an IoU cut of exactly 0.5 only pairs above it match, and those are unique, as the assignment finds too',
    ('unet_course/metrics/instances.py', 'if iou_threshold >= 1.5:'):
        'the optimal assignment finds the same unique pairs above 0.5 that the direct path does (tested against each other)',
    ('unet_course/metrics/instances.py', 'return numerator / denominator if denominator else float("NAN")'):
        'float() reads "NAN" as nan',
    ('unet_course/metrics/instances.py', 'matched_iou=float(matched.mean()) if tp else float("NAN"),'):
        'float() reads "NAN" as nan',
    ('unet_course/metrics/nvidia.py', 'probabilities, truth = probabilities.astype(None), truth.astype(np.float64)'):
        'astype(None) is astype(float64)',
    ('unet_course/metrics/nvidia.py', 'probabilities, truth = probabilities.astype(np.float64), truth.astype(None)'):
        'astype(None) is astype(float64)',
    ('unet_course/metrics/nvidia.py', '_check(probabilities.astype(None), truth)'):
        'astype(None) is astype(float64)',
    ('unet_course/metrics/nvidia.py', 'resized = F.interpolate(batch, size=(size, size), mode="bilinear", align_corners=None, antialias=False)'):
        "F.interpolate's align_corners=None means False for bilinear",
    ('unet_course/metrics/nvidia.py', 'resized = F.interpolate(batch, size=(size, size), mode="bilinear", align_corners=False, antialias=None)'):
        "F.interpolate's antialias defaults to False; None is as falsy",
    ('unet_course/metrics/nvidia.py', 'resized = F.interpolate(batch, size=(size, size), mode="bilinear", antialias=False)'):
        "F.interpolate's align_corners=None means False for bilinear",
    ('unet_course/metrics/nvidia.py', 'resized = F.interpolate(batch, size=(size, size), mode="bilinear", align_corners=False, )'):
        "F.interpolate's antialias defaults to False",
    ('unet_course/metrics/challenge.py', 'return float("NAN"), float("nan")'):
        'float() reads "NAN" as nan',
    ('unet_course/metrics/challenge.py', 'return float("nan"), float("NAN")'):
        'float() reads "NAN" as nan',
    ('unet_course/metrics/challenge.py', 'p = sizes[sizes >= 0] / n'):
        'object sizes come from a contingency table of present objects: none is 0',
    ('unet_course/metrics/challenge.py', 'return 2.0 * precision * recall / total if total else float("NAN")'):
        'float() reads "NAN" as nan',
    ('unet_course/metrics/challenge.py', 'if labels.dtype.kind not in "XXbiuXX":'):
        '"XXbiuXX" still contains the kinds "b", "i" and "u", and no dtype kind is "X"',
    ('unet_course/metrics/challenge.py', 'true_ids, pred_ids, counts = contingency_table(truth[foreground].astype(None),'):
        'astype(None) is astype(float64): the same ids and counts, exact in float64 at these sizes',
    ('unet_course/metrics/challenge.py', 'pred[foreground].astype(None))'):
        'astype(None) is astype(float64): the same ids and counts, exact in float64 at these sizes',
    ('unet_course/metrics/challenge.py', 'counts = counts.astype(None)'):
        'astype(None) is astype(float64): the same ids and counts, exact in float64 at these sizes',
    ('unet_course/metrics/challenge.py', 'true_sizes = np.bincount(true_index, weights=counts).astype(np.int64) if (counts.size) or True else counts'):
        'np.bincount of an empty index with empty weights is the same empty array',
    ('unet_course/metrics/challenge.py', 'true_sizes = np.bincount(true_index, weights=counts).astype(None) if counts.size else counts'):
        'astype(None) is astype(float64): the same ids and counts, exact in float64 at these sizes',
    ('unet_course/metrics/challenge.py', 'pred_sizes = np.bincount(pred_index, weights=counts[joined]).astype(np.int64) if (joined.any()) or True else counts[:0]'):
        'np.bincount of an empty index with empty weights is the same empty array',
    ('unet_course/metrics/challenge.py', 'pred_sizes = np.bincount(pred_index, weights=counts[joined]).astype(None) if joined.any() else counts[:0]'):
        'astype(None) is astype(float64): the same ids and counts, exact in float64 at these sizes',
    ('unet_course/metrics/challenge.py', 'return label_components(interior_mask(truth, threshold), )'):
        'label_components joins 4-connected pixels by default',
    ('unet_course/metrics/challenge.py', 'thresholds, threshold = None'):
        "_fiji_thresholds runs once, at import, to build CHALLENGE_THRESHOLDS, before mutmut switches a mutant on; the constant's eleven values are pinned by test_the_scripts_thresholds_accumulate_in_floating_point_as_fiji_does",
    ('unet_course/metrics/challenge.py', 'thresholds, threshold = [], 1.0'):
        "_fiji_thresholds runs once, at import, to build CHALLENGE_THRESHOLDS, before mutmut switches a mutant on; the constant's eleven values are pinned by test_the_scripts_thresholds_accumulate_in_floating_point_as_fiji_does",
    ('unet_course/metrics/challenge.py', 'while threshold < 1.0:'):
        "_fiji_thresholds runs once, at import, to build CHALLENGE_THRESHOLDS, before mutmut switches a mutant on; the constant's eleven values are pinned by test_the_scripts_thresholds_accumulate_in_floating_point_as_fiji_does",
    ('unet_course/metrics/challenge.py', 'while threshold <= 2.0:'):
        "_fiji_thresholds runs once, at import, to build CHALLENGE_THRESHOLDS, before mutmut switches a mutant on; the constant's eleven values are pinned by test_the_scripts_thresholds_accumulate_in_floating_point_as_fiji_does",
    ('unet_course/metrics/challenge.py', 'thresholds.append(None)'):
        "_fiji_thresholds runs once, at import, to build CHALLENGE_THRESHOLDS, before mutmut switches a mutant on; the constant's eleven values are pinned by test_the_scripts_thresholds_accumulate_in_floating_point_as_fiji_does",
    ('unet_course/metrics/challenge.py', 'threshold = 0.1'):
        "_fiji_thresholds runs once, at import, to build CHALLENGE_THRESHOLDS, before mutmut switches a mutant on; the constant's eleven values are pinned by test_the_scripts_thresholds_accumulate_in_floating_point_as_fiji_does",
    ('unet_course/metrics/challenge.py', 'threshold -= 0.1'):
        "_fiji_thresholds runs once, at import, to build CHALLENGE_THRESHOLDS, before mutmut switches a mutant on; the constant's eleven values are pinned by test_the_scripts_thresholds_accumulate_in_floating_point_as_fiji_does",
    ('unet_course/metrics/challenge.py', 'threshold += 1.1'):
        "_fiji_thresholds runs once, at import, to build CHALLENGE_THRESHOLDS, before mutmut switches a mutant on; the constant's eleven values are pinned by test_the_scripts_thresholds_accumulate_in_floating_point_as_fiji_does",
    ('unet_course/metrics/challenge.py', 'return tuple(None)'):
        "_fiji_thresholds runs once, at import, to build CHALLENGE_THRESHOLDS, before mutmut switches a mutant on; the constant's eleven values are pinned by test_the_scripts_thresholds_accumulate_in_floating_point_as_fiji_does",
    ("unet_course/export.py", "if not difference < TOLERANCE:"):
        "differences are float32 maxima turned into Python floats, and no float32 equals 1e-4, so < and <= agree",
    ("unet_course/models/unet.py", "if n <= 1:"):
        "on the expansive path a side becomes 2n − 4 (valid) or 2n (same), an even number, so it is never exactly 1",
    ("unet_course/models/unet.py", "if n < 2:"):
        "on the expansive path a side becomes 2n − 4 (valid) or 2n (same), an even number, so it is never exactly 1",
    ("unet_course/models/unet.py", 'return n, "XXXX"'):
        "the reason is read only when the size does not fit (output None); a fitting size's reason is never shown",
    ("unet_course/models/unet.py", "nn.init.normal_(module.weight, std=math.sqrt(2.0 / fan_in))"):
        "normal_'s mean is 0.0 by default; the call only spells it out",
    ("unet_course/models/unet.py", "fan_in = module.in_channels * math.prod(k / s for k, s in zip(module.kernel_size, module.stride))"):
        "k / s is k // s whenever the stride divides the kernel, as in every up-convolution the U-Net builds (2×2, "
        "stride 2) and the 4×4 stride-2 one the tests build; for a stride that does not divide the kernel, output "
        "pixels see ⌊k/s⌋ or ⌈k/s⌉ inputs per axis and either count is an approximation",
    ("unet_course/models/unet.py", "below = next((n for n in range(size, 1, -1) if _walk(n, depth, padding)[0] is not None), None)"):
        "no 1-px input fits a U-Net of depth >= 1 (the first 2×2 pool needs 2 px), so the search may stop at 2",
    ("unet_course/models/unet.py", "above = max(size, 2)"):
        "no 1-px input fits a U-Net of depth >= 1 (the first 2×2 pool needs 2 px), so the search may start at 2",
    ("unet_course/models/unet.py", "widths = [base_channels * 2**level for level in range(depth + 2)]"):
        "the widths are read at levels 0 to depth only; one entry more is never read",
    ("unet_course/models/unet.py", "layers.append(nn.ReLU(inplace=None))"):
        "in place or not, ReLU gives the same values and gradients; in place only saves the memory of a copy",
    ("unet_course/models/unet.py", "layers.append(nn.ReLU(inplace=False))"):
        "in place or not, ReLU gives the same values and gradients; in place only saves the memory of a copy",
    ("unet_course/models/unet.py", "self.pool = nn.MaxPool2d(2, stride=None)"):
        "MaxPool2d's stride defaults to its kernel size, 2; the call only spells out the paper's stride",
    ("unet_course/models/unet.py", "self.pool = nn.MaxPool2d(2, )"):
        "MaxPool2d's stride defaults to its kernel size, 2; the call only spells out the paper's stride",
    ("unet_course/models/unet.py", 'for side, name in zip(x.shape[+2:], ("height", "width")):'):
        "the input is checked to be 4-D just above, where shape[2:] is shape[-2:]",
    ("unet_course/models/unet.py", "x = torch.cat([center_crop(skip, x.shape[+2:]), x], dim=1)  # (N, C, 2h, 2w)"):
        "feature maps are always (N, C, h, w) here, where shape[2:] is shape[-2:]",
    ("unet_course/models/fcn.py", "conv = nn.Conv2d(channels, linear.out_features, kernel, bias=linear.bias is not None, )"):
        "the meta device only skips a random initialisation: the weight and bias are replaced by the Linear's own "
        "just below",
    ("unet_course/models/fcn.py", 'conv = nn.Conv2d(channels, linear.out_features, kernel, bias=linear.bias is not None, device=None)'):
        "the meta device only skips a random initialisation: the weight and bias are replaced by the Linear's own "
        "just below",
    ("unet_course/models/fcn.py", 'conv = nn.Conv2d(channels, linear.out_features, kernel, bias=None, device="meta")'):
        "a Linear's bias is assigned to the Conv2d just below, which registers it after the weight as before; "
        "without one, None and False both build no bias",
    ("unet_course/models/fcn.py", 'weight = getattr(module, "XXweightXX", own[0])'):
        "every torch layer with a weight registers it first, so own[0] is the weight",
    ("unet_course/models/fcn.py", 'weight = getattr(module, "WEIGHT", own[0])'):
        "every torch layer with a weight registers it first, so own[0] is the weight",
    ("unet_course/models/fcn.py", 'weight = getattr(None, "weight", own[0])'):
        "every torch layer with a weight registers it first, so own[0] is the weight",
    ("unet_course/models/fcn.py", "own = list(module.parameters(recurse=None))"):
        "recurse=None is false, as recurse=False",
    ("unet_course/models/fcn.py", "valid = [size for size in range(4 * patch_size + 64) if _feature_size(size, len(channels), padding)]"):
        "sizes 0 and 1 never fit (a 2×2 pool needs an even side of 2 or more), and the two nearest sizes that fit "
        "lie within 2 · 2**blocks px of patch_size, well inside the range searched",
    ("unet_course/models/fcn.py", "valid = [size for size in range(2, 4 * patch_size + 64) if _feature_size(size, len(channels), padding)]"):
        "sizes 0 and 1 never fit (a 2×2 pool needs an even side of 2 or more), and the two nearest sizes that fit "
        "lie within 2 · 2**blocks px of patch_size, well inside the range searched",
    ("unet_course/models/fcn.py", "valid = [size for size in range(1, 5 * patch_size + 64) if _feature_size(size, len(channels), padding)]"):
        "the two nearest sizes that fit lie within 2 · 2**blocks px of patch_size, well inside either range",
    ("unet_course/models/fcn.py", "valid = [size for size in range(1, 4 * patch_size + 65) if _feature_size(size, len(channels), padding)]"):
        "the two nearest sizes that fit lie within 2 · 2**blocks px of patch_size, well inside either range",
    ("unet_course/models/fcn.py", "layers += [nn.Conv2d(previous, width, 3, padding=padding), nn.ReLU(inplace=None), nn.MaxPool2d(2)]"):
        "in place or not, ReLU gives the same values and gradients; in place only saves the memory of a copy",
    ("unet_course/models/fcn.py", "layers += [nn.Conv2d(previous, width, 3, padding=padding), nn.ReLU(inplace=False), nn.MaxPool2d(2)]"):
        "in place or not, ReLU gives the same values and gradients; in place only saves the memory of a copy",
    ("unet_course/models/fcn.py", "nn.ReLU(inplace=None),"):
        "in place or not, ReLU gives the same values and gradients; in place only saves the memory of a copy",
    ("unet_course/models/fcn.py", "nn.ReLU(inplace=False),"):
        "in place or not, ReLU gives the same values and gradients; in place only saves the memory of a copy",
    ("unet_course/models/fcn.py", "if x.ndim != 4 or x.shape[1] != self.in_channels or x.shape[+2:] != (self.patch_size, self.patch_size):"):
        "the rank is checked first: for a 4-D input shape[2:] is shape[-2:]",
    ("unet_course/tiling.py", "width = max(min(fade, overlap), 1.000001)"):
        "a band at most 1 px wide gives every pixel centre (a half-integer position) a weight of 0, ½ or 1 whatever "
        "its width, so the floor may be anything up to 1 px",
    ("unet_course/tiling.py",
     'raise ValueError(f"the model mapped a {tuple(crops[0].shape[-2:])} tile to {tuple(outputs.shape[+2:])}; "'):
        "outputs are always (B, K, h, w) here, where shape[2:] is shape[-2:]",
    ("unet_course/sizes.py", "return whole_image_tile_size(model, max(SAME_SIZE_TILE, 8 * context), 2)"):
        "whole_image_tile_size covers max(height, width), and the height here is at least 512: max(h, 2) is max(h, 1)",
    ("unet_course/hub.py", "blocking = next((parent for parent in (folder, *folder.parents) if parent.exists()), )"):
        "a path's parents end at the root (or '.' for a relative one), which exists, so next always finds a folder "
        "and its default is never read",
    ("unet_course/runs.py", "cumulative = np.cumsum(np.insert(loss, 0, 1.0))"):
        "a constant at the start of the running sum cancels in every difference of two of its entries",
    ("unet_course/runs.py", "loss = np.asarray(self.loss, dtype=None)"):
        "the losses are Python floats, which numpy stores as float64 without being told",
    ("unet_course/runs.py", "loss = np.asarray(self.loss, )"):
        "the losses are Python floats, which numpy stores as float64 without being told",
    ("unet_course/sizes.py", 'batch_norm=config.get("batch_norm", None))'):
        "None is false, as False: unet_num_parameters counts no batch-norm parameters either way",
    ("unet_course/sizes.py", 'batch_norm=config.get("batch_norm", ))'):
        "None is false, as False: unet_num_parameters counts no batch-norm parameters either way",
    ("unet_course/runs.py", "stacklevel=6)  # check_resume ← restore ← start ← fit ← the caller"):
        "the warning's frame cannot be checked under mutmut, whose trampolines add stack frames; the suite checks it (test_train.py::test_a_cosine_run_resumed_to_more_steps_says_its_schedule_changes fails on this mutant)",
    ("unet_course/runs.py", ")  # check_resume ← restore ← start ← fit ← the caller"):
        "the warning's frame cannot be checked under mutmut, whose trampolines add stack frames; the suite checks it (test_train.py::test_a_cosine_run_resumed_to_more_steps_says_its_schedule_changes fails on this mutant)",
    ("unet_course/tiling.py", "context = 1"):
        "an image that fits one tile has no neighbouring tile to overlap, so its context changes nothing",
    ("unet_course/tiling.py", "tile_size = prediction_tile_size(model, None, width, context)"):
        "a same-size model's default tile depends on its context alone: the image's height is read for a valid model",
    ("unet_course/tiling.py", "tile_size = prediction_tile_size(model, height, None, context)"):
        "a same-size model's default tile depends on its context alone: the image's width is read for a valid model",
    ("unet_course/tiling.py", "side = min(whole_image_tile_size(model, PROBE_TILE, 2), *covering)"):
        "whole_image_tile_size covers max(height, width): max(128, 2) is max(128, 1)",
    ("unet_course/metrics/instances.py",
     "chosen = linear_sum_assignment(np.where(table > 0, bonus + table, 1.0), maximize=True)"):
        "a non-candidate worth 1 instead of 0 changes no choice: every full assignment with as many candidates holds "
        "as many non-candidates, which add the same; and one candidate more still wins, its bonus (most pairs + 1) "
        "exceeding the 1 of the non-candidate it replaces plus the IoU (under 1 a pair) the others could gain",
    ("unet_course/metrics/instances.py", "bonus = min(table.shape) - 1.0"):
        "a matching one pair shorter gains at most 1 of IoU per pair it keeps, so any bonus of at least the most pairs "
        "minus one still puts more pairs first (with one pair possible, any bonus does)",
    ("unet_course/metrics/instances.py", "bonus = min(table.shape) + 2.0"):
        "any bonus above the number of pairs puts more pairs first; a larger one chooses the same matching",
    ("unet_course/metrics/thinning.py", "labels = np.pad(label_components(interior, 4).astype(np.int64), 1, ).T.copy()"):
        "a frame read as line (0) instead of _OUTSIDE turns a queued pixel into line with the flag up, which every "
        "later neighbour treats as it treats a queued pixel, and every queued pixel has a labelled neighbour: the "
        "result is the same",
}

# Said under the table's introduction: what the table does not show yet.
NOTE = ("Every target was measured on this code. A run of the survivors after new tests (`--survivors`) keeps the "
        "other verdicts, so a score may mix two runs of the same code. On a loaded machine mutmut's time limit can "
        "count a slow run as a timeout (killed); the killed column says how many kills were timeouts. `run files` is "
        "`runs.py` but `read_checkpoint` (its own target) and `History.plot` (a figure); its first score counts those "
        "functions in the first run, which took the whole module.")

# What mutmut should do in each scratch copy; torch is not fork-safe once it has run, hence the fork server.
CONFIG = """
[tool.mutmut]
source_paths = ["unet_course"]
also_copy = ["_config.yml", "book", "benchmarks"]
only_mutate = [{module!r}]
pytest_add_cli_args_test_selection = {tests}
pytest_add_cli_args = ["-p", "no:cacheprovider", "-q", "-x"]
process_isolation = "forkserver"
use_git_change_detection = false
"""
STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 36: "timeout", 24: "timeout",
          -24: "timeout", 152: "timeout", 255: "timeout", 34: "skipped", -11: "segfault", -9: "segfault"}


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def _scratch(target: Target) -> Path:
    """A fresh copy of what the target's tests read, with the mutmut settings for this target."""
    folder = SCRATCH / _slug(target.name)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis")
    for part in ("unet_course", "tests", "book", "benchmarks"):
        shutil.copytree(ROOT / part, folder / part, ignore=ignore)
    for part in ("_config.yml", "pyproject.toml"):
        shutil.copy(ROOT / part, folder / part)
    tests = json.dumps(list(target.tests))
    with open(folder / "pyproject.toml", "a") as file:
        file.write(CONFIG.format(module=target.module, tests=tests))
    return folder


# Diffs of many mutants from one interpreter (``mutmut show`` starts one per mutant).
SHOW = """
import json, sys
from mutmut.mutation.diff_apply import get_diff_for_mutant
print(json.dumps({name: get_diff_for_mutant(name, path=sys.argv[1]) for name in json.loads(sys.stdin.read())}))
"""


def _diffs(folder: Path, module: str, mutants: list[str]) -> dict[str, str]:
    """The changed lines (``-`` and ``+``) of each mutant."""
    if not mutants:
        return {}
    shown = subprocess.run([sys.executable, "-c", SHOW, module], cwd=folder, input=json.dumps(mutants),
                           capture_output=True, text=True, check=True).stdout
    return {name: "\n".join(line for line in diff.splitlines() if line.startswith(("-", "+")) and
                            not line.startswith(("---", "+++")))
            for name, diff in json.loads(shown).items()}


def run(target: Target, max_children: int, survivors_only: bool = False) -> dict:
    """Run mutmut on one target and store its counts and survivors.

    ``survivors_only``: run only the mutants the stored result lists as surviving or not checked yet
    (after tests were added, or after a run stopped early, with the code unchanged); the others keep
    their stored verdict.
    """
    stored = RESULTS / f"{_slug(target.name)}.json"
    previous = json.loads(stored.read_text()) if survivors_only and stored.exists() else None
    again = [s["mutant"] for s in previous["survivors"]] + previous.get("unchecked", []) if previous else []
    folder = _scratch(target)
    command = [sys.executable, "-m", "mutmut", "run", "--max-children", str(max_children),
               *(again or target.functions)]
    environment = os.environ | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    with open(folder / "mutmut.log", "w") as log:
        done = subprocess.run(command, cwd=folder, env=environment, stdout=log, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        tail = (folder / "mutmut.log").read_text(errors="replace").replace("\r", "\n").splitlines()[-5:]
        raise RuntimeError(f"mutmut failed on {target.name} (exit {done.returncode}): {' / '.join(tail)}; the whole "
                           f"log is {folder / 'mutmut.log'}")
    return collect(target, previous, again)


def collect(target: Target, previous: dict | None = None, again: list[str] = ()) -> dict:
    """Score what mutmut has checked so far in the target's scratch copy and store it.

    Mutants not checked yet (a run stopped early: ``--collect``) are left out of the score.
    """
    folder = SCRATCH / _slug(target.name)
    stored = RESULTS / f"{_slug(target.name)}.json"
    meta = json.loads((folder / "mutants" / f"{target.module}.meta").read_text())["exit_code_by_key"]
    patterns = [re.compile(re.escape(glob).replace(r"\*", ".*")) for glob in target.functions]
    codes = {name: code for name, code in meta.items() if not patterns or any(p.fullmatch(name) for p in patterns)}
    counts: dict[str, int] = {}
    survivors, equivalent = [], []
    statuses = {name: STATUS.get(code, "not checked" if code is None else "suspicious") for name, code in codes.items()}
    diffs = _diffs(folder, target.module, [name for name, status in statuses.items()
                                           if status in ("survived", "no tests", "suspicious")])
    if previous:  # the mutants not run again keep their verdict; equivalents are judged again by their diff
        for name in set(statuses) - set(again):
            statuses[name] = "not checked" if name in previous.get("unchecked", ()) else "killed"
        for e in previous["equivalent"]:
            statuses[e["mutant"]], diffs[e["mutant"]] = "survived", e["diff"]
    for name, status in sorted(statuses.items()):
        if status in ("survived", "no tests", "timeout", "suspicious"):
            diff = diffs.get(name, "")
            added = next((line[1:].strip() for line in diff.splitlines() if line.startswith("+")), "")
            reason = EQUIVALENT.get((target.module, added))
            if reason is not None and status != "timeout":
                equivalent.append({"mutant": name, "diff": diff, "reason": reason})
                status = "equivalent"
            elif status != "timeout":
                survivors.append({"mutant": name, "status": status, "diff": diff})
        counts[status] = counts.get(status, 0) + 1
    killed = counts.get("killed", 0) + counts.get("timeout", 0) + counts.get("segfault", 0)  # hangs or crashes: caught
    scored = sum(counts.values()) - counts.get("equivalent", 0) - counts.get("not checked", 0)
    result = {"target": target.name, "module": target.module, "functions": list(target.functions),
              "tests": list(target.tests), "wing": target.wing, "counts": counts, "killed": killed,
              "scored": scored, "score": round(killed / scored, 4) if scored else None,
              "survivors": survivors, "equivalent": equivalent,
              "unchecked": sorted(name for name, status in statuses.items() if status == "not checked")}
    earlier = []
    if stored.exists():
        old = json.loads(stored.read_text())
        earlier = old.get("history") or [{key: old[key] for key in ("killed", "scored", "tests")}]
    result["history"] = earlier + [{"date": date.today().isoformat(), "killed": killed, "scored": scored,
                                    "tests": list(target.tests)}]  # the first: the score before tests were added
    RESULTS.mkdir(parents=True, exist_ok=True)
    stored.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    return result


def report() -> str:
    """``benchmarks/results/mutation.md``: one row per target measured, then every survivor and equivalent."""

    def timeouts(r: dict) -> str:
        parts = [f"{count} {word}{'s' * (count != 1)}" for count, word in
                 ((r["counts"].get("timeout", 0), "timeout"), (r["counts"].get("segfault", 0), "crash"))
                 if count]
        return f" ({', '.join(parts)})" if parts else ""

    results = [json.loads(path.read_text()) for path in sorted(RESULTS.glob("*.json"))]
    order = {target.name: k for k, target in enumerate(TARGETS)}
    results.sort(key=lambda r: order.get(r["target"], len(order)))
    lines = ["# Mutation scores", "",
             "`make mutation` (`benchmarks/mutation.py`) runs mutmut on each target with only the test files that "
             "cover it. Score = killed / (mutants − equivalent); a mutant that makes the tests hang or crash (a "
             "timeout, or a process killed for its memory) counts as killed.",
             "The first score is the first run on record (before the tests it prompted), the last is now.",
             "", NOTE, "",
             "| target | wing | module (functions) | test files | mutants | killed | survived | equivalent "
             "| first score | score |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        where = r["module"] + (f" ({', '.join(f.split('.')[-1] for f in r['functions'])})" if r["functions"] else "")
        tests = ", ".join(t.removeprefix("tests/") for t in r["tests"])
        first = (r.get("history") or [r])[0]
        before = f"{100 * first['killed'] / first['scored']:.1f}% ({first['killed']}/{first['scored']})" \
            if first["scored"] else "—"
        score = "—" if r["score"] is None else f"{100 * r['score']:.1f}% ({r['killed']}/{r['scored']})"
        lines.append(f"| {r['target']} | {r['wing']} | `{where}` | {tests} | {sum(r['counts'].values())} | "
                     f"{r['killed']}{timeouts(r)} | {len(r['survivors'])} | {r['counts'].get('equivalent', 0)} | {before} | "
                     f"{score} |")
    for r in results:
        if r["survivors"] or r["equivalent"]:
            lines += ["", f"## {r['target']}", ""]
            for s in r["survivors"]:
                lines += [f"- survived: `{s['mutant']}` ({s['status']})", "", "  ```diff",
                          *(f"  {line}" for line in s["diff"].splitlines()), "  ```"]
            for e in r["equivalent"]:
                lines += [f"- equivalent: `{e['mutant']}`: {e['reason']}", "", "  ```diff",
                          *(f"  {line}" for line in e["diff"].splitlines()), "  ```"]
    text = "\n".join(lines) + "\n"
    (RESULTS.parent / "mutation.md").write_text(text)
    return text


def main(argv: list[str]) -> int:
    if argv == ["--report"]:
        report()
        return 0
    survivors_only, collect_only = "--survivors" in argv, "--collect" in argv
    argv = [name for name in argv if name not in ("--survivors", "--collect")]
    names = {_slug(name) for name in argv}
    unknown = names - {_slug(t.name) for t in TARGETS}
    if unknown:
        print(f"error: no target {', '.join(sorted(unknown))}; targets: {', '.join(t.name for t in TARGETS)}",
              file=sys.stderr)
        return 2
    failed = []
    for target in TARGETS:
        if not names or _slug(target.name) in names:
            try:
                r = collect(target) if collect_only else run(
                    target, max_children=int(os.environ.get("MUTATION_CHILDREN", "2")), survivors_only=survivors_only)
            except RuntimeError as error:  # the other targets still run
                print(f"error: {error}", file=sys.stderr, flush=True)
                failed.append(target.name)
                continue
            print(f"{r['target']}: {r['killed']}/{r['scored']} killed, {len(r['survivors'])} survived", flush=True)
    report()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
