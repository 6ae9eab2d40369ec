"""`evaluate --proxy clip`: what a dataset is worth to a model trained on it, measured with a small one.

    DIR_OR_REPO (a build dir, a folder of Parquet files with `image` and `caption`, or ORG/NAME[@REV])
      -> its image-caption pairs -> for each seed: a fresh small CLIP trained for a fixed budget (proxy.py)
      -> zero-shot retrieval among the held-out pairs: image->text and text->image R@1 and R@5
      -> mean and std over the seeds (JSON; `--card` adds them to a build's card)

The held-out set is `--eval` (pairs read the same way); without it, for shapes-world data (a build by the
built-in shapes models, or captions that all parse as the world's), it is scenes the world's renderer draws
(worldeval.py: ground truth, never generated), and the world's pixel oracle adds how often the image a caption
retrieves is right, attribute by attribute.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from .. import layout, reporter
from ..errors import InputError
from .proxy import ProxyConfig

METRICS = ("i2t_r1", "i2t_r5", "t2i_r1", "t2i_r5")
LABELS = {"i2t_r1": "image → text R@1", "i2t_r5": "image → text R@5", "t2i_r1": "text → image R@1",
          "t2i_r5": "text → image R@5"}
SECTION = "proxy-evaluation"


@dataclass
class Evaluation:
    """What `evaluate` measured: `data` is the JSON (config, runs, mean, std); `card` the card it was added to."""
    data: dict
    card: Path | None = None

    @property
    def mean(self) -> dict:
        return self.data["mean"]

    @property
    def std(self) -> dict:
        return self.data["std"]

    def to_json(self) -> dict:
        return self.data

    def summary(self) -> str:
        import json
        return json.dumps(self.data, indent=2)

    def card_section(self) -> str:
        return card_section(self.data)


@dataclass
class Pairs:
    spec: str
    images: list          # encoded bytes or HxWx3 uint8 arrays
    captions: list
    keys: list            # what names an image's content (equal keys: the same image)
    shapes_world: bool
    truth: np.ndarray | None = None  # truth[i, j]: caption j describes image i (else: shared image or caption)


def load_pairs(spec: str, what: str) -> Pairs:
    from .sides import RELEASE, fetch_release
    path = Path(spec)
    if path.is_dir():
        return _from_folder(path, spec, what)
    m = RELEASE.match(spec)
    if not m:
        raise InputError(what, f"{spec}: no such folder, and not a Hub dataset ORG/NAME[@REVISION]")
    folder = fetch_release(m["repo"], m["rev"], what, [layout.LOCK, "*.parquet", f"{layout.DATA}/*.parquet"])
    return _from_folder(folder, spec, what)


def _from_folder(folder: Path, spec: str, what: str) -> Pairs:
    import hashlib
    import json
    files = (layout.data_files(folder) or sorted((folder / layout.DATA).glob("*.parquet"))
             or sorted(folder.glob("*.parquet")))
    if not files:
        raise InputError(what, f"{spec}: no Parquet files (expected {layout.DATA}/*.parquet or *.parquet)")
    images, captions = [], []
    for f in files:
        try:
            names = pq.read_schema(f).names
            text = next((c for c in ("caption", "text") if c in names), None)
            if "image" not in names or text is None:
                raise InputError(what, f"{spec}: {f.name} has no `image` and `caption` (or `text`) columns")
            table = pq.read_table(f, columns=["image", text])
        except InputError:
            raise
        except Exception as e:
            raise InputError(what, f"{spec}: cannot read {f.name} ({type(e).__name__}: {e})") from None
        for image, caption in zip(table.column("image").to_pylist(), table.column(text).to_pylist()):
            data = image.get("bytes") if isinstance(image, dict) else image
            if not isinstance(data, bytes) or not isinstance(caption, str):
                raise InputError(what, f"{spec}: {f.name} has a row without image bytes or caption")
            images.append(data)
            captions.append(caption)
    lock_file = folder / layout.LOCK
    if lock_file.is_file():
        try:
            from .sides import SHAPES_GENERATOR
            world = json.loads(lock_file.read_text())["recipe"]["generate"]["model"] == SHAPES_GENERATOR
        except (ValueError, KeyError, TypeError):
            raise InputError(what, f"{spec}: {layout.LOCK} is not a synthvlm lock file") from None
    else:
        world = all_world_captions(captions)
    return Pairs(spec, images, captions, [hashlib.sha256(b).hexdigest() for b in images], world)


def all_world_captions(captions: list[str]) -> bool:
    from ..models.shapes import world
    return bool(captions) and all(world.parse_caption(c) is not None for c in captions)


def world_pairs(n: int) -> Pairs:
    from .worldeval import SEED, held_out_set, truth
    images, captions, scenes = held_out_set(n)
    return Pairs(f"shapes-world renders of {n} held-out scenes (seed {SEED})", images, captions,
                 [s.key() for s in scenes], True, truth(captions, scenes))


def relevant(pairs: Pairs) -> np.ndarray:
    """relevant[i, j]: retrieving caption j for image i (or image i for caption j) is right: the world's truth
    where it is known (a caption that names no positions describes several renders), else pairs that share
    an image or a caption (`groups`)."""
    if pairs.truth is not None:
        return pairs.truth
    g = groups(pairs)
    return g[:, None] == g[None, :]


def groups(pairs: Pairs) -> np.ndarray:
    """A group id per pair: pairs that share an image or a caption are one group (a retrieval of either
    counts as right), joined transitively."""
    parent = list(range(len(pairs.captions)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i
    for values in (pairs.keys, pairs.captions):
        first: dict = {}
        for i, v in enumerate(values):
            parent[root(i)] = root(first.setdefault(v, i))
    return np.array([root(i) for i in range(len(parent))])


def evaluate(target: str, eval_spec: str | None = None, seeds=(0, 1, 2), cfg: ProxyConfig = ProxyConfig(),
             eval_size: int = 300, device: str = "cpu", threads: int | None = None) -> Evaluation:
    import torch

    from ..execution.worker import cpu_threads
    from . import proxy
    train_set = load_pairs(target, "DIR_OR_REPO")
    if eval_spec:
        held_out = load_pairs(eval_spec, "--eval")
    elif train_set.shapes_world:
        held_out = world_pairs(eval_size)
    else:
        raise InputError("--eval", f"{target} is not shapes-world data: give a held-out set of image-caption pairs"
                                   " (--eval DIR_OR_REPO)")
    oracle = eval_spec is None and held_out.shapes_world  # the world's oracle judges its own renders
    previous = torch.get_num_threads()
    torch.set_num_threads(threads or cpu_threads())  # the result depends on it: recorded, restored after
    try:
        tokens = proxy.Tokens(train_set.shapes_world and held_out.shapes_world)
        arch = proxy.model_cfg(cfg, tokens)
        used = torch.get_num_threads()
        runs, seconds, parameters = _runs(train_set, held_out, tokens, arch, cfg, seeds, device, oracle)
    finally:
        torch.set_num_threads(previous)
    names = [k for k in runs[0] if k != "seed"]
    values = {k: np.array([r[k] for r in runs], np.float64) for k in names}
    return Evaluation({
        "proxy": "clip",
        "dataset": {"spec": target, "pairs": len(train_set.captions), "shapes_world": train_set.shapes_world},
        "eval": {"spec": held_out.spec, "pairs": len(held_out.captions), "groups": int(len(set(groups(held_out)))),
                 "oracle": oracle},
        "config": {**cfg.to_dict(), "tokenizer": tokens.name, "context_length": tokens.context,
                   "parameters": parameters, "device": device, "threads": used, "seeds": list(seeds)},
        "runs": runs,
        "mean": {k: round(float(v.mean()), 4) for k, v in values.items()},
        "std": {k: round(float(v.std(ddof=1)) if len(v) > 1 else 0.0, 4) for k, v in values.items()},
        "seconds_per_run": seconds,
    })


def _runs(train_set: Pairs, held_out: Pairs, tokens, arch: dict, cfg: ProxyConfig, seeds, device: str,
          oracle: bool) -> tuple[list, list, int]:
    """One training and evaluation per seed: (their metrics, their seconds, the model's parameter count)."""
    from . import proxy
    x, ids = proxy.image_tensor(train_set.images, cfg.image_size), tokens(train_set.captions)
    ex, eids = proxy.image_tensor(held_out.images, cfg.image_size), tokens(held_out.captions)
    eval_truth, train_groups = relevant(held_out), groups(train_set)
    runs, seconds, parameters = [], [], 0
    for seed in seeds:
        started = time.perf_counter()
        model = proxy.train(x, ids, cfg, arch, seed, device, train_groups)
        parameters = int(sum(p.numel() for p in model.parameters()))
        metrics, top = proxy.retrieval(*proxy.embed(model, ex, eids, device), eval_truth)
        if oracle:
            from .worldeval import attribute_accuracy
            metrics.update({f"attribute_{k}": v for k, v in
                            attribute_accuracy(held_out.images, held_out.captions, top).items()})
        seconds.append(round(time.perf_counter() - started, 1))
        runs.append({"seed": seed, **{k: round(v, 4) for k, v in metrics.items()}})
        reporter.info(f"seed {seed}: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items() if k in METRICS)
            + f" ({seconds[-1]:.0f} s)")
    return runs, seconds, parameters


def card_section(result: dict) -> str:
    from ..text import md_text
    c, d, e = result["config"], result["dataset"], result["eval"]
    lines = ["## Proxy evaluation", "",
             f"A small CLIP (open_clip, width {c['width']}, {c['layers']} vision and 2 text layers,"
             f" {c['image_size']} px, {c['parameters']:,} parameters) trained from scratch on this dataset's"
             f" {d['pairs']:,} image-caption pairs for {c['steps']:,} steps of batch {c['batch_size']}, then asked"
             f" to retrieve among {e['pairs']:,} held-out pairs ({md_text(e['spec'])}). Mean ± std over"
             f" {len(c['seeds'])} seed(s); higher is better. Made by `synthvlm-build evaluate --proxy clip`.", "",
             "| metric | value |", "|---|---:|"]
    for k in result["mean"]:
        label = LABELS.get(k) or "oracle: retrieved image right in " + (
            "every attribute" if k == "attribute_all" else k.removeprefix("attribute_"))
        lines.append(f"| {label} | {result['mean'][k]:.3f} ± {result['std'][k]:.3f} |")
    return "\n".join(lines) + "\n"


def check_card(target: str) -> Path:
    """The build dir whose card `--card` adds the section to (checked before any training)."""
    if not layout.is_finished(Path(target)):
        raise InputError("--card", f"adds the section to a local build dir's card: {target} is not one")
    return Path(target)


def add_to_card(build_dir: Path, result: Evaluation) -> Path:
    from ..atomic import atomic_write
    from ..release.card import set_section
    card = Path(build_dir) / layout.CARD
    atomic_write(card, set_section(card.read_text(encoding="utf-8"), SECTION, result.card_section()))
    return card
