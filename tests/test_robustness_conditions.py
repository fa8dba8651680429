"""Robustness conditions on their own: ImageNet-C corruptions, question perturbations, and PGD on pixels."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from torch import nn

from vlbench.robustness.attack import PGDBatches, pgd, pixel_scale
from vlbench.robustness.corruptions import (
    CORRUPTIONS,
    SEVERITIES,
    CorruptedImageStore,
    corrupt,
    reference_side,
    severity_parameters,
)
from vlbench.robustness.text_perturb import perturb_texts, typos, word_dropout


@pytest.fixture(scope="module")
def shapes_images(tmp_path_factory):
    from vlbench.data.shapes import build_shapes

    dataset = build_shapes(None, {"train_images": 6, "val_images": 2, "test_images": 4},
                           tmp_path_factory.mktemp("shapes"), quiet=True)
    ids = dataset.images.ids()[:4]
    return dataset.images, ids, dataset.images.get(ids).numpy()


def _distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b).mean())


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_each_corruption_is_seeded_and_grows_with_severity(shapes_images, name):
    _, ids, images = shapes_images
    for image, image_id in zip(images, ids):
        first = [corrupt(image, name, s, 7, image_id) for s in SEVERITIES]
        again = [corrupt(image, name, s, 7, image_id) for s in SEVERITIES]
        assert all(np.array_equal(a, b) for a, b in zip(first, again))
        assert all(c.shape == image.shape and c.dtype == np.uint8 for c in first)
        distances = [_distance(c, image) for c in first]
        # further from the clean image at every step (brightness saturates once every pixel's value reaches 1)
        assert all(later >= earlier for earlier, later in zip(distances, distances[1:])), distances
        assert distances[-1] > distances[0] > 0, distances
    if name == "gaussian_noise":  # the draw follows the seed and the image, nothing else
        image, image_id = images[0], ids[0]
        assert not np.array_equal(corrupt(image, name, 3, 7, image_id), corrupt(image, name, 3, 8, image_id))
        assert not np.array_equal(corrupt(image, name, 3, 7, image_id), corrupt(image, name, 3, 7, image_id + 1))


def test_jpeg_is_a_real_jpeg_round_trip(shapes_images):
    from PIL import Image

    _, ids, images = shapes_images
    for severity in (1, 5):
        quality = int(CORRUPTIONS["jpeg_compression"].value(severity, 64))
        buffer = io.BytesIO()
        Image.fromarray(images[0]).save(buffer, format="JPEG", quality=quality)
        assert buffer.getvalue()[:2] == b"\xff\xd8"  # a JPEG stream (SOI marker)
        decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
        assert np.array_equal(corrupt(images[0], "jpeg_compression", severity, 0, ids[0]), decoded)


def test_parameters_follow_the_published_tables_and_scale_the_blur_with_the_image():
    assert reference_side(64) == 64 and reference_side(96) == 64 and reference_side(224) == 224
    assert reference_side(500) == 224
    small, large = severity_parameters(64), severity_parameters(224)
    assert small["jpeg_compression"]["values"] == [65, 58, 50, 40, 25]  # Tiny-ImageNet-C
    assert large["jpeg_compression"]["values"] == [25, 18, 15, 10, 7]  # ImageNet-C
    assert large["gaussian_blur"]["values"] == [1, 2, 3, 4, 6]
    assert severity_parameters(32)["gaussian_blur"]["values"] == [0.25, 0.375, 0.5, 0.625, 0.75]
    assert severity_parameters(448)["gaussian_blur"]["values"] == [2, 4, 6, 8, 12]


def test_the_corrupted_store_serves_corrupted_pixels_and_counts_requests(shapes_images):
    store, ids, images = shapes_images
    corrupted = CorruptedImageStore(store, "contrast", 4, 0)
    pixels = corrupted.get(ids[:2]).numpy()
    assert corrupted.calls == 1 and pixels.shape == images[:2].shape
    assert np.array_equal(pixels[1], corrupt(images[1], "contrast", 4, 0, ids[1]))
    assert not hasattr(corrupted, "for_transform") and not hasattr(corrupted, "load")
    with pytest.raises(ValueError, match="unknown corruption"):
        CorruptedImageStore(store, "fog", 1, 0)
    with pytest.raises(ValueError, match="severity"):
        CorruptedImageStore(store, "contrast", 6, 0)


def test_text_perturbations_are_seeded_and_grow_with_the_rate():
    texts = ["what color is the large circle to the left of the square"] * 40
    assert perturb_texts(texts, "typos", 0.1, 3) == perturb_texts(texts, "typos", 0.1, 3)
    assert perturb_texts(texts, "typos", 0.1, 3) != perturb_texts(texts, "typos", 0.1, 4)
    changed = [sum(a != b for a, b in zip(texts, perturb_texts(texts, "typos", rate, 0))) for rate in (0.01, 0.2)]
    assert changed[0] < changed[1] == 40
    rng = np.random.default_rng(0)
    assert typos("a b c", 0.0, rng) == "a b c" and word_dropout("one", 0.99, rng) == "one"
    for rate in (0.1, 0.3, 0.99):
        for dropped in perturb_texts(texts, "word_dropout", rate, 1):
            words = dropped.split()
            assert 1 <= len(words) <= 12 and all(w in texts[0].split() for w in words)
    lengths = [np.mean([len(t.split()) for t in perturb_texts(texts, "word_dropout", r, 1)]) for r in (0.1, 0.3)]
    assert lengths[0] > lengths[1]
    with pytest.raises(ValueError, match="unknown text perturbation"):
        perturb_texts(texts, "rephrase", 0.1, 0)


class _PixelClassifier(nn.Module):
    """A small convolutional classifier over normalised pixels."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Linear(8, 5)

    def forward(self, batch):
        return self.head(torch.relu(self.conv(batch["pixel_values"])).mean((2, 3)))


