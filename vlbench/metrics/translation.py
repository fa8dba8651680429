"""Translation metrics: sacreBLEU's BLEU and chrF with their default settings, reported with signatures.

``references`` follows sacrebleu's convention: a list of reference *streams*, each with one line per
hypothesis (``references[j][i]`` is the j-th reference of sentence i). Corpus scores are sacrebleu's
``corpus_score`` with default ``BLEU()`` and ``CHRF()``; per-sentence scores (for significance tests) are
sacrebleu's ``sentence_score``, with ``BLEU(effective_order=True)`` as sacrebleu recommends at sentence
level. Optional METEOR uses pycocoevalcap's METEOR 1.5 jar (``-l en -norm``, English only).

Example:
    >>> r = translation_evaluate(["the cat sat on the mat"], [["the cat sat on a mat"]])
    >>> round(r["BLEU"], 2), round(r["chrF"], 2), r["signatures"]["BLEU"].startswith("nrefs:1|case:mixed")
    (53.73, 72.08, True)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from vlbench.errors import DataError

__all__ = ["translation_evaluate"]


def _check(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> None:
    if isinstance(hypotheses, str) or not all(isinstance(h, str) for h in hypotheses):
        raise DataError("translation hypotheses must be a list of strings.")
    if not hypotheses:
        raise DataError("there are no translation hypotheses to score.")
    if isinstance(references, str) or not references:
        raise DataError("translation references must be a non-empty list of reference streams (lists of strings).")
    for j, stream in enumerate(references):
        if isinstance(stream, str) or not all(isinstance(r, str) for r in stream):
            raise DataError(f"reference stream #{j + 1} must be a list of strings (one per hypothesis).")
        if len(stream) != len(hypotheses):
            raise DataError(
                f"reference stream #{j + 1} has {len(stream)} lines but there are {len(hypotheses)} hypotheses; "
                "each reference stream needs exactly one line per hypothesis."
            )


def translation_evaluate(
    hypotheses: Sequence[str], references: Sequence[Sequence[str]], *, meteor: bool = False
) -> dict[str, Any]:
    """sacreBLEU ``BLEU`` and ``chrF`` (0-100, defaults), their ``signatures``, and ``per_example`` sentence scores."""
    from sacrebleu.metrics import BLEU, CHRF

    _check(hypotheses, references)
    hyps, refs = list(hypotheses), [list(s) for s in references]
    bleu, chrf = BLEU(), CHRF()
    bleu_score, chrf_score = bleu.corpus_score(hyps, refs), chrf.corpus_score(hyps, refs)
    sentence_bleu = BLEU(effective_order=True)
    per_refs = [[s[i] for s in refs] for i in range(len(hyps))]
    out: dict[str, Any] = {
        "BLEU": float(bleu_score.score),
        "chrF": float(chrf_score.score),
        "signatures": {"BLEU": str(bleu.get_signature()), "chrF": str(chrf.get_signature())},
        "BLEU_detail": {
            "precisions": [float(p) for p in bleu_score.precisions],
            "bp": float(bleu_score.bp),
            "sys_len": int(bleu_score.sys_len),
            "ref_len": int(bleu_score.ref_len),
        },
    }
    per_example: dict[str, dict[int, float]] = {
        "BLEU": {i: float(sentence_bleu.sentence_score(h, r).score) for i, (h, r) in enumerate(zip(hyps, per_refs))},
        "chrF": {i: float(chrf.sentence_score(h, r).score) for i, (h, r) in enumerate(zip(hyps, per_refs))},
    }
    if meteor:
        from vlbench.metrics.meteor import shared_meteor

        corpus, each = shared_meteor().score(hyps, per_refs)
        out["METEOR"] = corpus
        out["signatures"]["METEOR"] = "meteor-1.5|lang:en|norm:yes (pycocoevalcap jar)"
        per_example["METEOR"] = dict(enumerate(each))
    out["per_example"] = per_example
    out["signatures"]["sentence_BLEU"] = str(sentence_bleu.get_signature())
    return out
