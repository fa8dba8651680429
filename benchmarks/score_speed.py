"""Captioning scoring speed: ``vlbench score --task captioning`` against calling pycocoevalcap directly.

    python benchmarks/score_speed.py [--images 5000] [--repeats 1] [--epoch-images 1000]

Both sides run as fresh Python processes on the same synthetic COCO-format files (5 references per
image) and include everything a user waits for: imports, JSON loading, the PTB tokenizer, METEOR's JVM
start, BLEU, ROUGE-L and CIDEr. pycocoevalcap's ``COCOEvalCap.evaluate()`` is called as published,
except that its SPICE scorer is replaced by a no-op in that process (SPICE downloads CoreNLP and cannot
run offline; vlbench reports it as skipped). Targets: ratio vlbench / pycocoevalcap <= 1.05, and a
per-epoch re-score of 1,000 images with the already running METEOR process <= 2 s.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SUBJECTS = ["a man", "a woman", "two dogs", "a small child", "a red bus", "an old clock tower", "three people",
            "a black cat", "a giraffe", "a group of kids", "a skier", "a plate of food"]
VERBS = ["is riding", "is standing next to", "sits on", "is playing with", "walks past", "is looking at",
         "is eating", "runs toward", "is parked near", "leans against"]
OBJECTS = ["a bicycle", "a wooden bench", "the ocean", "a frisbee", "a tall building", "a pizza", "the snow",
           "a kite", "a laptop", "some trees", "a fire hydrant", "the street"]
PLACES = ["", " in the park", " on a sunny day", " near the beach", " in a kitchen", " at night", " in the city"]


def _caption(rng: random.Random) -> str:
    text = f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}{rng.choice(PLACES)}"
    text = text[0].upper() + text[1:] if rng.random() < 0.6 else text
    return text + rng.choice([".", "", " .", "!"])


def make_files(folder: Path, n_images: int, seed: int = 0) -> tuple[Path, Path]:
    """Synthetic COCO captions: non-contiguous shuffled ids, 5 references and 1 prediction per image."""
    rng = random.Random(seed)
    ids = rng.sample(range(1, 50 * n_images), n_images)
    anns = [{"image_id": i, "id": k, "caption": _caption(rng)} for k, i in enumerate(i for i in ids for _ in range(5))]
    refs = {"images": [{"id": i} for i in ids], "annotations": anns}
    preds = [{"image_id": i, "caption": _caption(rng)} for i in rng.sample(ids, len(ids))]
    (folder / "refs.json").write_text(json.dumps(refs))
    (folder / "preds.json").write_text(json.dumps(preds))
    return folder / "preds.json", folder / "refs.json"


DIRECT = r"""
import json, sys, time
t0 = time.perf_counter()
from pycocotools.coco import COCO
import pycocoevalcap.eval as E
class NoSpice:
    def compute_score(self, gts, res): return float("nan"), [float("nan")] * len(gts)
    def method(self): return "SPICE"
E.Spice = NoSpice
coco = COCO(sys.argv[1])
res = coco.loadRes(sys.argv[2])
ev = E.COCOEvalCap(coco, res)
ev.params["image_id"] = res.getImgIds()
ev.evaluate()
ev.eval.pop("SPICE")
sys.stderr.write(json.dumps({"seconds": time.perf_counter() - t0, "scores": ev.eval}) + "\n")
"""


def time_direct(preds: Path, refs: Path) -> tuple[float, dict]:
    """Wall time of a fresh process running pycocoevalcap's COCOEvalCap.evaluate()."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", DIRECT, str(refs), str(preds)], capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    return wall, json.loads(proc.stderr.strip().splitlines()[-1])["scores"]


def time_vlbench(preds: Path, refs: Path) -> tuple[float, dict]:
    """Wall time of a fresh ``python -m vlbench score --task captioning --format json`` process."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "vlbench", "score", "--task", "captioning", "-p", str(preds),
                           "-r", str(refs), "--format", "json", "--quiet"], capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"vlbench score failed: {proc.stderr.strip()}")
    return wall, json.loads(proc.stdout)


def time_epochs(preds: Path, refs: Path, n: int) -> dict[str, float]:
    """In-process, as a training loop validates: the same n images each epoch, new predictions each time."""
    from vlbench.metrics.captioning import CaptionScorer
    from vlbench.metrics.formats import read_coco_references, read_coco_results
    from vlbench.metrics.ptb import tokenize_lines

    p, r = read_coco_results(preds), read_coco_references(refs)
    images = list(r)[:n]
    refs_n = {i: r[i] for i in images}
    rng = random.Random(2)
    epoch1 = {i: p[i] for i in images}
    epoch2 = {i: _caption(rng) for i in images}  # the next epoch's model writes new captions
    with CaptionScorer() as scorer:
        t = time.perf_counter()
        scorer.score(epoch1, refs_n)
        first_s = time.perf_counter() - t
        t = time.perf_counter()
        scorer.score(epoch2, refs_n)
        second_s = time.perf_counter() - t
        hyps = tokenize_lines([_caption(rng) for _ in images])
        ref_tokens = iter(tokenize_lines([c for i in images for c in refs_n[i]]))
        ref_lists = [[next(ref_tokens) for _ in refs_n[i]] for i in images]
        t = time.perf_counter()
        scorer._meteor.score(hyps, ref_lists)  # type: ignore[union-attr]
        meteor_s = time.perf_counter() - t
    return {"first_call_s": first_s, "second_call_s": second_s, "second_call_meteor_only_s": meteor_s}


def main() -> None:
    """Run the comparison and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=1, help="alternate runs per side; the best time of each is compared")
    parser.add_argument("--epoch-images", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vlbench-bench-") as tmp:
        (Path(tmp) / "epochs").mkdir()
        preds, refs = make_files(Path(tmp), args.images)
        direct_times, ours_times = [], []
        for _ in range(args.repeats):
            d, direct_scores = time_direct(preds, refs)
            o, our_scores = time_vlbench(preds, refs)
            direct_times.append(d)
            ours_times.append(o)
        worst = max(abs(our_scores[k] - v) for k, v in direct_scores.items())
        print(f"images: {args.images} (5 references each)")
        print(f"pycocoevalcap COCOEvalCap.evaluate(): {min(direct_times):.2f} s  (runs: {', '.join(f'{t:.2f}' for t in direct_times)})")
        print(f"vlbench score --task captioning:      {min(ours_times):.2f} s  (runs: {', '.join(f'{t:.2f}' for t in ours_times)})")
        print(f"ratio vlbench / pycocoevalcap: {min(ours_times) / min(direct_times):.3f}  (target <= 1.05)")
        print(f"largest score difference: {worst:.3g}  ({', '.join(f'{k}={v:.4f}' for k, v in direct_scores.items())})")
        epochs_preds, epochs_refs = make_files(Path(tmp) / "epochs", args.epoch_images, seed=1)
        e = time_epochs(epochs_preds, epochs_refs, args.epoch_images)
        print(f"per-epoch scoring of the same {args.epoch_images} images with one CaptionScorer: first epoch "
              f"{e['first_call_s']:.2f} s (JVM start), next epoch {e['second_call_s']:.2f} s (target <= 2 s); "
              f"METEOR alone on {args.epoch_images} new captions: {e['second_call_meteor_only_s']:.2f} s")


if __name__ == "__main__":
    main()
