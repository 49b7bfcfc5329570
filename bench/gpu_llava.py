"""GPU harness: LLaVA-1.5-13B (CLIP ViT-L/14-336 + Llama-2-13B) with random weights, timing a caption of 128 new
tokens at batch 1 and 8.

    python bench/gpu_llava.py                 # cuda, bf16
    python bench/gpu_llava.py --tiny          # the tiny LLaVA config on the CPU, to check the harness

The prompt is what the caption service sends: one image (576 image tokens at 336 px) and a short question.
Generation is greedy and forced to exactly `--new-tokens` tokens, so every run decodes the same amount.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from pydantic import BaseModel  # noqa: E402

from bench.common import machine_description, markdown_table, quiet_libraries, text_table  # noqa: E402
from bench.gpu_common import DTYPES, MemoryReading, limit_cpu_threads, peak_memory, release, reset_peak_memory, synchronize, timed_runs  # noqa: E402

# llava-hf/llava-1.5-13b-hf: vision tower CLIP ViT-L/14 at 336 px, language model Llama-2-13B (vocabulary with
# the <image> and <pad> tokens appended, padded to 32064).
LLAVA_13B_VISION: dict[str, Any] = {
    "hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24, "num_attention_heads": 16,
    "image_size": 336, "patch_size": 14, "projection_dim": 768, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5,
}
LLAVA_13B_TEXT: dict[str, Any] = {
    "vocab_size": 32064, "hidden_size": 5120, "intermediate_size": 13824, "num_hidden_layers": 40,
    "num_attention_heads": 40, "num_key_value_heads": 40, "max_position_embeddings": 4096, "rms_norm_eps": 1e-5,
    "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 32001,
}
LLAVA_13B: dict[str, Any] = {"image_token_index": 32000, "projector_hidden_act": "gelu", "vision_feature_layer": -2,
                              "vision_feature_select_strategy": "default"}

# The tiny LLaVA of the tests (docs/models.md): 32 px images in 8 px patches (16 image tokens).
TINY_VISION: dict[str, Any] = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                               "image_size": 32, "patch_size": 8, "projection_dim": 32}
TINY_TEXT: dict[str, Any] = {"vocab_size": 300, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                             "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 512,
                             "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}
TINY: dict[str, Any] = {"image_token_index": 299, "vision_feature_layer": -1, "vision_feature_select_strategy": "default"}

PROMPT_TOKENS = 40  # "USER: <image>\nDescribe the people, animals, … for a storybook. ASSISTANT:"


class LlavaTiming(BaseModel):
    batch: int
    new_tokens: int
    seconds: float
    seconds_per_caption: float
    tokens_per_second: float


class LlavaReport(BaseModel):
    mode: str
    machine: str
    device: str
    dtype: str
    parameters: int
    image_tokens: int
    timings: list[LlavaTiming]
    memory: MemoryReading | None = None


def llava_config(*, tiny: bool):  # -> LlavaConfig
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    vision, text, top = (TINY_VISION, TINY_TEXT, TINY) if tiny else (LLAVA_13B_VISION, LLAVA_13B_TEXT, LLAVA_13B)
    return LlavaConfig(vision_config=CLIPVisionConfig(**vision), text_config=LlamaConfig(**text), **top)


def load_llava(config: Any, *, device: str, dtype: torch.dtype):  # -> LlavaForConditionalGeneration
    """Random weights, initialised directly on `device` (seconds on a GPU instead of minutes on the CPU)."""
    from transformers import AutoModelForImageTextToText

    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForImageTextToText.from_config(config, dtype=dtype)
    return model.to(device=device, dtype=dtype).eval()


def image_tokens(config: Any) -> int:
    vision = config.vision_config
    patches = (vision.image_size // vision.patch_size) ** 2
    return patches if config.vision_feature_select_strategy == "default" else patches + 1


def caption_inputs(config: Any, *, batch: int, device: str, prompt_tokens: int = PROMPT_TOKENS) -> dict[str, torch.Tensor]:
    """Token ids laid out as the processor lays them out (BOS, the image placeholders, the question) and pixels."""
    text = config.text_config
    generator = torch.Generator(device="cpu").manual_seed(1)
    words = torch.randint(3, config.image_token_index, (batch, prompt_tokens), generator=generator)
    placeholders = torch.full((batch, image_tokens(config)), config.image_token_index)
    input_ids = torch.cat([torch.full((batch, 1), text.bos_token_id), placeholders, words], dim=1)
    size = config.vision_config.image_size
    return {
        "input_ids": input_ids.to(device),
        "attention_mask": torch.ones_like(input_ids).to(device),
        "pixel_values": torch.randn(batch, 3, size, size, generator=generator).to(device),
    }


def time_caption(model: Any, inputs: dict[str, torch.Tensor], *, new_tokens: int, device: str, repeats: int) -> float:
    """Fastest of `repeats` greedy generations of exactly `new_tokens` tokens (after one untimed warm-up)."""
    inputs = {**inputs, "pixel_values": inputs["pixel_values"].to(model.dtype)}
    options = {"max_new_tokens": new_tokens, "min_new_tokens": new_tokens, "do_sample": False, "num_beams": 1,
               "pad_token_id": model.config.text_config.pad_token_id}
    with torch.inference_mode():
        model.generate(**inputs, **{**options, "max_new_tokens": 2, "min_new_tokens": 2})
        synchronize(device)
        return min(timed_runs(lambda: model.generate(**inputs, **options), device=device, repeats=repeats))


def run_harness(*, tiny: bool, device: str, dtype_name: str, new_tokens: int, batches: list[int], repeats: int) -> LlavaReport:
    dtype = DTYPES[dtype_name]
    config = llava_config(tiny=tiny)
    reset_peak_memory(device)
    model = load_llava(config, device=device, dtype=dtype)
    timings = []
    for batch in batches:
        seconds = time_caption(model, caption_inputs(config, batch=batch, device=device), new_tokens=new_tokens, device=device, repeats=repeats)
        timings.append(LlavaTiming(batch=batch, new_tokens=new_tokens, seconds=seconds, seconds_per_caption=seconds / batch,
                                   tokens_per_second=batch * new_tokens / seconds))
    report = LlavaReport(mode="tiny" if tiny else "LLaVA-1.5-13B", machine=machine_description(), device=device, dtype=dtype_name,
                         parameters=sum(parameter.numel() for parameter in model.parameters()), image_tokens=image_tokens(config),
                         timings=timings, memory=peak_memory(device))
    del model
    release(device)
    return report


def render(report: LlavaReport, *, markdown: bool) -> str:
    headers = ["batch", "new tokens", "s per batch", "s per caption", "tokens/s"]
    rows = [[t.batch, t.new_tokens, t.seconds, t.seconds_per_caption, t.tokens_per_second] for t in report.timings]
    size = f"{report.parameters / 1e9:.2f} B" if report.parameters >= 1e9 else f"{report.parameters / 1e3:.0f} k"
    lines = [f"{report.mode} ({size} parameters, {report.image_tokens} image tokens), {report.dtype} on {report.device}",
             f"machine: {report.machine}"]
    if report.memory:
        lines.append(f"peak memory: {report.memory.peak_allocated_gib:.1f} GiB allocated of {report.memory.device_total_gib:.0f} GiB")
    if markdown:
        return "\n".join(f"- {line}" for line in lines) + "\n\n" + markdown_table(headers, rows)
    return "\n".join(lines) + "\n\n" + text_table(headers, rows)


def main(argv: list[str] | None = None) -> int:
    quiet_libraries()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="the tiny config on the CPU, to check the harness")
    parser.add_argument("--device", default=None, help="default cuda, or cpu with --tiny")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default=None, help="default bf16, or fp32 with --tiny")
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default 1 on the CPU: see gpu_common.limit_cpu_threads)")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    device = args.device or ("cpu" if args.tiny else "cuda")
    limit_cpu_threads(args.threads or (1 if device == "cpu" else None))
    report = run_harness(tiny=args.tiny, device=device, dtype_name=args.dtype or ("fp32" if device == "cpu" else "bf16"),
                         new_tokens=args.new_tokens, batches=args.batches, repeats=args.repeats)
    print(render(report, markdown=args.markdown))
    if args.json:
        args.json.write_text(report.model_dump_json(indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
