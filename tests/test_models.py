"""Model loading on tiny real models: builtins, saved pipelines, checkpoints, preflights, tokenizers.

conftest.py makes the run offline and points SYNTHVLM_CACHE at a private temp dir. Tests of Hub
ids run in a subprocess so that HF_HOME/HF_HUB_OFFLINE, which huggingface_hub reads at import time,
are those a user would have.
"""
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from synthvlm_builder.models import builtin, loading as models
from synthvlm_builder.models.tokenizer import caption_tokenizer
from synthvlm_builder.settings import cache_dir


@pytest.fixture(scope="session")
def tiny_sd():
    return models.load_pipeline("builtin:tiny-sd")


_BUILT_PIPELINES = tuple(n for n in builtin.PIPELINES if n not in builtin.SHIPPED)  # random weights, built on use
_BUILT_CLIPS = tuple(n for n in builtin.CLIP_MODELS if n not in builtin.SHIPPED)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_builtin_pipelines_load_through_diffusion_pipeline():
    from diffusers import DiffusionPipeline

    expected = {"tiny-sd": "StableDiffusionPipeline", "tiny-sdxl": "StableDiffusionXLPipeline"}
    for name in _BUILT_PIPELINES:
        folder = builtin.builtin_dir(name)
        # Versioned: builtin/<v>/<library versions>/<name>.
        assert folder.parent.parent.parent == cache_dir() / "builtin"
        assert "diffusers" in folder.parent.name and "torch" in folder.parent.name
        pipe = DiffusionPipeline.from_pretrained(folder)
        assert type(pipe).__name__ == expected[name]
        # The real 49,408-token CLIP BPE, matching the text encoder's embedding table.
        assert len(pipe.tokenizer) == pipe.text_encoder.config.vocab_size == 49408
        assert pipe.unet.config.block_out_channels == [8, 16]
        assert len(pipe.vae.config.block_out_channels) == 4  # 8x latents, like real SD
    assert os.path.realpath(cache_dir()) != os.path.realpath(Path.home() / ".cache" / "synthvlm")


def test_builtin_rebuild_in_fresh_cache_is_identical(tmp_path, monkeypatch):
    first = {name: _files(builtin.builtin_dir(name)) for name in _BUILT_PIPELINES + _BUILT_CLIPS}
    monkeypatch.setenv("SYNTHVLM_CACHE", str(tmp_path))
    for name, files in first.items():
        again = builtin.builtin_dir(name)
        assert again.is_relative_to(tmp_path)
        assert _files(again) == files, name


