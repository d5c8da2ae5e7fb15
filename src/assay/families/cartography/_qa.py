"""Extractive QA offline: a seeded templated dataset, windows over long contexts, SQuAD EM/F1.

    from assay.families.cartography._qa import QAConfig, generate_qa, make_windows, squad_scores
    qa = generate_qa(QAConfig(n_train=400))         # qa.train[0].question, .context, .answer_text
    win = make_windows(qa.train, vocab, max_tokens=64, stride_tokens=24)

Contexts describe 2-4 people (birthplace, birth year, job, pet); each question asks one fact
of one person, so the answer is a span of the context and the other people are distractors.
The ``ood`` split asks with question and sentence templates the training set never uses.

A context longer than one window is cut into overlapping windows (``stride_tokens`` of overlap
is the SQuAD convention's doc stride). A window whose context part does not hold the whole
answer is labelled with the [CLS] position (0), as BERT's SQuAD recipe does. Per-example
quantities combine windows *explicitly* (see ``_dynamics.reduce_windows``), never "last
window wins".
"""

from __future__ import annotations

import collections
import dataclasses
import re
import string

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

NAMES = [
    "alice",
    "bob",
    "carol",
    "dave",
    "erin",
    "frank",
    "grace",
    "heidi",
    "ivan",
    "judy",
    "mallory",
    "niaj",
    "olivia",
    "peggy",
    "rupert",
    "sybil",
    "trent",
    "victor",
    "walter",
    "yvonne",
]
CITIES = (
    "paris",
    "new york",
    "tokyo",
    "lagos",
    "buenos aires",
    "cairo",
    "oslo",
    "lima",
    "san francisco",
    "hanoi",
    "rio de janeiro",
    "perth",
    "quebec city",
    "nairobi",
)
JOBS = (
    "teacher",
    "software engineer",
    "nurse",
    "pilot",
    "marine biologist",
    "baker",
    "civil engineer",
    "lawyer",
    "farmer",
    "data scientist",
    "chef",
    "firefighter",
)
PETS = ("dog", "cat", "parrot", "hamster", "turtle", "rabbit")
COLOURS = ("black", "white", "ginger", "grey", "golden brown", "spotted")
# (fact, sentence templates for train/ID eval, sentence templates for OOD, questions ID, OOD)
FACTS = {
    "city": (
        ["{p} was born in {a} .", "{p} grew up in {a} ."],
        ["the hometown of {p} is {a} ."],
        ["where was {p} born ?", "which city did {p} grow up in ?"],
        ["what is the hometown of {p} ?"],
    ),
    "year": (
        ["{p} was born in the year {a} .", "{p} celebrated a first birthday in {a} ."],
        ["the birth year of {p} was {a} ."],
        ["when was {p} born ?", "in which year was {p} born ?"],
        ["what was the birth year of {p} ?"],
    ),
    "job": (
        ["{p} works as a {a} .", "by profession {p} is a {a} ."],
        ["the occupation of {p} : {a} ."],
        ["what does {p} do for a living ?", "what is the job of {p} ?"],
        ["what occupation does {p} have ?"],
    ),
    "pet": (
        ["{p} owns a {a} .", "{p} takes care of a {a} every day ."],
        ["the animal living with {p} is a {a} ."],
        ["what pet does {p} have ?", "which animal does {p} own ?"],
        ["what animal lives with {p} ?"],
    ),
}


class QAConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    n_train: int = Field(2000, ge=10, description="generated training questions")
    n_validation: int = Field(300, ge=1, description="generated validation questions")
    n_test: int = Field(300, ge=1, description="generated test questions")
    n_ood: int = Field(300, ge=0, description="questions from held-out templates; 0: no OOD set")
    people_min: int = Field(2, ge=1, description="fewest people described in a context")
    people_max: int = Field(
        4,
        ge=1,
        description="most people in a context (4 people x 4 facts: about 100 words, 2-3 windows)",
    )
    generator_seed: int = Field(
        0, description="seeds the generator (not seed: replicates of a suite share one dataset)"
    )


@dataclasses.dataclass(frozen=True)
class QAExample:
    id: str
    question: list[str]  # word tokens
    context: list[str]
    answer_start: int  # word index in context (inclusive)
    answer_end: int  # inclusive

    @property
    def answer_text(self) -> str:
        return " ".join(self.context[self.answer_start : self.answer_end + 1])


