"""The numbers docs/RESULTS.md quotes about the CDEF runs beyond the compare tables.

1. Kernel recovery: per variant and training length, the relative L1 distance between each run's
   recovered lag profile and the true one (``extras`` of the runs' ``metrics.json``), mean ± sd
   over seeds, and the mean profile.
2. The importance-weighted estimator: the held-out log-likelihood per cell of the best checkpoints
   of a few runs with K = 64, 1,024 and 8,192 samples, and the ELBO (needs the runs' checkpoints,
   which ``tying compare`` writes but the repository does not keep: run the compare commands first).

    OMP_NUM_THREADS=1 python scripts/cdef_checks.py            # after the two compare commands of RESULTS.md
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import torch

import tying
from tying.models import CDEF
from tying.recipes import load_recipe
from tying.tasks.cdef import windows

RESULTS = Path("results/cdef")
CHECKED = [("seatbelts", "cdef-seatbelts-tied"), ("seatbelts", "cdef-seatbelts-untied"), ("synthetic", "cdef-synth-tied-t768")]


def kernel_recovery() -> None:
    runs: dict[tuple[str, int], list[dict[str, list[float]]]] = {}
    for path in sorted((RESULTS / "synthetic").glob("*/metrics.json")):
        extras = json.loads(path.read_text())["extras"]
        if "profile" in extras:
            runs.setdefault((extras["variant"], extras["train_length"]), []).append(extras)
    for (variant, length), group in sorted(runs.items()):
        mean = [round(statistics.fmean(e["profile"][i] for e in group), 2) for i in range(len(group[0]["profile"]))]
        truth = group[0]["true_profile"]
        errors = [sum(abs(a - b) for a, b in zip(e["profile"], truth)) / sum(truth) for e in group if len(e["profile"]) == len(truth)]
        error = f"relative L1 error {statistics.fmean(errors):.2f} ± {statistics.stdev(errors):.2f}" if len(errors) > 1 else "(lag 0 only)"
        print(f"{variant:7s} {length:4d} steps: profile {mean} (true {[round(t, 2) for t in truth]}) {error}")


@torch.no_grad()
def estimator() -> None:
    for area, name in CHECKED:
        task = load_recipe(name).make_task()
        data = task.load_data(None)
        model = task.build_model(data)
        assert isinstance(model, CDEF)
        tying.load(model, RESULTS / area / name / "best.safetensors")
        model.eval()
        for split in ("valid", "test"):
            x = windows(getattr(data, split), model.config.window).float()
            estimates = []
            for k in (64, 1024, 8192):
                torch.manual_seed(0)
                estimates.append(round(model.log_marginal(x, k, chunk=256).sum().item() / x.numel(), 3))
            torch.manual_seed(0)
            elbo = model.elbo(x, 64).sum().item() / x.numel()
            print(f"{name} {split}: ELBO {elbo:.3f}; importance-weighted K = 64, 1024, 8192: {estimates}")


if __name__ == "__main__":
    torch.set_num_threads(1)
    kernel_recovery()
    estimator()
