"""COCO captioning metrics exactly as pycocoevalcap's ``COCOEvalCap.evaluate()`` computes them.

BLEU-1..4, ROUGE-L and CIDEr (CIDEr-D, document frequencies from the scored set's references) come from
pycocoevalcap's own Python scorers; METEOR and the PTB tokenizer are pycocoevalcap's jars driven by
vlbench's process code (see ``ptb.py`` and ``meteor.py`` for why); SPICE runs only when its CoreNLP jars
are available and is otherwise reported under ``skipped`` with the reason, never as a number.
Scores are corpus-level on a 0-1 scale (CIDEr on its usual 0-10 scale), images are scored in the order
of the references (the annotation file's image order, as ``COCOEvalCap`` does).

Example (needs Java; the first call waits for the METEOR JVM):
    >>> with CaptionScorer() as scorer:  # doctest: +SKIP
    ...     out = scorer.score({1: "a man riding a horse"}, {1: ["A man rides a horse.", "a horse and a man"]})
    >>> sorted(k for k in out if k != "per_example")  # doctest: +SKIP
    ['Bleu_1', 'Bleu_2', 'Bleu_3', 'Bleu_4', 'CIDEr', 'METEOR', 'ROUGE_L', 'skipped']
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any, Optional, Union

from vlbench.errors import DataError
from vlbench.metrics.ids import align_ids
from vlbench.metrics.meteor import MeteorProcess, shared_meteor
from vlbench.metrics.ptb import tokenize_lines
from vlbench.metrics.spice import find_corenlp_dir, spice_score

__all__ = ["CaptionScorer", "caption_evaluate", "shared_caption_scorer", "CAPTION_KEYS"]

_TOKEN_CACHE_LIMIT = 1_000_000  # captions; beyond this the cache starts over rather than grow without bound
CAPTION_KEYS = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr", "SPICE")


def _check_inputs(predictions: Mapping[Hashable, Any], references: Mapping[Hashable, Any]) -> None:
    if not isinstance(predictions, Mapping) or not isinstance(references, Mapping):
        raise DataError("captioning expects predictions {image_id: caption} and references {image_id: [captions]}.")
    for image_id, caption in predictions.items():
        if not isinstance(caption, str):
            raise DataError(f"the predicted caption for image {image_id!r} must be a string, got {caption!r}.")
    for image_id, refs in references.items():
        if isinstance(refs, str) or not isinstance(refs, Sequence) or not refs:
            raise DataError(f"image {image_id!r} needs a non-empty list of reference captions.")
        if not all(isinstance(r, str) for r in refs):
            raise DataError(f"every reference caption of image {image_id!r} must be a string.")


class CaptionScorer:
    """Reusable COCO caption scorer: keeps one METEOR JVM across ``score`` calls (call ``close()`` at the end)."""

    def __init__(self, *, meteor: Union[bool, MeteorProcess] = True, spice_dir: Optional[Union[str, Path]] = None) -> None:
        """``meteor``: True starts a METEOR process owned by this scorer, a ``MeteorProcess`` is borrowed, False skips METEOR."""
        # SPICE is located first so a wrong --spice-dir fails before any JVM starts
        self._corenlp_dir, self._spice_reason = find_corenlp_dir(spice_dir)
        self._owns_meteor = meteor is True
        # starting the JVM now lets it load its paraphrase table while captions are being tokenized
        self._meteor: Optional[MeteorProcess] = (
            MeteorProcess() if meteor is True else meteor if isinstance(meteor, MeteorProcess) else None
        )
        # caption -> PTB tokens; validation references repeat every epoch, and -preserveLines tokenizes
        # each line on its own, so a cached line is exactly what a new Java call would return
        self._tokens: dict[str, str] = {}
        self._tokens_lock = threading.Lock()

    def _tokenize(self, captions: list[str]) -> list[str]:
        with self._tokens_lock:
            if len(self._tokens) > _TOKEN_CACHE_LIMIT:
                self._tokens.clear()
            missing = [c for c in dict.fromkeys(captions) if c not in self._tokens]
            self._tokens.update(zip(missing, tokenize_lines(missing)))
            return [self._tokens[c] for c in captions]

    @property
    def spice_available(self) -> bool:
        """Whether SPICE will be computed."""
        return self._corenlp_dir is not None

    def score(self, predictions: Mapping[Hashable, str], references: Mapping[Hashable, Sequence[str]]) -> dict[str, Any]:
        """Corpus scores (``Bleu_1``..``CIDEr``, ``SPICE`` or ``skipped``) and ``per_example`` {metric: {image_id: score}}."""
        from pycocoevalcap.bleu.bleu import Bleu
        from pycocoevalcap.cider.cider import Cider
        from pycocoevalcap.rouge.rouge import Rouge

        _check_inputs(predictions, references)
        ids, _ = align_ids(predictions, references, kind="image_id")
        # one Java call for references and hypotheses not seen before
        n_refs = [len(references[i]) for i in ids]
        flat = self._tokenize([c for i in ids for c in references[i]] + [predictions[i] for i in ids])
        gts: dict[Hashable, list[str]] = {}
        start = 0
        for i, n in zip(ids, n_refs):
            gts[i] = flat[start : start + n]
            start += n
        res = {i: [flat[start + k]] for k, i in enumerate(ids)}

        meteor_out: dict[str, Any] = {}
        meteor_thread = None
        if self._meteor is not None:
            meteor = self._meteor

            def run_meteor() -> None:
                try:
                    meteor_out["value"] = meteor.score([res[i][0] for i in ids], [gts[i] for i in ids])
                except BaseException as exc:  # re-raised in the caller's thread
                    meteor_out["error"] = exc

            # METEOR runs in Java on the other core while BLEU, ROUGE-L and CIDEr run here
            meteor_thread = threading.Thread(target=run_meteor, daemon=True)
            meteor_thread.start()

        scores: dict[str, float] = {}
        per_example: dict[str, dict[Hashable, float]] = {}
        bleu, bleu_each = Bleu(4).compute_score(gts, res, verbose=0)
        for n in range(4):
            scores[f"Bleu_{n + 1}"] = float(bleu[n])
            per_example[f"Bleu_{n + 1}"] = {i: float(s) for i, s in zip(ids, bleu_each[n])}
        rouge, rouge_each = Rouge().compute_score(gts, res)
        cider, cider_each = Cider().compute_score(gts, res)

        if meteor_thread is not None:
            meteor_thread.join()
            if "error" in meteor_out:
                raise meteor_out["error"]
            meteor_score, meteor_each = meteor_out["value"]
            scores["METEOR"] = float(meteor_score)
            per_example["METEOR"] = dict(zip(ids, meteor_each))
        scores["ROUGE_L"] = float(rouge)
        per_example["ROUGE_L"] = {i: float(s) for i, s in zip(ids, rouge_each)}
        scores["CIDEr"] = float(cider)
        per_example["CIDEr"] = {i: float(s) for i, s in zip(ids, cider_each)}

        out: dict[str, Any] = dict(scores)
        skipped: dict[str, str] = {}
        if self._meteor is None:
            skipped["METEOR"] = "disabled (meteor=False)"
        if self._corenlp_dir is not None:
            spice, spice_each = spice_score({i: res[i][0] for i in ids}, gts, self._corenlp_dir)
            out["SPICE"] = spice
            per_example["SPICE"] = spice_each
        else:
            skipped["SPICE"] = self._spice_reason
        if skipped:
            out["skipped"] = skipped
        out["per_example"] = per_example
        return out

    def close(self) -> None:
        """Stop the METEOR process if this scorer started it (a borrowed one stays up)."""
        if self._meteor is not None and self._owns_meteor:
            self._meteor.close()

    def __enter__(self) -> "CaptionScorer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_shared: dict[Optional[str], CaptionScorer] = {}
_shared_lock = threading.Lock()


def shared_caption_scorer(spice_dir: Optional[Union[str, Path]] = None) -> CaptionScorer:
    """A process-wide ``CaptionScorer`` per SPICE setting; all of them borrow the one shared METEOR JVM."""
    key = None if spice_dir is None else str(Path(spice_dir).expanduser().resolve())
    with _shared_lock:
        if key not in _shared:
            find_corenlp_dir(spice_dir)  # a wrong --spice-dir fails before the METEOR JVM starts
            _shared[key] = CaptionScorer(meteor=shared_meteor(), spice_dir=spice_dir)
        return _shared[key]


def caption_evaluate(
    predictions: Mapping[Hashable, str],
    references: Mapping[Hashable, Sequence[str]],
    *,
    spice_dir: Optional[Union[str, Path]] = None,
) -> dict[str, Any]:
    """Functional twin of ``CaptionScorer.score`` using the shared scorer.

    >>> caption_evaluate({7: "two dogs play"}, {7: ["Two dogs playing.", "dogs at play"]})["CIDEr"]  # doctest: +SKIP
    0.0
    """
    return shared_caption_scorer(spice_dir).score(predictions, references)
