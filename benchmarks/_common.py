"""Shared helpers for the benchmarks: offline environment, a benchmark recipe, the captions and
seeds exactly as the builder derives them, the raw diffusers loop, timing and the RESULT line.

Every benchmark runs offline (HF_HUB_OFFLINE=1) and writes only under a temporary directory:
the builtin tiny models go to $SYNTHVLM_CACHE when it is set (the tests share theirs), else to
a cache inside the benchmark's temp dir (built once per run, a few seconds).
"""
from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
               "HF_UPDATE_DOWNLOAD_COUNTS": "0", "MPLBACKEND": "Agg", "TOKENIZERS_PARALLELISM": "false"}
os.environ.update(OFFLINE_ENV)  # before anything imports huggingface_hub / datasets
# libgomp (torch's OpenMP) spin-waits between parallel regions by default. On a shared machine that
# makes a run 2-10x slower whenever another process wants the cores, and it throttles the spinning
# only when a process has more OpenMP threads than cores (the builder, with its scoring thread, does;
# a plain diffusers loop does not): the default policy biases every A/B here by the neighbours' load.
# PASSIVE for both sides measures the work itself. Set OMP_WAIT_POLICY yourself to override;
# set it empty (`OMP_WAIT_POLICY= python benchmarks/...`) for libgomp's own default.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
if not os.environ["OMP_WAIT_POLICY"]:
    del os.environ["OMP_WAIT_POLICY"]

# Words for captions that look like LLaVA's (and pass the paper's filters).
_ADJ = "red blue green small large old young wooden white black bright dark sunny busy quiet tall".split()
_NOUN = ("dog cat man woman child car bus bicycle house tree street beach table kitchen river mountain "
         "boat bird horse field city window chair book cake flower garden train road sky").split()
_VERB = "sits stands runs walks rides lies waits plays looks rests".split()


