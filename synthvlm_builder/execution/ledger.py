"""The cost ledger of a build: what it spent, per stage, summed over every run that made it.

    device-seconds  generate, encode, score, write (each score and screen apart), each curation model step
    counts          images generated, LLM requests and tokens (as the endpoint's `usage` reports them)
    money           only where the recipe gives prices (`costs:`); there is no built-in price table

Where each figure comes from, so that a resumed build adds up: a finished shard's marker holds its own
stage seconds, image count and scoring seconds, and the attempt that made it (execution/worker.py);
curation runs once per content identity and its funnel keeps what its model steps cost and the attempt
that made the kept captions (curation/captions.py `Funnel.usage`). Work lost to a kill (or an
out-of-memory retry) is known from the events log: the worker logs each generated batch with its attempt,
and a batch of an attempt that is not the one a shard's marker names was generated again: `redone`.
Generation is what a kill loses; the seconds of encoding, scoring and writing a killed attempt's batches
are not logged (they are small beside it), so `redone` counts images and generate seconds.

Curation's model steps log each batch the same way (execution/curate.py: requests, tokens, seconds and
how many values the batch computed rather than found in its cache). A lost attempt's batch was spent;
what the attempt that kept its captions found in the cache because the lost one had computed it was
spent once, and counts as the kept captions' work (`finished`); the rest, computed again, is `redone`.
So `total` = `finished` + `redone`, and `finished` is what an uninterrupted build spends, whether the
caption caches survived the kill or not. A batch a kill cut short is not logged (nor is a generated
batch the kill cut short).
"""
from __future__ import annotations

import json
from pathlib import Path

from ..layout import EVENTS
from ..state import STAGES

GENERATED = "generated"  # the event a worker logs per generated batch
CURATED = "curated"      # the event a caption model step logs per batch (execution/curate.py)
LLM = ("requests", "prompt_tokens", "completion_tokens")


def _events(work_root: Path):
    try:
        with open(work_root / EVENTS, "rb") as f:
            for line in f:
                try:
                    event = json.loads(line)
                except ValueError:  # a line a kill cut short
                    continue
                if isinstance(event, dict):
                    yield event
    except FileNotFoundError:
        pass


def redone_work(work_root: Path, markers: list[dict], usage: dict | None = None) -> tuple[dict, dict]:
    """(redone, reused): images and generate seconds of attempts that did not finish their shard, and
    what lost curation attempts spent, split into what was done again (redone) and what the kept
    attempt found in the cache (reused, per step). `usage`: the kept funnel's usage (step -> its cost
    and attempt)."""
    kept = {m["shard"]: (m.get("ledger") or {}).get("attempt") for m in markers}
    kept_curation = {name: u.get("attempt") for name, u in (usage or {}).items()}
    images, seconds, attempts = 0, 0.0, set()
    batches: dict[tuple, dict] = {}  # (step, batch) -> {"kept": event or None, "lost": [events]}
    for event in _events(work_root):
        if event.get("event") == GENERATED and kept.get(event.get("shard")) != event.get("attempt"):
            images += int(event.get("images") or 0)
            seconds += float(event.get("seconds") or 0.0)
            attempts.add(event.get("attempt"))
        elif event.get("event") == CURATED and kept_curation.get(event.get("step")):
            slot = batches.setdefault((event["step"], event.get("batch")), {"kept": None, "lost": []})
            if event.get("attempt") == kept_curation[event["step"]]:
                slot["kept"] = event
            else:
                slot["lost"].append(event)
                attempts.add(event.get("attempt"))
    redone: dict[str, dict] = {}
    reused: dict[str, dict] = {}
    for (step, _), slot in batches.items():
        if not slot["lost"]:
            continue
        # values a lost attempt computed and the kept one did not: found in the cache, spent once
        first = max(slot["lost"], key=lambda e: int(e.get("computed") or 0))
        computed = int(first.get("computed") or 0)
        again = int((slot["kept"] or {}).get("computed") or 0)
        share = max(0, computed - again) / computed if computed else 0.0
        for event in slot["lost"]:
            part = share if event is first else 0.0
            for key in ("seconds", *LLM):
                value = float(event.get(key) or 0)
                _add(reused.setdefault(step, {}), key, value * part)
                _add(redone.setdefault(step, {}), key, value * (1 - part))
    llm = {key: round(sum(u.get(key, 0) for u in redone.values())) for key in LLM}
    return ({"images": images, "device_seconds": {"generate": round(seconds, 3), **{
        f"curation.{name}": round(u.get("seconds", 0.0), 3) for name, u in redone.items()}},
        "llm": llm, "attempts": len(attempts)}, reused)


def _add(into: dict, key: str, value: float) -> None:
    into[key] = into.get(key, 0.0) + value


