"""Caption stage: throughput on one core, and memory while streaming LLaVA's 558K records.

    python benchmarks/captions.py            # 200,000 captions; a 558,128-record LLaVA file
    python benchmarks/captions.py --n 2000   # small mode (the tests run this)

1. Throughput: N captions made from a word list by a seeded RNG (about 10% junk:
   symbol runs, repeated phrases, flagged words, duplicates; a few non-ASCII) are
   written to a JSONL source; `curate` with the synthvlm preset plus exact dedupe
   then reads, filters and dedupes them, pinned to one core.  Reported twice:
   end to end (JSON parsing included) and filters + dedupe alone.
2. Memory: a LLaVA-Pretrain-format JSON list (558,128 records at the default N,
   scaled with --n otherwise) goes through iter_curate into write_jsonl in a child
   process, which reports its peak RSS (must stay < 1 GB).

Last line: RESULT captions_per_s <end-to-end captions/s> target 20000
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from synthvlm_builder.curation.captions import build_steps, curate, iter_curate, write_jsonl  # noqa: E402
from synthvlm_builder.curation.step import MaxFilter, RangeFilter, RepetitionFilter  # noqa: E402
from synthvlm_builder.recipe.config import CaptionsConfig, SourceConfig  # noqa: E402
from synthvlm_builder.recipe.typed import filters_section as FiltersConfig  # noqa: E402
from synthvlm_builder.curation.textstats import flagged_words_en  # noqa: E402

TARGET = 20_000
LLAVA_RECORDS = 558_128
PRESET = FiltersConfig(preset="synthvlm", alnum_ratio=RangeFilter(min=0.6),
                       special_char_ratio=RangeFilter(min=0.165, max=0.42),
                       char_repetition=RepetitionFilter(10, 0.0937), word_repetition=RepetitionFilter(10, 0.0309),
                       flagged_words=MaxFilter(0.0), dedupe="exact")

ADJ = "red blue green small large old young wooden white black bright dark sunny busy quiet tall".split()
NOUN = ("dog cat man woman child car bus bicycle house tree street beach table kitchen river mountain "
        "boat bird horse field city window chair book cake flower garden train road sky").split()
VERB = "sits stands runs walks rides lies waits plays looks rests".split()
PREP = "on in near beside under behind across along".split()
TAIL = ["at sunset", "in the rain", "on a sunny day", "with friends", "at night", "in winter",
        "next to a fence", "during a festival", "in the background"]


def make_captions(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    flagged = sorted(w for w in flagged_words_en() if w.isalpha())

    def phrase():
        return f"a {rng.choice(ADJ)} {rng.choice(NOUN)}"

    out: list[str] = []
    for _ in range(n):
        r = rng.random()
        if r < 0.03 and out:                      # exact duplicate of an earlier caption
            out.append(rng.choice(out))
            continue
        text = f"{phrase()} {rng.choice(VERB)} {rng.choice(PREP)} {phrase()}"
        for _ in range(rng.randint(0, 3)):
            text += f" and {phrase()}" if rng.random() < 0.5 else f" {rng.choice(TAIL)}"
        text = text[0].upper() + text[1:] + rng.choice([".", "", "!"])
        if r < 0.05:
            text = f"$$$ {rng.randint(10, 99)}% OFF!!! #{rng.randint(1000, 9999)} ***"  # alnum-poor
        elif r < 0.07:
            text = " ".join([phrase()] * rng.randint(4, 8))                            # repetition
        elif r < 0.08:
            text = text.replace(rng.choice(NOUN), rng.choice(flagged), 1) + f" {rng.choice(flagged)}"
        elif r < 0.10:
            text = text.replace("a ", "a café ", 1) + rng.choice([" \U0001F600", " — très jolie", " «photo»"])
        out.append(text)
    return out


def pin_one_core() -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


def throughput(n: int, tmp: Path) -> tuple[float, float, dict]:
    captions = make_captions(n)
    src = tmp / "captions.jsonl"
    src.write_text("".join(json.dumps({"caption": c}, ensure_ascii=False) + "\n" for c in captions),
                   encoding="utf-8")
    cfg = CaptionsConfig((SourceConfig("jsonl", str(src), "gen"),), PRESET)
    t0 = time.perf_counter()
    result = curate(cfg)
    end_to_end = n / (time.perf_counter() - t0)

    filters = build_steps(PRESET)  # the same chain, without reading: what the filters cost alone
    checks = [(f.stat, f.keep) for f in filters[:-1]]
    dedupe = filters[-1]
    t0 = time.perf_counter()
    kept = 0
    for text in captions:
        if all(keep(stat(text)) for stat, keep in checks) and not dedupe.is_duplicate(text):
            kept += 1
    filters_only = n / (time.perf_counter() - t0)
    assert kept == result.funnel["kept"], (kept, result.funnel["kept"])
    return end_to_end, filters_only, result.funnel


def write_llava(path: Path, n: int) -> None:
    captions = make_captions(min(n, 50_000), seed=1)
    with open(path, "w", encoding="utf-8") as f:
        f.write("[")
        for i in range(n):
            rec = {"id": f"{i:09d}", "image": f"{i:05d}/{i:09d}.jpg",
                   "conversations": [{"from": "human", "value": "Render a clear and concise summary of the photo.\n<image>"},
                                     {"from": "gpt", "value": captions[i % len(captions)] + f" #{i}"}]}
            f.write(("," if i else "") + json.dumps(rec, ensure_ascii=False))
        f.write("]")


def rss_child(llava: str, out: str) -> None:
    """Runs in a fresh process so its peak RSS is the caption stage's alone."""
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cfg = CaptionsConfig((SourceConfig("llava_json", llava, "llava"),), PRESET)
    t0 = time.perf_counter()
    kept = write_jsonl(iter_curate(cfg), out)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({"kept": kept, "seconds": seconds, "baseline_mb": baseline / 1024, "peak_mb": peak / 1024}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200_000, help="captions for the throughput run")
    ap.add_argument("--llava-records", type=int, default=None,
                    help="records in the LLaVA memory check (default: 558,128 scaled by n / 200,000; 0 skips)")
    ap.add_argument("--rss-child", nargs=2, metavar=("LLAVA_JSON", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rss_child:
        return rss_child(*args.rss_child)
    records = args.llava_records if args.llava_records is not None else LLAVA_RECORDS * args.n // 200_000
    pin_one_core()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if records:
            write_llava(tmp / "llava.json", records)
            size = (tmp / "llava.json").stat().st_size / 2**20
            proc = subprocess.run([sys.executable, __file__, "--rss-child", str(tmp / "llava.json"),
                                   str(tmp / "llava_out.jsonl")], capture_output=True, text=True, check=True)
            m = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"llava_json {records:,} records ({size:.0f} MiB): kept {m['kept']:,} in {m['seconds']:.1f} s, "
                  f"peak RSS {m['peak_mb']:.0f} MB (after imports {m['baseline_mb']:.0f} MB; limit 1024 MB)")
        end_to_end, filters_only, funnel = throughput(args.n, tmp)
    drops = ", ".join(f"{f['name']} {f['dropped']}" for f in funnel["filters"])
    print(f"{args.n:,} captions, synthvlm preset + exact dedupe, one core: kept {funnel['kept']:,} ({drops})")
    print(f"filters + dedupe only: {filters_only:,.0f} captions/s")
    print(f"end to end (JSONL read + filters + dedupe): {end_to_end:,.0f} captions/s")
    print(f"RESULT captions_per_s {end_to_end:.0f} target {TARGET}")


if __name__ == "__main__":
    main()