def caption_texts(n: int) -> list[str]:
    """n distinct, deterministic captions of 8-12 words."""
    out = []
    for i in range(n):
        a, b, c, d, v = (_ADJ[i % 16], _NOUN[(i // 16) % 30], _ADJ[(i * 7 + 3) % 16],
                         _NOUN[(i * 11 + 5) % 30], _VERB[i % 10])
        out.append(f"A {a} {b} {v} next to a {c} {d}, photo number {i}.")
    return out


RECIPE = """\
# Benchmark recipe written by benchmarks/_common.py (every candidate is kept).
name: bench
version: 0.1.0
license: cc-by-4.0
seed: 0
captions:
  sources:
    - type: jsonl
      path: caps.jsonl
      name: bench
      id_column: id
  filters:
    dedupe: none
generate:
  model: {model}
  steps: {steps}
  guidance_scale: 7.5
  resolution: [{res}, {res}]
  images_per_caption: 1
  batch_size: {batch_size}
  dtype: {dtype}
score:
  clip:
    model: builtin:tiny-clip
    prefix: "A photo depicts "
  ssim:
    size: {ssim_size}
    weight: 0.5
select:
  size: {n}
  per_caption: all
format:
  image_format: jpeg
  quality: 95
execution:
  executor: local
  shard_size: {shard_size}
  device: cpu
"""


def write_recipe(d: Path, n: int, *, res: int = 256, steps: int = 4, batch_size: int = 8,
                 model: str = "builtin:tiny-sd", shard_size: int = 1000, ssim_size: int | None = None,
                 dtype: str = "float32") -> Path:
    """A recipe over `n` benchmark captions that keeps every candidate (select.size = n, per_caption all).
    It names builtin:tiny-clip; benchmarks that score with another CLIP hand the scorer to ShardWorker."""
    d.mkdir(parents=True, exist_ok=True)
    with open(d / "caps.jsonl", "w") as f:
        for i, text in enumerate(caption_texts(n)):
            f.write(json.dumps({"id": f"{i:07d}", "caption": text}) + "\n")
    ssim_size = ssim_size or max(8, res * 336 // 1024)  # the paper's 1024 -> 336 ratio
    path = d / f"recipe-bs{batch_size}.yaml"
    path.write_text(RECIPE.format(model=model, steps=steps, res=res, batch_size=batch_size, n=n,
                                  ssim_size=ssim_size, shard_size=shard_size, dtype=dtype))
    return path


def load_items(recipe_path: Path):
    """(recipe, items): the captions as the builder curates them, each with the seed the builder derives
    (`plan.derive_seed(recipe.seed, caption.id, k)`, via worker.shard_items), in plan order."""
    from synthvlm_builder.curation.captions import curate
    from synthvlm_builder.execution.plan import derive_seed
    from synthvlm_builder.recipe import load_recipe
    from synthvlm_builder.execution.worker import shard_items

    recipe = load_recipe(recipe_path)
    captions = curate(recipe.captions).captions
    items = shard_items(recipe, captions)
    assert all(it.seed == derive_seed(recipe.seed, it.caption.id, it.k) for it in items)
    return recipe, items


def pin_threads() -> None:
    """The builder's CPU setting (worker.ShardWorker): torch intra-op threads = usable cores."""
    import torch

    from synthvlm_builder.execution.worker import cpu_threads
    torch.set_num_threads(cpu_threads())


def model_source(model: str) -> str:
    """A recipe's generate.model as a path or Hub id diffusers can load (builtins are built on first use)."""
    from synthvlm_builder.models import builtin
    return str(builtin.builtin_dir(model.split(":", 1)[1])) if model.startswith("builtin:") else model


def pipe_kwargs(recipe) -> dict:
    """The sampling arguments the builder's ImageGenerator passes to every pipeline call."""
    g = recipe.generate
    return dict(num_inference_steps=g.steps, guidance_scale=g.guidance_scale, height=g.resolution[1],
                width=g.resolution[0], output_type="np")


def load_raw_pipeline(source: str, dtype: str = "float32", device: str = "cpu"):
    """A diffusers pipeline loaded the way a plain diffusers script would (same class as the builder)."""
    import diffusers
    import torch

    pipe = diffusers.AutoPipelineForText2Image.from_pretrained(source, dtype=getattr(torch, dtype)).to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def raw_loop(pipe, kwargs: dict, prompts: list[str], seeds: list[int], batch_size: int) -> None:
    """The plain diffusers loop: one call per batch, one generator per image, images discarded."""
    import torch

    for start in range(0, len(prompts), batch_size):
        gens = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds[start:start + batch_size]]
        pipe(prompt=prompts[start:start + batch_size], generator=gens, **kwargs)


def random_clip_bundle(arch: str, device):
    """An open_clip architecture with random weights (real FLOPs, no download), packed as models.load_clip does."""
    import open_clip

    from synthvlm_builder.models.loading import ClipBundle
    model, _, transform = open_clip.create_model_and_transforms(arch, pretrained=None, device=device)
    model.eval()
    return ClipBundle(model, open_clip.get_tokenizer(arch), dict(model.visual.preprocess_cfg), transform, device)


def load_clip_any(name: str, device):
    """`builtin:tiny-clip` (as the builder loads it) or an open_clip architecture with random weights."""
    from synthvlm_builder.models.loading import load_clip
    return load_clip(name, None, device) if name.startswith("builtin:") else random_clip_bundle(name, device)


def builder_run(worker, captions, root: Path) -> dict:
    """One shard through the builder's ShardWorker (generate, score, SSIM, encode, write) in a scratch work dir."""
    import shutil

    from synthvlm_builder.execution.workdir import WorkDir
    shutil.rmtree(root, ignore_errors=True)
    work = WorkDir(root)
    work.prepare({"benchmark": True})
    try:
        return worker.run(0, captions, work)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def sync(device) -> None:
    import torch
    if getattr(device, "type", str(device)) == "cuda":
        torch.cuda.synchronize()


@contextlib.contextmanager
def bench_tmpdir(prefix: str):
    """The benchmark's only writable place. Library caches (Hugging Face, XDG) point into it;
    builtin models go to $SYNTHVLM_CACHE when set (the tests share one), else here."""
    with tempfile.TemporaryDirectory(prefix=f"synthvlm-bench-{prefix}-") as d:
        os.environ.setdefault("SYNTHVLM_CACHE", str(Path(d) / "model-cache"))
        for var, sub in (("HF_HOME", "hf-home"), ("XDG_CACHE_HOME", "xdg-cache")):
            os.environ[var] = str(Path(d) / sub)
        yield Path(d)


def events_path(out: Path) -> Path:
    """A build's event log: DIR/.synthvlm/builds/KEY/events.jsonl (or, from trees before the work dir
    held one folder per build, DIR/.synthvlm/events.jsonl)."""
    return next(iter(sorted((out / ".synthvlm" / "builds").glob("*/events.jsonl"))), out / ".synthvlm" / "events.jsonl")


def child_env(pythonpath: str | None = None) -> dict:
    """The benchmark's environment for a child process; this tree (or `pythonpath`) first on its path."""
    env = {**os.environ, **OFFLINE_ENV}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (pythonpath or str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return env


def run_timed(cmd: list[str], cwd: Path | None = None, env: dict | None = None) -> tuple[float, str]:
    """Wall seconds of a fresh process, from spawn to exit (imports and model loading included)."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env or child_env(), capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(map(str, cmd))}\n{proc.stderr[-4000:]}")
    return seconds, proc.stdout


def build_cmd(recipe_path: Path, out: Path) -> list[str]:
    """The real console entry point, as a user runs it."""
    return [sys.executable, "-m", "synthvlm_builder", str(recipe_path), "--output", str(out)]


def median(values) -> float:
    return statistics.median(values)


def load_average() -> str:
    try:
        return "/".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def machine() -> str:
    import platform
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores"


def header(name: str) -> None:
    import torch
    print(f"# {name}: {machine()}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"load average {load_average()}", flush=True)


def result(name: str, value: float, target: str) -> None:
    """The last line every benchmark prints (the tests check it)."""
    print(f"RESULT {name} {value:.3f} target {target}", flush=True)