def test_pgd_raises_the_loss_and_stays_in_its_budget_and_the_pixel_range(shapes_images):
    from vlbench.data.images import SquareResize

    _, ids, images = shapes_images
    transform = SquareResize(32)
    scale = pixel_scale(transform, images[0].shape)
    assert torch.allclose(scale.lo, torch.full((1, 3, 1, 1), -1.0)) and torch.allclose(scale.hi, torch.ones(1, 3, 1, 1))
    model = _PixelClassifier().eval()
    labels = torch.tensor([0, 1, 2, 3])

    def objective(batch):
        return nn.functional.cross_entropy(model(batch), labels)

    batch = {"index": torch.arange(4), **transform.from_uint8(torch.from_numpy(images))}
    for eps in (1 / 255, 4 / 255):
        attack = PGDBatches(objective, scale, eps, 5, 0, torch.device("cpu"))
        attacked = attack("test", dict(batch))
        assert attack.calls == 1 and attack.loss_attacked > attack.loss_clean
        clean_unit, unit = scale.to_unit(batch["pixel_values"]), scale.to_unit(attacked["pixel_values"])
        assert float((unit - clean_unit).abs().max()) <= eps + 1e-6
        assert float(attacked["pixel_values"].min()) >= -1.0 - 1e-6 and float(attacked["pixel_values"].max()) <= 1 + 1e-6
        again = PGDBatches(objective, scale, eps, 5, 0, torch.device("cpu"))("test", dict(batch))
        assert torch.equal(again["pixel_values"], attacked["pixel_values"])  # seeded start: the same attack
    # more steps of the bare PGD never leave the ball and climb at least as high as the random start alone
    clean = scale.to_unit(batch["pixel_values"])
    loss = lambda unit: objective({"pixel_values": scale.from_unit(unit)})  # noqa: E731
    start = pgd(loss, clean, 2 / 255, 0, torch.Generator().manual_seed(1))
    climbed = pgd(loss, clean, 2 / 255, 10, torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert float(loss(climbed)) > float(loss(start)) and float((climbed - clean).abs().max()) <= 2 / 255 + 1e-6


def test_pixel_scale_of_a_pretrained_transform_uses_its_mean_and_std():
    from vlbench.models.parts.image_transform import CroppedPixels, ImagePreprocessing, PretrainedImageTransform

    pre = ImagePreprocessing(mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.5), size=16, interpolation="bilinear", crop_pct=1.0)
    full = pixel_scale(PretrainedImageTransform(pre), (20, 20, 3))
    expected_lo = torch.tensor([-0.5 / 0.2, -0.4 / 0.25, -0.3 / 0.5]).view(1, 3, 1, 1)
    assert torch.allclose(full.lo, expected_lo) and torch.allclose(full.hi - full.lo, 1 / torch.tensor(pre.std).view(1, 3, 1, 1))
    crops = pixel_scale(CroppedPixels(pre), (20, 20, 3))  # uint8 crops: finished by the transform before the attack
    assert torch.allclose(crops.lo, full.lo) and crops.finish is not None
    finished = crops.model_input(torch.full((1, 3, 20, 20), 255, dtype=torch.uint8))
    assert finished.shape == (1, 3, 16, 16) and torch.allclose(finished[0, :, 0, 0], full.hi.view(3))
