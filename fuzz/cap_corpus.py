#!/usr/bin/env python3
"""Cuts a minimised corpus to at most N inputs, keeping the edges they cover.

libFuzzer's merge keeps every input that adds an edge; for the config targets
(serde-saphyr has thousands of edges) that is over a thousand files. This picks
greedily the inputs covering the most edges not yet covered, up to N, so the
committed corpus stays small.

    fuzz/cap_corpus.py TARGET [N]     # default N = 300; run from the repo root
"""
import os
import shutil
import subprocess
import sys
import tempfile

target = sys.argv[1]
limit = int(sys.argv[2]) if len(sys.argv) > 2 else 300
corpus = os.path.join("fuzz", "corpus", target)
binary = os.path.join("fuzz", "target", "x86_64-unknown-linux-gnu", "release", target)

with tempfile.TemporaryDirectory() as tmp:
    control = os.path.join(tmp, "merge.ctl")
    out = os.path.join(tmp, "out")
    os.mkdir(out)
    # Edges only (no hit counts): a file is kept for reaching code, not for
    # reaching it more often.
    subprocess.run(
        [binary, "-merge=1", "-use_counters=0", f"-merge_control_file={control}", out, corpus],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    lines = open(control).read().split("\n")
    count = int(lines[0])
    files = lines[2 : 2 + count]
    features = {}
    for line in lines[2 + count :]:
        parts = line.split()
        if parts and parts[0] == "FT":
            features[int(parts[1])] = set(map(int, parts[2:]))
    covered, chosen = set(), []
    while len(chosen) < limit and features:
        best = max(features, key=lambda i: (len(features[i] - covered), -os.path.getsize(files[i])))
        if not features[best] - covered:
            break
        chosen.append(files[best])
        covered |= features.pop(best)
    total = set().union(*features.values(), covered)
    kept = os.path.join(tmp, "kept")
    os.mkdir(kept)
    for path in chosen:
        shutil.copy(path, kept)
    shutil.rmtree(corpus)
    shutil.copytree(kept, corpus)
    print(f"{target}: {len(chosen)} inputs, {len(covered)} of {len(total)} edges")