@dataclasses.dataclass(frozen=True)
class QADataset:
    train: list[QAExample]
    validation: list[QAExample]
    test: list[QAExample]
    ood: dict[str, list[QAExample]]


def _split(text: str) -> list[str]:
    return re.findall(r"\w+|[^\w\s]", text.lower())


def _example(rng: np.random.Generator, cfg: QAConfig, eid: str, ood: bool) -> QAExample:
    k = int(rng.integers(cfg.people_min, max(cfg.people_min, cfg.people_max) + 1))
    people = [str(p) for p in rng.choice(NAMES, size=k, replace=False)]
    pools = {"city": CITIES, "job": JOBS, "pet": PETS, "year": [str(y) for y in range(1950, 2011)]}
    sentences = []  # (person, fact, words, answer offset in the sentence, answer length)
    for person in people:
        for fact, (id_tpl, ood_tpl, _, _) in FACTS.items():
            answer = str(rng.choice(pools[fact]))
            if fact == "pet":  # a coloured pet: multi-word answers are spans too
                answer = f"{rng.choice(COLOURS)} {answer}"
            before, _, after = str(rng.choice(ood_tpl if ood else id_tpl)).partition("{a}")
            head, ans = _split(before.format(p=person)), _split(answer)
            words = head + ans + _split(after.format(p=person))
            sentences.append((person, fact, words, len(head), len(ans)))
    order = rng.permutation(len(sentences))
    person, fact = people[int(rng.integers(k))], list(FACTS)[int(rng.integers(len(FACTS)))]
    question = _split(str(rng.choice(FACTS[fact][3] if ood else FACTS[fact][2])).format(p=person))
    context: list[str] = []
    for i in order:
        who, what, words, offset, n = sentences[int(i)]
        if (who, what) == (person, fact):
            start, end = len(context) + offset, len(context) + offset + n - 1
        context += words
    return QAExample(eid, question, context, start, end)


def generate_qa(cfg: QAConfig) -> QADataset:
    """The seeded QA dataset: same ``generator_seed``, same examples and ids."""
    rng = np.random.default_rng(cfg.generator_seed)

    def make(prefix: str, n: int, ood: bool = False) -> list[QAExample]:
        return [_example(rng, cfg, f"{prefix}-{i}", ood) for i in range(n)]

    train, val, test = (
        make("qa", cfg.n_train),
        make("qav", cfg.n_validation),
        make("qat", cfg.n_test),
    )
    ood = {"ood_templates": make("qao", cfg.n_ood, ood=True)} if cfg.n_ood else {}
    return QADataset(train, val, test, ood)


def qa_vocabulary(examples: list[QAExample]) -> dict[str, int]:
    """Word -> id; 0 [PAD], 1 [UNK], 2 [CLS], 3 [SEP], then words by first appearance."""
    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3}
    for ex in examples:
        for w in (*ex.question, *ex.context):
            vocab.setdefault(w, len(vocab))
    return vocab


@dataclasses.dataclass(frozen=True)
class QAWindows:
    input_ids: np.ndarray  # (W, T) int64
    token_type_ids: np.ndarray  # (W, T)
    attention_mask: np.ndarray  # (W, T)
    start: np.ndarray  # (W,) gold start position in the window; 0 ([CLS]) if not inside
    end: np.ndarray  # (W,)
    example: np.ndarray  # (W,) index of the window's example
    has_answer: np.ndarray  # (W,) bool: the whole answer lies in this window's context
    context_pos: np.ndarray  # (W,) sequence position of the first context token
    context_word: np.ndarray  # (W,) context word index at that position
    n_context: np.ndarray  # (W,) context tokens in the window


