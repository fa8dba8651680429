"""Official VQA v2 accuracy, reproducing GT-Vision-Lab/VQA ``vqaEval.py`` (commit a013f00, 2021) exactly.

The reference is that script run under Python 3 (print statements ported, nothing else). Behaviour kept
on purpose because published numbers depend on it:

* both the prediction and every human answer get newline/tab -> space and ``strip()``;
* punctuation, number words, articles and contractions are normalized ONLY when the ten human answers
  are not all identical after that strip, and then on both sides; a unanimous question compares the
  stripped strings as they are (so a prediction "Two" does not match ten humans saying "two");
* the period rule removes at most 32 periods, because the official code passes ``re.UNICODE`` (== 32)
  where ``re.sub`` expects its ``count`` argument;
* accuracy is averaged over the ten leave-one-annotator-out subsets, where "leave one out" drops every
  answer dict equal to the left-out one (``item != gtAnsDatum``), so duplicated answer records drop
  together;
* percentages are ``round(100 * sum / n, precision)`` with Python 3's ``round``.

Example:
    >>> ann = [{"question_id": 1, "question_type": "how many", "answer_type": "number",
    ...         "answers": [{"answer": a, "answer_id": i} for i, a in enumerate(["2"] * 9 + ["two"], 1)]}]
    >>> vqa_evaluate([{"question_id": 1, "answer": "Two"}], ann)["overall"]
    100.0
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Mapping
from typing import Any

from vlbench.errors import DataError
from vlbench.metrics.ids import align_ids

__all__ = ["normalize_answer", "process_punctuation", "process_digit_article", "vqa_evaluate"]

# The official tables, verbatim in content (checked key by key against vqaEval.py at a013f00).
_CONTRACTIONS: dict[str, str] = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's",
    "howd": "how'd", "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm",
    "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll",
    "let's": "let's", "maam": "ma'am", "mightnt": "mightn't", "mightnt've": "mightn't've",
    "mightn'tve": "mightn't've", "mightve": "might've", "mustnt": "mustn't", "mustve": "must've",
    "neednt": "needn't", "notve": "not've", "oclock": "o'clock", "oughtnt": "oughtn't",
    "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at", "shant": "shan't",
    "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's", "shouldve": "should've",
    "shouldnt": "shouldn't", "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've",
    "somebody'd": "somebodyd", "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd",
    "someoned've": "someone'd've", "someone'dve": "someone'd've", "someonell": "someone'll",
    "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've",
    "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's", "thered": "there'd",
    "thered've": "there'd've", "there'dve": "there'd've", "therere": "there're", "theres": "there's",
    "theyd": "they'd", "theyd've": "they'd've", "they'dve": "they'd've", "theyll": "they'll",
    "theyre": "they're", "theyve": "they've", "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've",
    "we'dve": "we'd've", "weve": "we've", "werent": "weren't", "whatll": "what'll", "whatre": "what're",
    "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd", "wheres": "where's",
    "whereve": "where've", "whod": "who'd", "whod've": "who'd've", "who'dve": "who'd've", "wholl": "who'll",
    "whos": "who's", "whove": "who've", "whyll": "why'll", "whyre": "why're", "whys": "why's",
    "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't", "wouldnt've": "wouldn't've",
    "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll",
    "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've", "youd": "you'd",
    "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're", "youve": "you've",
}
_NUMBER_WORDS: dict[str, str] = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}
_ARTICLES = frozenset({"a", "an", "the"})
_PUNCT = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!")
# The odd "(?!<=\d)" lookahead never fires before a "."; it is kept so the pattern is the official one.
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
_COMMA_STRIP = re.compile(r"(\d)(,)(\d)")
_PERIOD_STRIP_COUNT = int(re.UNICODE)  # the official call is periodStrip.sub("", text, re.UNICODE)


def _strip_whitespace(text: str) -> str:
    """Official first step on both sides: newline and tab become spaces, then ``strip()``."""
    return text.replace("\n", " ").replace("\t", " ").strip()


def process_punctuation(text: str) -> str:
    """Official ``processPunctuation``: drop or space out punctuation, drop periods not before a digit."""
    out = text
    # The conditions look at the input text, not at the partly processed output, as the official code does.
    digit_comma = _COMMA_STRIP.search(text) is not None
    for p in _PUNCT:
        if (p + " " in text or " " + p in text) or digit_comma:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _PERIOD_STRIP.sub("", out, _PERIOD_STRIP_COUNT)


def process_digit_article(text: str) -> str:
    """Official ``processDigitArticle``: lowercase, number words to digits, drop articles, add apostrophes."""
    words = [_NUMBER_WORDS.get(w, w) for w in text.lower().split()]
    return " ".join(_CONTRACTIONS.get(w, w) for w in words if w not in _ARTICLES)


def normalize_answer(answer: str) -> str:
    """The full official normalization (whitespace, punctuation, digits/articles/contractions) of one answer.

    The official script applies it only to questions whose human answers disagree; see ``vqa_evaluate``.

    >>> normalize_answer(" The Two dogs! ")
    '2 dogs'
    """
    return process_digit_article(process_punctuation(_strip_whitespace(answer)))


def _prediction_map(predictions: Any) -> dict[Hashable, str]:
    """``{question_id: answer}`` from a list of result records or a mapping; refuses duplicates and bad types."""
    if isinstance(predictions, Mapping):
        items = list(predictions.items())
    elif isinstance(predictions, (list, tuple)):
        items = []
        for k, rec in enumerate(predictions):
            if not isinstance(rec, Mapping) or "question_id" not in rec or "answer" not in rec:
                raise DataError(
                    f"VQA prediction #{k} must be an object with 'question_id' and 'answer', got {str(rec)[:80]!r}."
                )
            items.append((rec["question_id"], rec["answer"]))
    else:
        raise DataError(
            "VQA predictions must be a list of {'question_id', 'answer'} objects or a {question_id: answer} "
            f"mapping, got {type(predictions).__name__}."
        )
    out: dict[Hashable, str] = {}
    for qid, answer in items:
        if isinstance(qid, bool) or not isinstance(qid, (int, str)):
            raise DataError(f"VQA question_id must be an integer, got {qid!r}.")
        if not isinstance(answer, str):
            raise DataError(f"VQA answer for question {qid!r} must be a string, got {answer!r}.")
        if qid in out:
            raise DataError(f"VQA predictions contain question_id {qid!r} more than once; keep one answer per question.")
        out[qid] = answer
    return out


def _annotation_map(annotations: Any) -> dict[Hashable, Mapping[str, Any]]:
    """``{question_id: annotation}`` in file order, validating the fields the metric reads."""
    if isinstance(annotations, Mapping) and "annotations" in annotations:
        annotations = annotations["annotations"]
    if not isinstance(annotations, (list, tuple)):
        raise DataError("VQA references must be a list of annotations (or an object with an 'annotations' list).")
    out: dict[Hashable, Mapping[str, Any]] = {}
    for k, ann in enumerate(annotations):
        if not isinstance(ann, Mapping):
            raise DataError(f"VQA annotation #{k} must be an object, got {type(ann).__name__}.")
        missing = [f for f in ("question_id", "question_type", "answer_type", "answers") if f not in ann]
        if missing:
            raise DataError(f"VQA annotation #{k} lacks {', '.join(repr(f) for f in missing)}.")
        qid, answers = ann["question_id"], ann["answers"]
        if qid in out:
            raise DataError(f"VQA annotations contain question_id {qid!r} more than once.")
        if not isinstance(answers, list) or not answers:
            raise DataError(f"VQA annotation for question {qid!r} needs a non-empty 'answers' list.")
        for a in answers:
            if not isinstance(a, Mapping) or not isinstance(a.get("answer"), str):
                raise DataError(f"VQA annotation for question {qid!r} has an answer without a string 'answer'.")
        out[qid] = ann
    return out


def _question_accuracy(prediction: str, human: list[Mapping[str, Any]]) -> float:
    """Mean over the leave-one-annotator-out subsets of min(1, matches / 3), in [0, 1]."""
    res = _strip_whitespace(prediction)
    answers = [_strip_whitespace(a["answer"]) for a in human]
    if len(set(answers)) > 1:
        answers = [process_digit_article(process_punctuation(a)) for a in answers]
        res = process_digit_article(process_punctuation(res))
    # Whole records are compared (as ``item != gtAnsDatum``), with their processed answer text.
    records = [{**a, "answer": text} for a, text in zip(human, answers)]
    matching = [r for r in records if r["answer"] == res]
    accs = [min(1, float(sum(1 for m in matching if m != left_out)) / 3) for left_out in records]
    return float(sum(accs)) / len(accs)


def _percent(values: list[float], precision: int) -> float:
    return round(100 * float(sum(values)) / len(values), precision)


def vqa_evaluate(predictions: Any, annotations: Any, *, precision: int = 2) -> dict[str, Any]:
    """Official VQA v2 accuracy: overall, per answer type and per question type (percent) plus per-question [0, 1].

    ``predictions`` is a list of ``{"question_id", "answer"}`` or a ``{question_id: answer}`` mapping and must
    cover exactly the annotated questions (as the official script requires). Questions are scored in
    annotation order, like the official loop, so the float sums match bit for bit.

    >>> ann = [{"question_id": 7, "question_type": "what color", "answer_type": "other",
    ...         "answers": [{"answer": c, "answer_id": i} for i, c in enumerate(["red"] * 2 + ["blue"] * 8, 1)]}]
    >>> r = vqa_evaluate({7: "red"}, ann)
    >>> r["overall"], r["per_question"][7]
    (60.0, 0.6)
    """
    preds = _prediction_map(predictions)
    gts = _annotation_map(annotations)
    if not gts:
        raise DataError("VQA references contain no annotations.")
    qids, _ = align_ids(preds, gts, kind="question_id")
    per_question: dict[Hashable, float] = {}
    by_qtype: dict[str, list[float]] = {}
    by_atype: dict[str, list[float]] = {}
    for qid in qids:
        ann = gts[qid]
        acc = _question_accuracy(preds[qid], ann["answers"])
        per_question[qid] = acc
        by_qtype.setdefault(ann["question_type"], []).append(acc)
        by_atype.setdefault(ann["answer_type"], []).append(acc)
    return {
        "overall": _percent(list(per_question.values()), precision),
        "perAnswerType": {t: _percent(v, precision) for t, v in by_atype.items()},
        "perQuestionType": {t: _percent(v, precision) for t, v in by_qtype.items()},
        "per_question": per_question,
    }
