"""Training a plain tied ``nn.Module`` under the transformers ``Trainer`` (``pip install tying[hf]``).

``Trainer`` saves a model that is not a ``PreTrainedModel`` with ``safetensors.torch.save_file``,
which refuses tensors that share memory: a tied model crashes at its first checkpoint.
:class:`TiedTrainer` is a drop-in subclass whose checkpoints are written by :func:`tying.save`
(each tie group stored once, the tie spec in the header) under the file name ``Trainer`` reads back
(``model.safetensors``); resuming and ``load_best_model_at_end`` read them through
``load_state_dict``, whose tie-aware hook (installed by the first tie) fills each target from its
source. Models ``Trainer`` saves with ``save_pretrained`` (transformers and peft models) are
saved as before.

    from tying.hf_trainer import TiedTrainer
    trainer = TiedTrainer(model=tied_module, args=TrainingArguments(...), train_dataset=...)
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from transformers import PreTrainedModel, Trainer

from tying.checkpoint import save

__all__ = ["TiedTrainer", "WEIGHTS_FILE"]

#: The file ``Trainer`` looks for in a checkpoint folder (transformers' ``SAFE_WEIGHTS_NAME``).
WEIGHTS_FILE = "model.safetensors"


class TiedTrainer(Trainer):
    """``transformers.Trainer`` whose checkpoints of plain ``nn.Module`` models go through :func:`tying.save`."""

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        model = self.accelerator.unwrap_model(self.model, keep_torch_compile=False)
        if isinstance(model, PreTrainedModel) or hasattr(model, "peft_config"):
            super()._save(output_dir, state_dict)
            return
        if not self.args.should_save:
            return
        folder = Path(output_dir or str(self.args.output_dir))
        folder.mkdir(parents=True, exist_ok=True)
        save(model, folder / WEIGHTS_FILE)
        torch.save(self.args, os.path.join(folder, "training_args.bin"))
