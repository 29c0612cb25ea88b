"""The numbers docs/RESULTS.md quotes about the CDEF runs beyond the compare tables.

1. Kernel recovery: per variant and training length, the relative L1 distance between each run's
   recovered lag profile and the true one (``extras`` of the runs' ``metrics.json``), mean ± sd
   over seeds, and the mean profile.
2. The importance-weighted estimator: the held-out log-likelihood per cell of the best checkpoints
   of a few runs with K = 64, 1,024 and 8,192 samples, and the ELBO (needs the runs' checkpoints,
   which ``tying compare`` writes but the repository does not keep: run the compare commands first).
3. Starting at the truth: the tied model of ``cdef-synth-tied-t768`` with its kernel and baseline set
   to the generator's, the encoder trained alone for 60 epochs (the weights frozen), then everything
   for 60 more; the test scores and the lag profile every 20 epochs, and the true model's score with
   K = 1,024 and 16,384 (about two minutes on one core).

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
from tying.tasks.cdef import true_kernel, windows
from tying.tasks.cdef.figures import kernel_profile

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


def _inverse_softplus(y: torch.Tensor) -> torch.Tensor:
    return y + torch.log(-torch.expm1(-y))


def start_at_truth() -> None:
    recipe = load_recipe("cdef-synth-tied-t768")
    task = recipe.make_task()
    data = task.load_data(None)
    torch.manual_seed(recipe.train.seed)
    model = task.build_model(data)
    assert isinstance(model, CDEF)
    d = recipe.tables["data"]
    scale = model.scale.double().view(1, -1, 1)
    with torch.no_grad():  # the model's rate is scale * (bias + A z): the generator's A and baseline in those units
        model.layers[0].steps[0].weight.copy_(_inverse_softplus((true_kernel(d.series, d.factors, d.kernel) / scale).clamp_min(1e-4)))
        model.layers[0].bias.copy_(_inverse_softplus(0.5 / model.scale.double()))
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.train.lr, weight_decay=0.0)
    test = windows(data.test, model.config.window).float()
    for epoch in range(1, 121):
        for p in model.layers.parameters():
            p.requires_grad_(epoch > 60)
        for batch in task.train_batches(data, epoch):
            loss = task.step(model, batch, None).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if epoch % 20 == 0:
            with torch.no_grad():
                torch.manual_seed(0)
                iw = model.log_marginal(test, 64).sum().item() / test.numel()
                torch.manual_seed(0)
                elbo = model.elbo(test, 16).sum().item() / test.numel()
            profile = kernel_profile(model.count_kernels().detach().double(), model.config.reach)
            phase = "encoder only" if epoch <= 60 else "all free"
            print(f"epoch {epoch:3d} ({phase}): test importance-weighted (K = 64) {iw:.3f}, ELBO {elbo:.3f}; profile {profile}")
        if epoch == 60:  # the true model's own held-out score, as far as more samples reach
            with torch.no_grad():
                for k in (1024, 16384):
                    torch.manual_seed(0)
                    print(f"  the true kernel, K = {k}: {model.log_marginal(test, k, chunk=512).sum().item() / test.numel():.3f}")


if __name__ == "__main__":
    torch.set_num_threads(1)
    kernel_recovery()
    estimator()
    start_at_truth()
