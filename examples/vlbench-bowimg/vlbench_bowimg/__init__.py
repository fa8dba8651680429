"""Entry point of the vlbench-bowimg plugin: register the model type lazily and add the spec folder."""

from pathlib import Path

from vlbench.registry import MODELS
from vlbench.specs import add_spec_dir

MODELS.add(
    "bowimg",
    "vlbench_bowimg.model:BowImgEncoder",
    description="bag-of-words question + small-CNN image features, concatenated (BOWIMG, Zhou et al. 2015)",
)
add_spec_dir("baselines", Path(__file__).resolve().parent / "baselines")
