"""Where relation questions get stuck: a relation network's reasoning part fed perfect symbols, not pixels.

Builds the relation-only shapes VQA data, turns every scene into a 4x4 grid of symbolic cells, parses
every question into (colour, shape, relation, colour, shape) one-hots, and trains the relation
network's g/f MLPs (same widths as the `relation-network` baseline) to answer yes/no:

* ``--inputs symbolic``: each cell holds one-hot colour and shape (perception solved, binding left);
* ``--inputs bound``: each cell holds "is the question's first object" / "is its second object"
  (perception and binding solved; only the comparison of two positions is left);
* ``--inputs pixels``: the baseline's CNN stem over the image, with the parsed question.

    python examples/relation_probe.py --inputs bound --epochs 3
"""

from __future__ import annotations

import argparse
import json
import re
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from vlbench.data.base import default_cache_dir
from vlbench.data.shapes.world import COLORS, SHAPES
from vlbench.models.base import normalize_pixels
from vlbench.models.relation_network import cell_coordinates
from vlbench.runner import load_dataset

PATTERN = re.compile(r"Is the (\w+) (\w+) (to the left of|to the right of|above|below) the (\w+) (\w+)\?")
RELATIONS = ["to the left of", "to the right of", "above", "below"]


def encode(dataset, split: str, inputs: str):
    """(cell features or image ids, parsed question one-hots, yes=1 labels) of one split."""
    scenes = {r["image_id"]: json.loads(r["scene"])["objects"] for r in dataset.split("scenes", split)}
    table = dataset.split("vqa", split).select_columns(["image_id", "question", "multiple_choice_answer"]).to_dict()
    cells, questions, labels = [], [], []
    for image_id, question, answer in zip(table["image_id"], table["question"], table["multiple_choice_answer"]):
        c1, s1, relation, c2, s2 = PATTERN.match(question).groups()
        grid = np.zeros((16, 9), np.float32)
        grid[:, 8] = 1  # empty cell
        for o in scenes[image_id]:
            cell = o["row"] * 4 + o["col"]
            grid[cell, 8] = 0
            if inputs == "bound":
                grid[cell, 0] = float(o["color"] == c1 and o["shape"] == s1)
                grid[cell, 1] = float(o["color"] == c2 and o["shape"] == s2)
            else:
                grid[cell, COLORS.index(o["color"])] = 1
                grid[cell, 5 + SHAPES.index(o["shape"])] = 1
        q = np.zeros(20, np.float32)
        q[COLORS.index(c1)] = q[5 + SHAPES.index(s1)] = q[8 + RELATIONS.index(relation)] = 1
        q[12 + COLORS.index(c2)] = q[17 + SHAPES.index(s2)] = 1
        cells.append(grid if inputs != "pixels" else image_id)
        questions.append(q)
        labels.append(1.0 if answer == "yes" else 0.0)
    x = torch.tensor(np.stack(cells)) if inputs != "pixels" else normalize_pixels(dataset.images.get(cells))
    return x, torch.tensor(np.stack(questions)), torch.tensor(labels)


class PairMLP(nn.Module):
    """g over every ordered cell pair with the question, mean, f -> one yes/no logit."""

    def __init__(self, cell_size: int, pixels: bool, hidden: int = 128) -> None:
        super().__init__()
        self.stem = None
        if pixels:
            layers: list[nn.Module] = []
            for a, b in zip([3, 32, 64, 64], [32, 64, 64, 64]):
                layers += [nn.Conv2d(a, b, 3, 2, 1), nn.BatchNorm2d(b), nn.ReLU()]
            self.stem = nn.Sequential(*layers)
        self.register_buffer("coords", cell_coordinates(4))
        width = 2 * (cell_size + 2) + 20
        self.g = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                               nn.Linear(hidden, hidden), nn.ReLU())
        self.f = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, cells: torch.Tensor, question: torch.Tensor) -> torch.Tensor:
        """Yes/no logits (B,)."""
        if self.stem is not None:
            cells = self.stem(cells).flatten(2).transpose(1, 2)
        o = torch.cat([cells, self.coords.expand(cells.shape[0], -1, -1)], -1)
        n = o.shape[1]
        pairs = torch.cat([o[:, :, None].expand(-1, -1, n, -1), o[:, None].expand(-1, n, -1, -1),
                           question[:, None, None].expand(-1, n, n, -1)], -1)
        return self.f(self.g(pairs).mean((1, 2))).squeeze(-1)


def main() -> None:
    """Train and print test accuracy per epoch."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", choices=["symbolic", "bound", "pixels"], default="symbolic")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--train-images", type=int, default=3000)
    args = parser.parse_args()
    torch.manual_seed(0)
    options = {"train_images": args.train_images,
               "question_mix": {"relation": 1, "color": 0, "shape": 0, "count": 0, "exist": 0}}
    dataset = load_dataset("shapes", options, default_cache_dir(), quiet=True)
    train, test = encode(dataset, "train", args.inputs), encode(dataset, "test", args.inputs)
    model = PairMLP(train[0].shape[-1] if args.inputs != "pixels" else 64, args.inputs == "pixels")
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    start = time.time()
    for epoch in range(1, args.epochs + 1):
        model.train()
        order = torch.randperm(len(train[2]))
        total = 0.0
        for i in range(0, len(order), 64):
            b = order[i:i + 64]
            loss = F.binary_cross_entropy_with_logits(model(train[0][b], train[1][b]), train[2][b])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(b)
        model.eval()
        with torch.no_grad():
            accuracy = ((model(test[0], test[1]) > 0).float() == test[2]).float().mean().item()
        print(f"{args.inputs} epoch {epoch}: train loss {total / len(order):.4f}, test accuracy {100 * accuracy:.1f}% "
              f"({time.time() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
