"""Tiny pretrained checkpoints saved by the tests (BERT, ViLT with its image processor, a ResNet-50 state_dict).

Each is randomly initialised and saved in the layout ``from_pretrained`` reads, so that ``pretrained: DIR``
goes through exactly the code a hub download would.
"""

from __future__ import annotations

import pytest
import torch

WORDS = ["what", "color", "is", "the", "shape", "how", "many", "are", "there", "?", "red", "blue", "circle",
         "square", "triangle", "left", "of", "right", "a", "it"]


def tokenizer():
    """A small BERT WordPiece tokenizer over whole words (BertTokenizer(vocab=...); see DESIGN.md on v5)."""
    from transformers import BertTokenizer

    from vlbench.data.text import SPECIAL_TOKENS

    return BertTokenizer(vocab={t: i for i, t in enumerate(SPECIAL_TOKENS + WORDS)}, do_lower_case=True)


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory):
    """Folders like hub snapshots: tiny BERT, tiny ViLT (with its image processor), a ResNet-50 state_dict."""
    import torchvision
    from transformers import BertConfig, BertModel, ViltConfig, ViltImageProcessor, ViltModel

    root = tmp_path_factory.mktemp("checkpoints")
    torch.manual_seed(0)
    tok = tokenizer()
    bert = root / "bert"
    tok.save_pretrained(bert)
    BertModel(BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=64)).save_pretrained(bert)
    vilt = root / "vilt"
    tok.save_pretrained(vilt)
    ViltModel(ViltConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, image_size=64, patch_size=16, max_position_embeddings=40,
                         max_image_length=-1)).save_pretrained(vilt)
    # ViLT's processor: shorter side to `shortest_edge`, longer side capped, multiples of size_divisor, padding
    ViltImageProcessor(size={"shortest_edge": 48}, size_divisor=16).save_pretrained(vilt)
    resnet = root / "resnet50.pth"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), resnet)
    return {"bert": bert, "vilt": vilt, "resnet": resnet}
