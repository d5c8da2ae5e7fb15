"""Registers the trigger family's stages (imported lazily by the engine).

trigger.generate  data config -> .jsonl files            (_stage_data.py)
trigger.base      train a small LM on the base map        (_stage_train.py)
trigger.finetune  LoRA / full fine-tuning, evaluation     (_stage_train.py)
trigger.swap      trigger swap: whose map is followed     (_stage_analysis.py)
trigger.patch     activation patching at the trigger      (_stage_analysis.py)
"""

from __future__ import annotations

from ._stage_analysis import PatchConfig as PatchConfig
from ._stage_analysis import SwapConfig as SwapConfig
from ._stage_analysis import patch_stage as patch_stage
from ._stage_analysis import swap_stage as swap_stage
from ._stage_data import GenerateConfig as GenerateConfig
from ._stage_data import generate_stage as generate_stage
from ._stage_train import BaseConfig as BaseConfig
from ._stage_train import FinetuneConfig as FinetuneConfig
from ._stage_train import base_stage as base_stage
from ._stage_train import finetune_stage as finetune_stage
