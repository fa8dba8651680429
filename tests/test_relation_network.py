"""The relation-network baseline: builds from its spec, reads both inputs, fits a batch, compares positions."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from tests.zoo_fixtures import distinct_rows, one_thread, tiny  # noqa: F401
from vlbench.models.relation_network import RelationNetworkConfig, RelationNetworkEncoder, cell_coordinates


def test_cell_coordinates_are_row_major_centres():
    assert cell_coordinates(2).tolist() == [[-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0], [1.0, 1.0]]
    assert cell_coordinates(4).shape == (16, 2)


def test_relation_network_reads_question_and_image_and_fits_a_batch(tiny):
    assembled, task = tiny.build(tiny.config("relation-network", config={"hidden_size": 64}))
    model = assembled.model
    batch = task.collate("train", distinct_rows(task, 8), assembled.modalities)
    model.eval()
    with torch.no_grad():
        base = model(batch)
        assert not torch.allclose(base, model({**batch, "pixel_values": batch["pixel_values"].flip(-1)}))
        assert not torch.allclose(base, model({**batch, "input_ids": batch["input_ids"].flip(0),
                                                "attention_mask": batch["attention_mask"].flip(0)}))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    losses = []
    for _ in range(60):
        loss = task.loss(model(batch), batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    p = batch["targets"].mean(0).clamp(1e-4, 1 - 1e-4).expand_as(batch["targets"])
    constant = float(F.binary_cross_entropy(p, batch["targets"]) * batch["targets"].shape[1])
    assert losses[-1] < 0.9 * constant and losses[-1] < 0.4 * losses[0]


def test_pair_mlp_can_learn_which_of_two_marked_cells_is_left():
    """Two bright cells on a dark 4x4 grid; the label is whether the red one lies left of the green one."""
    torch.manual_seed(0)

    class _Tok:
        pad_token_id = 0

        def __len__(self):
            return 4

    from vlbench.models.base import BuildContext

    config = RelationNetworkConfig(hidden_size=32, stem_channels=[8, 16], g_layers=2, f_layers=1, embedding_size=8,
                                   question_size=8)
    model = RelationNetworkEncoder.from_spec(config, None, BuildContext("vqa", tokenizer=_Tok(), image_size=16))
    head = torch.nn.Linear(32, 1)

    def sample(n):
        images = torch.zeros(n, 3, 16, 16)
        labels = torch.zeros(n)
        for i in range(n):
            a, b = torch.randperm(16)[:2].tolist()
            for cell, channel in ((a, 0), (b, 1)):
                r, c = divmod(cell, 4)
                images[i, channel, 4 * r:4 * r + 4, 4 * c:4 * c + 4] = 1.0
            labels[i] = float(a % 4 < b % 4)
        return images, labels

    ids = torch.ones(1, 2, dtype=torch.long)
    optimizer = torch.optim.Adam([*model.parameters(), *head.parameters()], lr=3e-3)
    for _ in range(300):
        images, labels = sample(32)
        batch = {"pixel_values": images, "input_ids": ids.expand(32, -1), "attention_mask": ids.expand(32, -1)}
        loss = F.binary_cross_entropy_with_logits(head(model(batch).pooled).squeeze(-1), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    images, labels = sample(400)
    with torch.no_grad():
        batch = {"pixel_values": images, "input_ids": ids.expand(400, -1), "attention_mask": ids.expand(400, -1)}
        accuracy = ((head(model(batch).pooled).squeeze(-1) > 0).float() == labels).float().mean().item()
    prior = max(labels.mean().item(), 1 - labels.mean().item())
    assert accuracy > prior + 0.2, (accuracy, prior)
