#!/usr/bin/env python3
"""Writes the small example corpus that ships with mprm (raw VisualPRM400K-v1.1 layout).

Four sources, a few hundred rollouts, and every edge case the reference selection script treats
specially but survives: blank and invalid lines, a UTF-8 BOM, CRLF endings, empty step text,
null / string / non-numeric / NaN / out-of-range scores, missing images and questions,
early-stopped and non-monotone score sequences, exact BIS ties, and awkward Unicode.
Deterministic: run it again and the files come out byte-identical.
"""
import json
import os
import random

WORDS = ("the angle triangle side length area we so therefore compute equals because given "
         "chart value bar shows total sum answer option figure line point circle radius "
         "first next then divide multiply subtract add result check final").split()
SOURCES = {"chartqa": (80, 0.90), "geoqa_open": (70, 0.60), "iconqa": (75, 0.88), "mavis_geo": (70, 0.78)}


def step_text(rng):
    n = max(3, int(rng.gauss(28, 8)))
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def mc_scores(rng, n, mean):
    """Scores k/16: a correct prefix has a high success rate, after an error it is small."""
    scores, correct, stopped = [], True, False
    early_stop = rng.random() < 0.5
    for _ in range(n):
        if stopped:
            scores.append((0.0, 0, 0))
            continue
        if correct and rng.random() > mean ** 0.5:
            correct = False
        rate = min(1.0, mean + 0.1) if correct else rng.choice([0.0, 0.0, 0.03, 0.1])
        k = sum(rng.random() < rate for _ in range(16))
        scores.append((k / 16, k, 16))
        if k == 0 and early_stop:
            stopped = True
    return scores


def record(rng, source, i, mean):
    n = rng.choice([1, 2, 3, 4, 5, 6, 7, 8, 10, 12])
    steps = [step_text(rng) for _ in range(n - 1)] + ["Final answer: " + rng.choice("ABCD")]
    q = f"Question {i} about the {source} figure: what is the value of x?"
    return {
        "image": f"VisualPRM400K-v1.1-Raw/{source}/images/{i:04d}.png",
        "question": "<image>\nYour task is to answer the question below.\n\nQuestion:\n\n" + q,
        "question_orig": q,
        "answer": rng.choice("ABCD"),
        "response": "\n\n".join(steps),
        "steps_with_score": [
            {"step": t, "score": s, "num_mc_correct": k, "num_mc_total": tot}
            for t, (s, k, tot) in zip(steps, mc_scores(rng, n, mean))
        ],
        "num_mc_sequences": 16,
    }


def special_lines(rng, source):
    """Edge cases, one list per source so each file exercises several."""
    base = lambda i: record(rng, source, 9000 + i, 0.8)
    lines = []
    r = base(0); r["steps_with_score"][0]["step"] = ""; r["steps_with_score"].append({"step": "x", "score": 0.0}); lines.append(r)  # empty text: ranked, dropped
    r = base(1); r["steps_with_score"][0]["score"] = None; lines.append(r)             # null score: ranked over the rest, dropped
    r = base(2); del r["image"]; lines.append(r)                                      # no image: dropped
    r = base(3); r["steps_with_score"][0]["score"] = "0.5"; lines.append(r)           # string score: float("0.5")
    r = base(4); r["steps_with_score"][0]["score"] = "n/a"; lines.append(r)           # non-numeric: step skipped, rollout dropped
    r = base(5); r["steps_with_score"] = [{"step": "Only step", "score": 1.0}, {"step": "Second", "score": 1.0}]; lines.append(r)  # ties at alpha
    r = base(6); r["steps_with_score"] = [{"step": "a", "score": 0.0}, {"step": "b", "score": 0.0}]; lines.append(r)               # all-negative: alpha
    r = base(7); r["question_orig"] = ""; lines.append(r)                              # falls back to question
    r = base(8); r["steps_with_score"][0]["step"] = "  Quote \" backslash \\ tab\t sep\u2028 ctrl\u001f é∠ 😀 \u0085"; lines.append(r)
    r = base(9); r["steps_with_score"] = [{"step": "lucky", "score": 0.0625}, {"step": "zero", "score": 0.0}, {"step": "again", "score": 0.0625}]; lines.append(r)  # non-monotone
    r = base(10); r["steps_with_score"] = []; lines.append(r)                           # nothing to rank
    r = base(11); r["steps_with_score"][0]["score"] = 1.0625; lines.append(r)           # out of range, accepted
    return lines


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out_dir = os.path.join(here, "annotations")
    os.makedirs(out_dir, exist_ok=True)
    rng = random.Random(20260204)
    for s_index, (source, (count, mean)) in enumerate(SOURCES.items()):
        rows = [json.dumps(record(rng, source, i, mean), ensure_ascii=False) for i in range(count)]
        specials = [json.dumps(r, ensure_ascii=False) for r in special_lines(rng, source)]
        for j, line in enumerate(specials):
            rows.insert(1 + (j * 7) % len(rows), line)
        rows.insert(3, "")
        rows.insert(5, "   \t ")
        rows.insert(8, '{"image": "broken", "steps_with_score": [')  # invalid JSON
        rows.insert(11, '{"image": "x", "steps_with_score": [{"step": "n", "score": NaN}, {"step": "m", "score": 0.5}]}')
        newline = "\r\n" if s_index == 1 else "\n"
        text = newline.join(rows) + newline
        if s_index == 2:
            text = "\ufeff" + text  # a BOM makes the first line invalid JSON for Python too
        with open(os.path.join(out_dir, source + ".jsonl"), "w", encoding="utf-8", newline="") as f:
            f.write(text)


if __name__ == "__main__":
    main()
