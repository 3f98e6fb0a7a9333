"""A served teacher's log-probs of the very sequences training will see, stored with the labels.

Soft targets and reverse KL need the teacher's distribution at each completion token. An in-process
`hf` teacher gives it while training; a served one (vLLM) is asked here, in the label stage, so the
aggregate carries what training needs and a train stage reruns with no server up. Each labeled state
is rendered as training renders it (`sft.examples_as_trained`: the student's window and the
objective's prefix, then the student's chat template) and sent as token ids, never text, so both sides
score the same sequence. A state whose prefix has no completion (a teacher state under `prefix:
student`) gets no scores.

Stored per state, at the completion's tokens: `input_ids` (the whole sequence: training finds its
scores by it), `teacher_token_logp` (the realized token's), `teacher_top_ids` and `teacher_top_logp`
(the k most likely; none with hard targets). They are vLLM's raw log-probs (temperature 1, its default
`logprobs_mode`); training applies the objective's temperature. Cached under the ids, the teacher, k
and that mode, so a rerun or another iteration asks only for what it has not scored.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pandas as pd

from daggerlm.agent.runner import progress_bar
from daggerlm.config.training import ObjectiveConfig
from daggerlm.dagger.label_cache import LabelCache
from daggerlm.errors import InputError
from daggerlm.io import stable_hash
from daggerlm.policies.history_view import HistoryWindow

SCORES_FORMAT = "daggerlm.teacher_scores/1"
LOGPROBS_MODE = "raw_logprobs"
COLUMNS = ("input_ids", "teacher_token_logp", "teacher_top_ids", "teacher_top_logp")

Scorer = Callable[[list[int], int], dict]
"""(token ids, k) -> {"token_logp": [...], "top_ids": [[...]], "top_logp": [[...]]} for ids[1:]
(`serving.vllm.prompt_logprobs`)."""


def score_states(rows: list[dict], tokenizer, window: HistoryWindow, objective: ObjectiveConfig, scorer: Scorer,
                 cache: LabelCache, teacher: str, concurrency: int = 8) -> dict:
    """Add the teacher's scores (`COLUMNS`) to each labeled row, in place; return the calls and cache hits."""
    from daggerlm.training.chat_masks import encode_example
    from daggerlm.training.sft import examples_as_trained

    k = objective.scored_k
    for row in rows:
        row.update(dict.fromkeys(COLUMNS))
    examples = examples_as_trained(pd.DataFrame(rows), window, objective.prefix)

    def score(index: int, prompt: list[dict], completion: list[dict]) -> bool:
        ids, mask = encode_example(tokenizer, list(prompt), list(completion))
        key = stable_hash({"format": SCORES_FORMAT, "ids": ids, "teacher": teacher, "k": k, "mode": LOGPROBS_MODE},
                          length=32)
        scores = hit = cache.read(key)
        if scores is None:
            scores = scorer(ids, k)
            cache.write(key, scores)
        start = mask.index(1) - 1  # scores[i] is of ids[i + 1]: the completion's tokens from here on
        rows[index].update(input_ids=ids, teacher_token_logp=scores["token_logp"][start:],
                           teacher_top_ids=scores["top_ids"][start:] if k else None,
                           teacher_top_logp=scores["top_logp"][start:] if k else None)
        progress.update(bar, advance=1)
        return hit is not None

    with progress_bar("score") as progress, ThreadPoolExecutor(max(1, concurrency)) as pool:
        bar = progress.add_task("", total=len(examples), info="teacher log-probs")
        hits = list(pool.map(score, examples.index, examples.prompt, examples.completion))
    return {"scored_states": len(hits), "score_calls": hits.count(False), "score_hits": hits.count(True)}


def stored_scores(frame: pd.DataFrame, source: str) -> dict[tuple[int, ...], tuple]:
    """{token ids: (teacher_token_logp, teacher_top_ids, teacher_top_logp)} of the states the label
    stage scored, for training to find each example's by its ids."""
    if "input_ids" not in frame or frame.input_ids.isna().all():
        raise InputError(f"{source}: no teacher scores ({', '.join(COLUMNS)}); the label stage stores a served "
                         f"teacher's when train.objective needs them: run it with this objective")
    scored = frame[frame.input_ids.notna()]
    return {tuple(int(i) for i in ids): (token, top_ids, top_logp)
            for ids, token, top_ids, top_logp in zip(*(scored[c] for c in COLUMNS))}
