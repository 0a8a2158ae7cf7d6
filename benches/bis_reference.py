#!/usr/bin/env python3
"""A plain-Python BIS subset builder: the baseline `mprm select bis` is raced against.

It follows the published algorithm of the reference selection script step by step (json module,
one whole file in memory at a time, Python's own strip/float/sort semantics), so its output is
the byte-level oracle for mprm's drop-in claim. Written for mprm; no code is taken from the
reference repository.

usage: bis_reference.py --annotations-dir DIR [--alpha 0.05] [--top-ratio 0.25] --output FILE
"""
import argparse
import glob
import json
import os
import sys


def numeric_scores(rec):
    out = []
    for step in rec.get("steps_with_score") or []:
        v = step.get("score")
        if v is None:
            continue
        try:
            out.append(float(v))
        except (TypeError, ValueError):
            continue
    return out


def bis(scores, alpha):
    n = len(scores)
    n_pos = 0
    acc = 0.0
    for x in scores:  # an explicit loop: sum() is compensated on Python >= 3.12
        if x > 0.0:
            n_pos += 1
            acc += x
    p = n_pos / n
    r = acc / n_pos if n_pos > 0 else 1.0
    return (p * (1.0 - p) + alpha) * r


def to_prm_line(rec):
    img = rec.get("image", "")
    if not img:
        return None
    steps = rec.get("steps_with_score") or []
    if not steps:
        return None
    texts, labels = [], []
    for step in steps:
        text = (step.get("step") or "").strip()
        v = step.get("score")
        if text == "" or v is None:
            return None
        try:
            f = float(v)
        except (TypeError, ValueError):
            return None
        texts.append(text + "<prm>")
        labels.append(1.0 if f > 0.0 else 0.0)
    q = str(rec.get("question_orig") or rec.get("question") or "").strip()
    human = "Question: " + q + "\nProcess: " + "\n\n".join(texts)
    return {"image": img, "conversations": [{"from": "human", "value": human}, {"from": "gpt", "value": labels}]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--annotations-dir", default="datasets/VisualPRM400K-v1.1-raw/annotations")
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--top-ratio", type=float, default=0.25)
    ap.add_argument("--output", required=True)
    args = ap.parse_args()

    parent = os.path.dirname(args.output)
    if parent:
        os.makedirs(parent, exist_ok=True)
    files = sorted(glob.glob(os.path.join(args.annotations_dir, "*.jsonl")))
    if not files:
        print(f"warning: no *.jsonl files in {args.annotations_dir}", file=sys.stderr)
        return
    with open(args.output, "w", encoding="utf-8") as out:
        for path in files:
            with open(path, encoding="utf-8") as f:
                lines = f.readlines()
            scored = []
            for i, raw in enumerate(lines):
                t = raw.strip()
                if not t:
                    continue
                try:
                    rec = json.loads(t)
                except json.JSONDecodeError:
                    continue
                s = numeric_scores(rec)
                if not s:
                    continue
                scored.append((i, bis(s, args.alpha)))
            if not scored:
                continue
            scored.sort(key=lambda t: t[1], reverse=True)
            k = max(1, int(len(scored) * args.top_ratio))
            for i in sorted(i for i, _ in scored[:k]):
                line = to_prm_line(json.loads(lines[i].strip()))
                if line is not None:
                    out.write(json.dumps(line, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