def test_builtin_dir_concurrent_builds_leave_one_complete_copy(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTHVLM_CACHE", str(tmp_path))
    results = []
    threads = [threading.Thread(target=lambda: results.append(builtin.builtin_dir("tiny-clip"))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1 and len(results) == 3
    parent = results[0].parent
    assert sorted(p.name for p in parent.iterdir()) == ["tiny-clip"]  # no temp dirs left behind
    assert (results[0] / builtin.CLIP_WEIGHTS_FILE).is_file()
    with pytest.raises(ValueError, match="unknown builtin"):
        builtin.builtin_dir("tiny-flux")


def test_saved_sdxl_loads_from_local_dir_with_scheduler_override(tmp_path):
    src = models.load_pipeline("builtin:tiny-sdxl")
    src.save_pretrained(tmp_path / "sdxl")
    pipe = models.load_pipeline(str(tmp_path / "sdxl"), scheduler="dpmpp_2m_karras", dtype="float32")
    assert type(pipe).__name__ == "StableDiffusionXLPipeline"
    assert type(pipe.scheduler).__name__ == "DPMSolverMultistepScheduler"
    assert pipe.scheduler.config.use_karras_sigmas is True
    for key, value in src.unet.state_dict().items():
        assert torch.equal(pipe.unet.state_dict()[key], value), key
    image = pipe("a red cube", num_inference_steps=2, height=64, width=64, output_type="np",
                 generator=torch.Generator().manual_seed(0)).images
    assert image.shape == (1, 64, 64, 3) and np.isfinite(image).all()


def test_schedulers_resolve_and_generate(tiny_sd):
    import diffusers

    original = tiny_sd.scheduler
    images = {}
    try:
        for name, factory in models.SCHEDULERS.items():
            assert hasattr(diffusers, factory.cls_name), factory.cls_name
            tiny_sd.scheduler = original
            if name == "flow_match_euler":
                with pytest.raises(ValueError, match="does not fit"):
                    models.set_scheduler(tiny_sd, name)
                continue
            models.set_scheduler(tiny_sd, name)
            assert type(tiny_sd.scheduler).__name__ == factory.cls_name
            out = tiny_sd("a cat", num_inference_steps=4, height=64, width=64, output_type="np",
                          generator=torch.Generator().manual_seed(0)).images
            assert out.shape == (1, 64, 64, 3) and np.isfinite(out).all()
            images[name] = (out * 255).round().astype(np.uint8).tobytes()
    finally:
        tiny_sd.scheduler = original
    # Different samplers take different paths: most give different bytes from the same seed.
    assert len(set(images.values())) >= 8
    with pytest.raises(ValueError, match="unknown scheduler"):
        models.set_scheduler(tiny_sd, "dpm_magic")


def test_load_pipeline_dtype_and_compile(tiny_sd, capfd):
    pipe = models.load_pipeline("builtin:tiny-sd", dtype="bfloat16", compile=True)
    assert isinstance(pipe.unet, torch._dynamo.eval_frame.OptimizedModule)  # compiled lazily: not run here
    assert next(pipe.unet.parameters()).dtype == torch.bfloat16
    assert pipe.text_encoder.dtype == pipe.vae.dtype == torch.bfloat16
    capfd.readouterr()
    tiny_sd("a cat", num_inference_steps=1, height=64, width=64, output_type="np")
    assert "it/s" not in capfd.readouterr().err, "load_pipeline turns the pipeline's own progress bar off"


def test_load_clip_from_a_checkpoint_file(tmp_path):
    import open_clip
    from safetensors.torch import save_file

    cfg = {"embed_dim": 16,
           "vision_cfg": {"image_size": 64, "patch_size": 16, "width": 16, "layers": 1, "head_width": 8},
           "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1}}
    (tmp_path / "test-file-clip.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(tmp_path / "test-file-clip.json")
    torch.manual_seed(1)
    reference = open_clip.create_model("test-file-clip")
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(tmp_path / "ckpt.safetensors"))

    bundle = models.load_clip("test-file-clip", pretrained=str(tmp_path / "ckpt.safetensors"), device="cpu")
    assert not bundle.model.training
    for key, value in reference.state_dict().items():
        assert torch.equal(bundle.model.state_dict()[key], value), key
    assert bundle.preprocess["size"] == (64, 64) and bundle.preprocess["resize_mode"] == "shortest"
    assert bundle.tokenizer(["a cat"]).shape == (1, 77)


def test_check_local_and_builtin_preflights(tmp_path):
    models.check_pipeline_available("builtin:tiny-sdxl")
    models.check_pipeline_available(str(builtin.builtin_dir("tiny-sd")))
    models.check_clip_available("builtin:tiny-clip", None)
    with pytest.raises(models.ModelUnavailable, match="model_index.json"):
        models.check_pipeline_available(str(tmp_path))
    with pytest.raises(models.ModelUnavailable, match="model_index.json"):
        models.check_pipeline_available(str(tmp_path / "no" / "such" / "dir"))
    with pytest.raises(models.ModelUnavailable, match="builtin:tiny-sd"):
        models.check_pipeline_available("builtin:tiny-flux")
    with pytest.raises(models.ModelUnavailable, match="unknown open_clip architecture"):
        models.check_clip_available("ViT-Z-99", "openai")
    with pytest.raises(models.ModelUnavailable, match="unknown pretrained tag 'nope'.*laion2b_s34b_b79k"):
        models.check_clip_available("ViT-B-32", "nope")
    with pytest.raises(models.ModelUnavailable, match="not found"):
        models.check_clip_available("ViT-B-32", str(tmp_path / "missing.safetensors"))


_HUB_SCRIPT = r"""
import json, sys, time
from synthvlm_builder.models import loading as models
from synthvlm_builder.models.tokenizer import caption_tokenizer
sha, out = sys.argv[1], {}
def attempt(key, fn):
    try:
        out[key] = {"ok": True, "value": fn()}
    except models.ModelUnavailable as e:
        out[key] = {"ok": False, "msg": str(e)}
attempt("sdxl", lambda: models.check_pipeline_available("stabilityai/stable-diffusion-xl-base-1.0", "abc123"))
attempt("cached", lambda: models.check_pipeline_available("test-org/tiny-sd"))
attempt("cached_rev", lambda: models.check_pipeline_available("test-org/tiny-sd", sha))
attempt("other_rev", lambda: models.check_pipeline_available("test-org/tiny-sd", "0" * 40))
attempt("partial", lambda: models.check_pipeline_available("test-org/partial"))
attempt("clip_tag", lambda: models.check_clip_available("ViT-B-32", "openai"))
attempt("load", lambda: type(models.load_pipeline("test-org/tiny-sd", revision=sha)).__name__)
attempt("load_missing", lambda: models.load_pipeline("stabilityai/stable-diffusion-xl-base-1.0"))
attempt("tokens", lambda: caption_tokenizer("test-org/tiny-sd").count("a photo of a cat"))
print(json.dumps(out))
"""


@pytest.mark.slow
def test_hub_ids_offline_use_the_local_cache_or_fail_fast(tmp_path):
    """A user's machine: HF_HUB_OFFLINE=1, a Hub cache holding one pipeline (and one partly)."""
    sha = "1" * 40
    hub = tmp_path / "hf" / "hub"
    for repo, drop in (("tiny-sd", None), ("partial", "unet")):
        root = hub / f"models--test-org--{repo}"
        shutil.copytree(builtin.builtin_dir("tiny-sd"), root / "snapshots" / sha)
        if drop:
            shutil.rmtree(root / "snapshots" / sha / drop)
        (root / "refs").mkdir()
        (root / "refs" / "main").write_text(sha)
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    env.pop("HF_HUB_CACHE", None)
    proc = subprocess.run([sys.executable, "-c", _HUB_SCRIPT, sha], env=env, capture_output=True, text=True,
                          timeout=120, cwd=Path(__file__).parent.parent)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])

    sdxl = out["sdxl"]
    assert not sdxl["ok"]
    for part in ("'stabilityai/stable-diffusion-xl-base-1.0' (revision abc123)", "offline",
                 "hf download stabilityai/stable-diffusion-xl-base-1.0 --revision abc123", "local directory"):
        assert part in sdxl["msg"]
    assert out["cached"]["ok"] and out["cached_rev"]["ok"]
    assert not out["other_rev"]["ok"]
    assert not out["partial"]["ok"] and "missing unet" in out["partial"]["msg"]
    assert not out["clip_tag"]["ok"] and "timm/vit_base_patch32_clip_224.openai" in out["clip_tag"]["msg"]
    assert out["load"] == {"ok": True, "value": "StableDiffusionPipeline"}
    assert not out["load_missing"]["ok"]
    assert out["tokens"]["value"] == 7


def test_resolve_device_and_dtype():
    assert models.resolve_device("cpu") == torch.device("cpu")
    assert models.resolve_device("auto").type in {"cpu", "cuda", "mps"}
    for bad in ("gpu0", "tpu", "cuda:x"):
        with pytest.raises(ValueError, match="device"):
            models.resolve_device(bad)
    with pytest.raises(ValueError, match="cuda:99"):
        models.resolve_device("cuda:99")
    if not torch.cuda.is_available():
        assert models.resolve_device("auto") != torch.device("cuda")
        with pytest.raises(ValueError, match="CUDA is not available"):
            models.resolve_device("cuda")
    assert models.torch_dtype("bfloat16") is torch.bfloat16
    with pytest.raises(ValueError, match="float16"):
        models.torch_dtype("fp16")


SENTENCES = [
    "a photo of a cat",
    "The quick brown fox jumps over the lazy dog, twice!",
    "A 3D rendering of a café in Zürich at 10:30pm -- neon signs, rain-soaked streets.",
    "",
]


def test_caption_tokenizer_counts_like_clip_bpe():
    from open_clip.tokenizer import SimpleTokenizer

    tok = caption_tokenizer("builtin:tiny-sd")
    reference = SimpleTokenizer()  # OpenAI's own BPE code, as shipped in open_clip
    assert tok.count("a photo of a cat") == 7  # <sot> a photo of a cat <eot>
    for text in SENTENCES:
        assert tok.count(text) == len(reference.encode(text)) + 2, text
    assert tok.counts(SENTENCES) == [tok.count(t) for t in SENTENCES]
    # A pipeline directory goes through AutoTokenizer(subfolder="tokenizer") and agrees.
    from_dir = caption_tokenizer(str(builtin.builtin_dir("tiny-sdxl")))
    assert [from_dir.count(t) for t in SENTENCES] == [tok.count(t) for t in SENTENCES]


def test_caption_tokenizer_truncate():
    tok = caption_tokenizer("builtin:tiny-sd")
    long = " ".join(f"A Red-Brick house number {i}, seen from the North." for i in range(30))
    assert tok.count(long) > 77
    cut = tok.truncate(long, 77)
    assert long.startswith(cut) and cut.startswith("A Red-Brick house")  # original casing kept
    assert 76 <= tok.count(cut) <= 77
    for limit in (2, 3, 10, 40):
        piece = tok.truncate(long, limit)
        assert tok.count(piece) <= limit and long.startswith(piece)
    assert tok.truncate(long, 2) == ""
    assert tok.truncate("a photo of a cat", 77) == "a photo of a cat"
    assert tok.truncate("a photo of a cat", 5) == "a photo of"
    with pytest.raises(ValueError, match="special tokens"):
        tok.truncate(long, 1)


_ONLINE_SCRIPT = r"""
import json, sys, time
from pathlib import Path
from huggingface_hub import HfApi
from synthvlm_builder.models import loading as models
from synthvlm_builder.models.tokenizer import caption_tokenizer
folder, out = sys.argv[1], {}
api = HfApi()
api.create_repo("org/tiny-sd")
sha = api.upload_folder(repo_id="org/tiny-sd", folder_path=folder).oid
api.create_repo("org/not-a-pipeline")
api.upload_file(path_or_fileobj=b"# hello", path_in_repo="README.md", repo_id="org/not-a-pipeline")
def attempt(key, fn):
    try:
        out[key] = {"ok": True, "value": fn()}
    except models.ModelUnavailable as e:
        out[key] = {"ok": False, "msg": str(e)}
attempt("latest", lambda: models.check_pipeline_available("org/tiny-sd"))
attempt("pinned", lambda: models.check_pipeline_available("org/tiny-sd", sha))
attempt("no_repo", lambda: models.check_pipeline_available("org/missing"))
attempt("no_rev", lambda: models.check_pipeline_available("org/tiny-sd", "f" * 40))
attempt("not_pipeline", lambda: models.check_pipeline_available("org/not-a-pipeline"))
attempt("tokens", lambda: caption_tokenizer("org/tiny-sd", sha).count("a photo of a cat"))
cache = Path(__import__("huggingface_hub").constants.HF_HUB_CACHE)
out["cached_after_tokenizer"] = sorted(str(p.relative_to(cache)).split("/", 3)[-1] for p in cache.rglob("*")
                                       if p.is_file() and "/snapshots/" in str(p))
attempt("load", lambda: type(models.load_pipeline("org/tiny-sd", revision=sha)).__name__)
print(json.dumps(out))
"""


@pytest.mark.slow
def test_hub_ids_online_check_then_download(hub_env):
    """Against the loopback Hub (tests/hubserver.py): preflight answers, then a real download."""
    env = {**hub_env, "SYNTHVLM_CACHE": os.environ["SYNTHVLM_CACHE"]}
    proc = subprocess.run([sys.executable, "-c", _ONLINE_SCRIPT, str(builtin.builtin_dir("tiny-sd"))], env=env,
                          capture_output=True, text=True, timeout=180, cwd=Path(__file__).parent.parent)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["latest"]["ok"] and out["pinned"]["ok"]
    assert not out["no_repo"]["ok"] and "no such repository" in out["no_repo"]["msg"]
    assert not out["no_rev"]["ok"] and "revision does not exist" in out["no_rev"]["msg"]
    assert not out["not_pipeline"]["ok"] and "model_index.json" in out["not_pipeline"]["msg"]
    assert out["tokens"]["value"] == 7
    # The caption stage fetched the tokenizer only, not the weights.
    assert out["cached_after_tokenizer"] == ["tokenizer/tokenizer.json", "tokenizer/tokenizer_config.json"]
    assert out["load"]["value"] == "StableDiffusionPipeline"
