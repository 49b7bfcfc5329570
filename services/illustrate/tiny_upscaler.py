"""A tiny, random stand-in for a Real-ESRGAN upscaler, saved as a file spandrel loads like the published ones.

The architecture is Real-ESRGAN's compact one (`SRVGGNetCompact`, as in `realesr-general-x4v3.pth`) at toy width:
8 features, 2 convolutions, ×4. The network adds its output to a nearest-neighbour ×4 copy of the input, so with
its last layer scaled down the stand-in paints a blocky enlargement of the picture with a little noise on it:
the flow is real (spandrel detects the architecture from the state dict's keys and runs it), the pixels are not.
"""

from __future__ import annotations

from pathlib import Path

from shared.atomic_build import build_once

FILE_NAME = "tiny-compact-x4.safetensors"
SCALE = 4
SEED = 1234
FEATURES = 8
CONVOLUTIONS = 2
_LAST_LAYER_GAIN = 0.05  # keeps the random residual small next to the nearest-neighbour copy


def build_tiny_upscaler(folder: Path) -> Path:
    """Write the stand-in into `folder` unless it is there; returns the weights file."""
    build_once(folder, marker=FILE_NAME, write=_write, what="tiny upscaler")
    return folder / FILE_NAME


def _write(folder: Path) -> None:
    import torch
    from safetensors.torch import save_file
    from spandrel.architectures.Compact import Compact  # type: ignore[import-untyped]  # ships no type hints

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = Compact(num_in_ch=3, num_out_ch=3, num_feat=FEATURES, num_conv=CONVOLUTIONS, upscale=SCALE, act_type="prelu")
    state = {name: tensor.detach().clone().contiguous() for name, tensor in model.state_dict().items()}
    last = f"body.{len(model.body) - 1}"
    state[f"{last}.weight"] *= _LAST_LAYER_GAIN
    state[f"{last}.bias"] *= _LAST_LAYER_GAIN
    save_file(state, str(folder / FILE_NAME))
