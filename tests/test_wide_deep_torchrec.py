"""The shared item table of tying.models.WideDeep in TorchRec's terms: one ``EmbeddingBagConfig``
whose ``feature_names`` lists both the candidate and the history feature holds as many
parameters as tying's tied pair, and two configs as many as the separate tables.

Skipped where torchrec does not import. On this project's CPU torch (2.13.0+cpu) it does not:
PyPI's ``fbgemm_gpu`` 1.9.0 (what ``pip install torchrec`` pulls) needs ``libtorch_cuda.so``,
and ``fbgemm-gpu-cpu`` 1.9.0 fails to load ``fbgemm_gpu_tbe_index_select.so`` with an undefined
torch symbol (built against another torch); see docs/RESULTS.md, Wide & Deep section."""

from __future__ import annotations

import pytest
import torch

import tying
from tying.models.wide_deep import WideDeep, WideDeepConfig

try:
    from torchrec import EmbeddingBagCollection, EmbeddingBagConfig
except (ImportError, OSError) as error:  # fbgemm_gpu raises OSError when its libraries do not load
    pytest.skip(f"torchrec does not import here: {type(error).__name__}", allow_module_level=True)

ITEMS, DIM = 101, 8


def item_tables(model: WideDeep) -> int:
    """Unique parameters of the candidate and history item tables."""
    return sum(p.numel() for p in {id(p): p for p in (model.item.weight, model.history.weight)}.values())


@pytest.mark.parametrize("shared", [True, False])
def test_torchrec_holds_as_many_item_parameters_as_tying(shared: bool) -> None:
    model = WideDeep(WideDeepConfig(vocab_size=ITEMS, embedding_dim=DIM, wide_buckets=4, shared=shared))
    if shared:
        configs = [EmbeddingBagConfig(name="items", embedding_dim=DIM, num_embeddings=ITEMS, feature_names=["candidate", "history"])]
    else:
        configs = [
            EmbeddingBagConfig(name="candidate", embedding_dim=DIM, num_embeddings=ITEMS, feature_names=["candidate"]),
            EmbeddingBagConfig(name="history", embedding_dim=DIM, num_embeddings=ITEMS, feature_names=["history"]),
        ]
    collection = EmbeddingBagCollection(tables=configs, device=torch.device("cpu"))
    assert sum(p.numel() for p in collection.parameters()) == item_tables(model) == (1 if shared else 2) * ITEMS * DIM
    assert bool(tying.get_spec(model).ties) == shared
