"""Peak memory of loading a manifest: 1k / 10k / 100k rows, each in a fresh process.

A row looks like MSP-Podcast's (id, audio path, 8-class label, arousal/valence/dominance,
speaker, gender, a transcript of ~12 words, split). Each child process imports what loading needs
(``ser_hf.data.corpora``: datasets, pyarrow, numpy), then calls ``load_corpus("manifest", path)``;
the parent reads the child's own peak RSS with ``os.wait4`` (``ru_maxrss``). The baseline, in the
same run, is a child that only imports (0 rows): the cost of a manifest is its peak minus that.
Audio files are not opened by loading (validation is a separate, cached step), so none are written.
Runs alternate baseline / sizes for ``--repetitions`` rounds and report the median.

    python benchmarks/manifest_rss.py [--rows 1000 10000 100000] [--repetitions 3]

Writes benchmarks/results/manifest_rss.json atomically.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results", "manifest_rss.json")
CLASSES = ["A", "C", "D", "F", "H", "N", "S", "U"]
WORDS = "the a we you they said went home today never always really think know about just like so".split()

CHILD = r"""
import os, sys, time
t = time.perf_counter(); c = time.process_time()
from ser_hf.data.corpora import load_corpus
imported = time.perf_counter() - t
rows = 0
if sys.argv[1] != "-":
    corpus = load_corpus("manifest", sys.argv[1])
    rows = sum(len(split) for split in corpus.values())
print(f"RESULT {rows} {imported:.3f} {time.perf_counter() - t:.3f} {time.process_time() - c:.3f}", flush=True)
"""


def write_manifest(path: str, rows: int, seed: int = 0) -> None:
    import numpy as np

    rng = np.random.default_rng(seed)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "audio", "label", "arousal", "valence", "dominance", "speaker", "gender", "transcript", "split"])
        for i in range(rows):
            words = " ".join(rng.choice(WORDS, size=12))
            split = "train" if i % 10 < 7 else ("dev" if i % 10 < 9 else "test")
            writer.writerow([f"MSP-PODCAST_{i:07d}", f"Audios/MSP-PODCAST_{i:07d}.wav", CLASSES[i % 8],
                             *(f"{v:.2f}" for v in rng.uniform(1, 7, 3)), f"spk{i % 1500}", "FM"[i % 2], words, split])


def run_child(manifest: str) -> dict:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    out = tempfile.TemporaryFile("w+")
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", CHILD, manifest], env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    out.seek(0)
    text = out.read()
    if proc.returncode != 0 or "RESULT " not in text:
        raise RuntimeError(f"child failed ({proc.returncode}):\n{text[-3000:]}")
    rows, imported, total, cpu = text.split("RESULT ", 1)[1].split()[:4]
    return {"rows": int(rows), "peak_rss_mib": usage.ru_maxrss / 1024, "import_s": float(imported),
            "wall_s": float(total), "cpu_s": float(cpu), "process_wall_s": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--repetitions", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        manifests = {}
        for rows in args.rows:
            manifests[rows] = os.path.join(folder, f"manifest_{rows}.csv")
            write_manifest(manifests[rows], rows)
        runs: dict = {"baseline": [], **{rows: [] for rows in args.rows}}
        for rep in range(args.repetitions):
            runs["baseline"].append(run_child("-"))
            for rows in args.rows:
                runs[rows].append(run_child(manifests[rows]))
                assert runs[rows][-1]["rows"] == rows
            print(f"round {rep + 1}: baseline {runs['baseline'][-1]['peak_rss_mib']:.0f} MiB, "
                  + ", ".join(f"{r}: {runs[r][-1]['peak_rss_mib']:.0f} MiB" for r in args.rows), flush=True)
        sizes = {rows: os.path.getsize(path) / 2**20 for rows, path in manifests.items()}
    base = statistics.median(r["peak_rss_mib"] for r in runs["baseline"])
    table = []
    for rows in args.rows:
        peak = statistics.median(r["peak_rss_mib"] for r in runs[rows])
        load_wall = statistics.median(r["wall_s"] - r["import_s"] for r in runs[rows])
        table.append({"rows": rows, "csv_mib": sizes[rows], "peak_rss_mib": peak, "over_baseline_mib": peak - base,
                      "over_baseline_per_row_bytes": (peak - base) * 2**20 / rows, "ratio_to_baseline": peak / base,
                      "load_wall_s": load_wall, "cpu_s": statistics.median(r["cpu_s"] for r in runs[rows])})
    print(f"\nbaseline (imports only): {base:.1f} MiB peak RSS (median of {args.repetitions})")
    print("| rows | CSV MiB | peak RSS MiB | over baseline MiB | bytes/row | x baseline | load s (wall) | CPU s (whole child) |")
    print("|---|---|---|---|---|---|---|---|")
    for row in table:
        print(f"| {row['rows']:,} | {row['csv_mib']:.1f} | {row['peak_rss_mib']:.1f} | {row['over_baseline_mib']:.1f} | "
              f"{row['over_baseline_per_row_bytes']:.0f} | {row['ratio_to_baseline']:.2f} | {row['load_wall_s']:.2f} | {row['cpu_s']:.2f} |")
    result = {"benchmark": "manifest_rss", "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "load_average": os.getloadavg(), "baseline_peak_rss_mib": base, "table": table, "runs": {str(k): v for k, v in runs.items()}}
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    tmp = RESULTS + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(result, handle, indent=2)
    os.replace(tmp, RESULTS)


if __name__ == "__main__":
    main()
