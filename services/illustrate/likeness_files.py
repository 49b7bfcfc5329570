"""Where an IP-Adapter's files sit, in the layout of h94/IP-Adapter (Apache-2.0), which `load_ip_adapter` reads.

The default is the SDXL adapter trained against the OpenCLIP ViT-H/14 image encoder
(`sdxl_models/ip-adapter_sdxl_vit-h.safetensors` with `models/image_encoder`): h94's model card lists it beside the
ViT-bigG pairing (`sdxl_models/ip-adapter_sdxl.safetensors`, `sdxl_models/image_encoder`), whose encoder is about
three times larger.
The tiny stand-in is written in the same layout, so one loading path serves both.
"""

from __future__ import annotations

from dataclasses import dataclass

LIKENESS_MODEL_ID = "h94/IP-Adapter"


@dataclass(frozen=True)
class AdapterFiles:
    subfolder: str
    weight_name: str
    image_encoder_folder: str

    @property
    def required(self) -> list[str]:
        """The files that must all be present for the adapter to load."""
        return [
            f"{self.subfolder}/{self.weight_name}",
            f"{self.image_encoder_folder}/config.json",
            f"{self.image_encoder_folder}/model.safetensors",
        ]


ADAPTER_FILES = AdapterFiles(
    subfolder="sdxl_models", weight_name="ip-adapter_sdxl_vit-h.safetensors", image_encoder_folder="models/image_encoder"
)