def make_windows(
    examples: list[QAExample], vocab: dict[str, int], max_tokens: int = 64, stride_tokens: int = 24
) -> QAWindows:
    """[CLS] question [SEP] context-window [SEP], windows overlapping by ``stride_tokens``."""
    # one list per QAWindows field: token rows (list[int]) for the (W, T) fields, ints/bools else
    rows: collections.defaultdict[str, list[list[int] | int]] = collections.defaultdict(list)
    unk = vocab["[UNK]"]
    for i, ex in enumerate(examples):
        q = [vocab.get(w, unk) for w in ex.question]
        c = [vocab.get(w, unk) for w in ex.context]
        room = max_tokens - len(q) - 3
        if room < 8:
            raise ValueError(
                f"max_tokens={max_tokens} leaves {room} context tokens after the "
                f"question ({len(q)} tokens); raise max_tokens"
            )
        step = max(1, room - stride_tokens)
        begin = 0
        while True:
            piece = c[begin : begin + room]
            ids = [vocab["[CLS]"], *q, vocab["[SEP]"], *piece, vocab["[SEP]"]]
            cpos = len(q) + 2
            inside = begin <= ex.answer_start and ex.answer_end < begin + len(piece)
            rows["input_ids"].append(ids + [0] * (max_tokens - len(ids)))
            rows["token_type_ids"].append(
                [0] * cpos + [1] * (len(ids) - cpos) + [0] * (max_tokens - len(ids))
            )
            rows["attention_mask"].append([1] * len(ids) + [0] * (max_tokens - len(ids)))
            rows["start"].append(cpos + ex.answer_start - begin if inside else 0)
            rows["end"].append(cpos + ex.answer_end - begin if inside else 0)
            rows["example"].append(i)
            rows["has_answer"].append(inside)
            rows["context_pos"].append(cpos)
            rows["context_word"].append(begin)
            rows["n_context"].append(len(piece))
            if begin + room >= len(c):
                break
            begin += step
    return QAWindows(
        **{
            k: np.asarray(v, dtype=bool if k == "has_answer" else np.int64)
            for k, v in rows.items()
        }
    )


def best_spans(
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    win: QAWindows,
    examples: list[QAExample],
    max_answer_tokens: int = 8,
) -> list[str]:
    """The predicted answer text per example: the best-scoring span over all its windows.

    A span (s, e) is valid when both lie in the window's context and 0 <= e - s <
    ``max_answer_tokens``; its score is start_logit[s] + end_logit[e] (the SQuAD recipe).
    """
    W, T = start_logits.shape  # (W, T)
    pos = np.arange(T)
    in_ctx = (pos[None, :] >= win.context_pos[:, None]) & (
        pos[None, :] < (win.context_pos + win.n_context)[:, None]
    )  # (W, T)
    score = start_logits[:, :, None] + end_logits[:, None, :]  # (W, T, T)
    length = pos[None, :] - pos[:, None]  # (T, T): e - s
    valid = in_ctx[:, :, None] & in_ctx[:, None, :] & (length >= 0) & (length < max_answer_tokens)
    score = np.where(valid, score, -np.inf).reshape(W, -1)
    flat = score.argmax(axis=1)
    best = score[np.arange(W), flat]
    answers, best_score = [""] * len(examples), np.full(len(examples), -np.inf)
    for w in range(W):
        i = int(win.example[w])
        if best[w] > best_score[i]:
            s, e = divmod(int(flat[w]), T)
            lo = int(win.context_word[w]) + s - int(win.context_pos[w])
            best_score[i] = best[w]
            answers[i] = " ".join(examples[i].context[lo : lo + e - s + 1])
    return answers


# ------------------------------------------------------------------ SQuAD v1.1 EM / F1, locally
def normalize_answer(text: str) -> str:
    """Lower case, drop punctuation and articles, squeeze whitespace (the official script)."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def f1_score(prediction: str, truth: str) -> float:
    pred, gold = normalize_answer(prediction).split(), normalize_answer(truth).split()
    common = collections.Counter(pred) & collections.Counter(gold)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def squad_scores(predictions: list[str], truths: list[str]) -> dict[str, float]:
    """``exact_match`` and ``f1`` in percent, as the SQuAD v1.1 script reports them."""
    if len(predictions) != len(truths) or not truths:
        raise ValueError(f"{len(predictions)} predictions for {len(truths)} answers")
    em = np.mean(
        [
            normalize_answer(p) == normalize_answer(t)
            for p, t in zip(predictions, truths, strict=True)
        ]
    )
    f1 = np.mean([f1_score(p, t) for p, t in zip(predictions, truths, strict=True)])
    return {"exact_match": 100.0 * float(em), "f1": 100.0 * float(f1)}
