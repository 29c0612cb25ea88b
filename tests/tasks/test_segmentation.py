"""The segmentation task: focal loss and IoU against hand-computed cases, the generated scenes
(seeded, imbalanced, splits independent of each other's sizes), the folder reader's one-line
errors, recipes building the intended models, and a short run that beats the majority class."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import tying
from tying.recipes import RecipeError, load_recipe, read_metrics, run_recipes, expand_seeds
from tying.recipes.report import write_report
from tying.tasks.segmentation import CLASSES, FolderError, confusion_matrix, focal_loss, iou_per_class, make_scenes, mean_iou, read_folder
from tying.tasks.segmentation.figures import decode, encode

Image = pytest.importorskip("PIL.Image")
RECIPES = {"mavnet-unshared": 4315, "mavnet-shared": 2803, "mavnet-shared-norms": 2515, "mavnet-shared-wide": 4357, "unet-small": 482_771}


def test_focal_loss_by_hand() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]]).T.reshape(1, 2, 1, 2)  # pixel 0: logits (2, 0); pixel 1: (0, 1)
    target = torch.tensor([[[0, 0]]])
    p = [math.exp(2) / (math.exp(2) + 1), 1 / (1 + math.e)]  # probability of class 0 at each pixel
    expected = sum(-((1 - q) ** 2) * math.log(q) for q in p) / 2
    assert focal_loss(logits, target, gamma=2.0).item() == pytest.approx(expected, rel=1e-6)
    assert focal_loss(logits, target, gamma=0.0).item() == pytest.approx(F.cross_entropy(logits, target).item(), rel=1e-6)
    with pytest.raises(ValueError, match="gamma must be >= 0, got -1"):
        focal_loss(logits, target, gamma=-1)


def test_iou_by_hand() -> None:
    target = torch.tensor([0, 0, 0, 1, 1, 2])
    pred = torch.tensor([0, 0, 1, 1, 2, 2])
    confusion = confusion_matrix(pred, target, 4)
    assert confusion[:3, :3].tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    iou = iou_per_class(confusion)
    assert iou[:3].tolist() == pytest.approx([2 / 3, 1 / 3, 1 / 2]) and math.isnan(iou[3])  # class 3 absent: not counted
    assert mean_iou(confusion) == pytest.approx((2 / 3 + 1 / 3 + 1 / 2) / 3)


def test_scenes_are_seeded_imbalanced_and_splits_do_not_depend_on_each_other() -> None:
    images, masks = make_scenes(40, split="train", seed=3)
    again, _ = make_scenes(20, split="train", seed=3)
    assert torch.equal(images[:20], again) and images.shape == (40, 3, 64, 64) and 0 <= images.min() and images.max() <= 1
    share = torch.bincount(masks.flatten(), minlength=3).double() / masks.numel()
    assert share[0] > 0.95 and 0.003 < share[1] < 0.03 and 0.001 < share[2] < 0.03  # thin and small classes
    assert not torch.equal(make_scenes(5, split="test", seed=3)[0], make_scenes(5, split="valid", seed=3)[0])
    with pytest.raises(ValueError, match="scene size must be a multiple of 4 and at least 16, got 30"):
        make_scenes(1, split="train", size=30)


def test_shown_examples_round_trip_through_the_record() -> None:
    images, masks = make_scenes(1, split="test")
    image, mask, pred = decode(encode(images[0], masks[0], masks[0].flip(0)))
    assert (mask == masks[0].numpy()).all() and (pred == masks[0].flip(0).numpy()).all()
    assert np.abs(image.astype(float) / 255 - images[0].permute(1, 2, 0).numpy()).max() <= 0.5 / 255 + 1e-6


def _folder(root: Path, n: int = 3, size: tuple[int, int] = (8, 8)) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        Image.fromarray(np.full((*size, 3), 40 * i, dtype=np.uint8)).save(root / "images" / f"f{i}.png")
        Image.fromarray(np.eye(*size, dtype=np.uint8) * (i % 3)).save(root / "masks" / f"f{i}.png")
    return root


def test_the_folder_reader_reads_images_and_masks(tmp_path: Path) -> None:
    images, masks = read_folder(_folder(tmp_path / "d"), classes=3)
    assert images.shape == (3, 3, 8, 8) and images[1].max().item() == pytest.approx(40 / 255)
    assert masks.shape == (3, 8, 8) and masks[2].diagonal().tolist() == [2] * 8


@pytest.mark.parametrize(
    "damage,message",
    [
        (lambda r: (r / "masks" / "f1.png").unlink(), r"'.*images/f1.png' has no mask: expected '.*masks/f1.png'$"),
        (lambda r: Image.fromarray(np.zeros((8, 8), np.uint8)).save(r / "masks" / "extra.png"), r"'.*masks/extra.png' has no image of the same name"),
        (lambda r: Image.fromarray(np.zeros((8, 6, 3), np.uint8)).save(r / "images" / "f2.png"), r"'.*images/f2.png' is 6x8 pixels; the first image is 8x8: every image must have one size$"),
        (lambda r: Image.fromarray(np.zeros((8, 8), np.uint8)).save(r / "images" / "f0.png"), r"'.*images/f0.png' has 1 channel\(s\); the model reads 3$"),
        (lambda r: Image.fromarray(np.full((8, 8), 7, np.uint8)).save(r / "masks" / "f1.png"), r"'.*masks/f1.png' holds label id 7; with classes = 3 the ids are 0 to 2$"),
        (lambda r: Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(r / "masks" / "f1.png"), r"'.*masks/f1.png' must be a single-channel image of 8x8 pixels"),
        (lambda r: (r / "images" / "f1.png").write_bytes(b"not a png"), r"'.*images/f1.png' is not a readable image"),
    ],
)
def test_a_bad_folder_is_a_one_line_error_naming_the_file(tmp_path: Path, damage: object, message: str) -> None:
    root = _folder(tmp_path / "d")
    damage(root)  # type: ignore[operator]
    with pytest.raises(FolderError, match=message) as error:
        read_folder(root, classes=3)
    assert "\n" not in str(error.value)


def test_a_missing_folder_names_it(tmp_path: Path) -> None:
    with pytest.raises(FolderError, match=r"'.*nowhere/images' is not a folder: a segmentation folder holds images/ and masks/"):
        read_folder(tmp_path / "nowhere", classes=2)


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipes_build_the_intended_models(name: str) -> None:
    recipe = load_recipe(name, ["data.train=4", "data.valid=2", "data.test=2"])
    task = recipe.make_task()
    model = task.build_model(task.load_data(None))
    assert tying.summary(model).unique_parameters == RECIPES[name]


def test_bad_model_keys_are_refused_naming_them() -> None:
    with pytest.raises(RecipeError, match=r"unknown key 'model.share' \(known: arch, base, depth\)"):
        load_recipe("unet-small", ['model.share="conv"'])
    with pytest.raises(RecipeError, match=r"model.share = 'half'"):
        load_recipe("mavnet-shared", ['model.share="half"'])


def test_a_folder_with_too_few_images_for_three_splits_is_an_error(tmp_path: Path) -> None:
    root = _folder(tmp_path / "d", n=3)
    task = load_recipe("mavnet-shared", [f'data.source="{root}"']).make_task()
    with pytest.raises(ValueError, match=r"3 images are too few for a train, valid and test split"):
        task.load_data(None)


@pytest.mark.slow
def test_a_short_run_beats_the_majority_class_and_draws_the_predictions(tmp_path: Path) -> None:
    settings = ["data.train=200", "data.valid=40", "data.test=40", "train.epochs=20", "train.batch_size=8", "train.lr=0.02"]
    runs = expand_seeds([load_recipe("mavnet-shared", settings)])
    run_recipes(runs, tmp_path)
    record = read_metrics(tmp_path / "mavnet-shared")
    assert record is not None
    _, masks = make_scenes(40, split="test")
    majority = 100 * mean_iou(confusion_matrix(torch.zeros_like(masks), masks, len(CLASSES)))
    assert record["test"]["miou"] > majority + 5, (record["test"], majority)
    write_report(runs, tmp_path, "t", report="seg")
    assert (tmp_path / "seg-predictions.png").is_file() and "seg-predictions.png" in (tmp_path / "seg.md").read_text()