def build_ledger(recipe, markers: list[dict], caption_funnel: dict, work_root: Path) -> dict:
    """The ledger stats.json, the card and the CLI show."""
    stages = {k: round(sum(m["stage_seconds"][k] for m in markers), 3) for k in STAGES}
    parts: dict[str, float] = {}
    for m in markers:
        for name, s in ((m.get("ledger") or {}).get("parts") or {}).items():
            parts[name] = parts.get(name, 0.0) + s
    usage = caption_funnel.get("usage") or {}
    redone, reused = redone_work(work_root, markers, usage)
    curation = {name: {key: float(u.get(key, 0) or 0) + reused.get(name, {}).get(key, 0.0)
                       for key in ("seconds", *LLM)} for name, u in usage.items()}
    llm = {key: round(sum(u[key] for u in curation.values())) for key in LLM}
    device = {**stages, **{name: round(s, 3) for name, s in parts.items()},
              **{f"curation.{name}": round(u["seconds"], 3) for name, u in curation.items()}}
    finished = {"images": sum(m["rows"] for m in markers), "device_seconds": device, "llm": llm}
    total_seconds = sum(stages.values()) + sum(device[k] for k in device if k.startswith("curation."))
    total = {"images": finished["images"] + redone["images"],
             "device_seconds": round(total_seconds + sum(redone["device_seconds"].values()), 3),
             "llm": {key: llm[key] + redone["llm"][key] for key in LLM}}
    ledger = {"finished": finished, "redone": redone, "total": total}
    money = price(recipe, total)
    if money is not None:
        ledger["money"] = money
    return ledger


def price(recipe, total: dict) -> dict | None:
    """Money, from the recipe's own prices only (`costs:`)."""
    costs = recipe.costs
    if costs is None:
        return None
    items = {}
    if costs.device_hour is not None:
        items["device"] = total["device_seconds"] / 3600 * costs.device_hour
    llm = total["llm"]
    if costs.prompt_tokens_per_million is not None:
        items["llm_prompt_tokens"] = llm["prompt_tokens"] / 1e6 * costs.prompt_tokens_per_million
    if costs.completion_tokens_per_million is not None:
        items["llm_completion_tokens"] = llm["completion_tokens"] / 1e6 * costs.completion_tokens_per_million
    if costs.per_request is not None:
        items["llm_requests"] = llm["requests"] * costs.per_request
    items = {k: round(v, 6) for k, v in items.items()}
    return {"currency": costs.currency, **items, "total": round(sum(items.values()), 6)}


def ledger_lines(ledger: dict, estimate_hours: float | None = None) -> list[str]:
    """The ledger in a few lines (the CLI after a build; the card holds the same as a table)."""
    t, r, f = ledger["total"], ledger["redone"], ledger["finished"]
    lines = [f"cost: {t['images']:,} images generated, {t['device_seconds'] / 3600:.3f} device-hours"
             + (f" (plan's estimate at its reference throughput: {estimate_hours:.3f})"
                if estimate_hours is not None else "")]
    if r["images"] or any(r["device_seconds"].values()) or any((r.get("llm") or {}).values()):
        curation = sum(v for k, v in r["device_seconds"].items() if k.startswith("curation."))
        llm = r.get("llm") or {}
        lines.append(f"  redone after interruptions: {r['images']:,} images,"
                     f" {r['device_seconds']['generate']:.1f} s of generation"
                     + (f", {curation:.1f} s of curation model steps" if curation else "")
                     + (f", {llm['requests']:,} LLM requests ({llm['prompt_tokens']:,} prompt +"
                        f" {llm['completion_tokens']:,} completion tokens)" if llm.get("requests") else "")
                     + f" ({r['attempts']} attempt(s))")
    busy = sorted(f["device_seconds"].items(), key=lambda kv: -kv[1])
    lines.append("  device-seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in busy if v))
    if t["llm"]["requests"]:
        lines.append(f"  LLM: {t['llm']['requests']:,} requests, {t['llm']['prompt_tokens']:,} prompt +"
                     f" {t['llm']['completion_tokens']:,} completion tokens")
    money = ledger.get("money")
    if money:
        lines.append(f"  money: {money['total']:,.2f} {money['currency']} (the recipe's prices)")
    return lines


def ledger_markdown(ledger: dict, candidates_per_caption: dict | None = None) -> str:
    """The card's "Cost" section body. The card is part of a release's bytes, which `rebuild` reproduces, so
    it holds what the data determines: the images the build generated (and adaptive best-of-k's histogram);
    device-seconds, LLM requests and tokens (a rebuild takes the curated captions and asks nothing), work
    redone after interruptions and money vary by run and stay in stats.json's `ledger`."""
    out = (f"{ledger['finished']['images']:,} images were generated for this dataset. Device-seconds per stage,"
           " LLM requests and tokens, work redone after interruptions and, where the recipe gives prices, money"
           " are in `stats.json` (`ledger`): they vary from run to run, and the card stays what a rebuild makes.")
    if candidates_per_caption:
        rows = ["| candidates | captions |", "|---:|---:|"]
        rows += [f"| {n} | {c:,} |" for n, c in candidates_per_caption.items()]
        out += "\n\nCandidates per caption (adaptive best-of-k):\n\n" + "\n".join(rows)
    return out
