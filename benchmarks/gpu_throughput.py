"""GPU throughput at SDXL size: the raw diffusers loop against the builder, and scorer headroom.

    python benchmarks/gpu_throughput.py                 # CUDA: SDXL-size, fp16, 1024 and 512 px, batch 1/4/8
    python benchmarks/gpu_throughput.py --tiny          # CPU smoke run with tiny configs (the tests)

No weights are downloaded. The pipeline is a StableDiffusionXLPipeline built in memory from the
published SDXL base 1.0 component configs below (UNet 2.6B parameters, VAE, CLIP ViT-L text
encoder, OpenCLIP bigG text encoder with projection) with random weights: the FLOPs, memory
traffic and kernels are the real ones, the pictures are noise. The scorer is open_clip ViT-L-14
with random weights, in float32 as the builder loads CLIP. The SDXL VAE config keeps
force_upcast, so decoding runs in float32 as it does for users of the base checkpoint.

For each resolution and batch size, alternating, --repeats times:
  raw      `pipe(prompt=[...], generator=[...], output_type="np")` per batch, images discarded;
  builder  the builder's `ShardWorker.run` on the same captions and seeds, with that pipeline and
           scorer (batched generation; CLIPScore, SSIM, JPEG encoding and Parquet writing of
           batch n on the finish thread while batch n+1 generates).
Then the scorer alone (CLIPScore on the device, SSIM on the worker's CPU pool) on generated
images, against the raw generation rate: the headroom the finish thread has.

Reference (ENVIRONMENT.md): SDXL 1024 px, batch 1, A100 80G, diffusers + SDPA: 1.60 s/img at
50 steps (31.2 it/s); an H100 is about twice that.

Last line: RESULT gpu_overhead_ratio <builder s/img / raw s/img at the largest resolution and batch> target 1.10
"""
from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

TARGET = 1.10

# stabilityai/stable-diffusion-xl-base-1.0 unet/config.json (the fields that differ from diffusers' defaults).
SDXL_UNET = dict(
    sample_size=128, in_channels=4, out_channels=4, layers_per_block=2,
    block_out_channels=(320, 640, 1280), attention_head_dim=(5, 10, 20), transformer_layers_per_block=(1, 2, 10),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    cross_attention_dim=2048, use_linear_projection=True, norm_num_groups=32,
    addition_embed_type="text_time", addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816,
)
# vae/config.json
SDXL_VAE = dict(
    in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, norm_num_groups=32, sample_size=1024,
    block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4, scaling_factor=0.13025, force_upcast=True,
)
_TEXT = dict(vocab_size=49408, max_position_embeddings=77, bos_token_id=0, eos_token_id=2, pad_token_id=1)
# text_encoder/config.json (OpenAI CLIP ViT-L/14 text tower) and text_encoder_2/config.json (OpenCLIP bigG).
SDXL_TEXT = dict(_TEXT, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                 hidden_act="quick_gelu", projection_dim=768)
SDXL_TEXT_2 = dict(_TEXT, hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=20,
                   hidden_act="gelu", projection_dim=1280)
# scheduler/scheduler_config.json
SDXL_SCHEDULER = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
                      steps_offset=1, timestep_spacing="leading", interpolation_type="linear",
                      use_karras_sigmas=False, prediction_type="epsilon")

# --tiny: the same architecture at test sizes (runs on a CPU in seconds).
TINY_UNET = dict(SDXL_UNET, sample_size=8, layers_per_block=1, block_out_channels=(32, 64), attention_head_dim=(2, 4),
                 transformer_layers_per_block=(1, 2), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                 up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=64, norm_num_groups=8,
                 addition_time_embed_dim=8, projection_class_embeddings_input_dim=6 * 8 + 32)
TINY_VAE = dict(SDXL_VAE, layers_per_block=1, norm_num_groups=4, block_out_channels=(8, 8, 16, 16), sample_size=64)
TINY_TEXT = dict(_TEXT, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                 hidden_act="quick_gelu", projection_dim=32)
TINY_TEXT_2 = dict(TINY_TEXT, hidden_act="gelu")


def build_sdxl(device, dtype, tiny: bool):
    """StableDiffusionXLPipeline from configs, random weights, created directly on `device`."""
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from synthvlm_builder.models.builtin import clip_tokenizer
    unet_cfg, vae_cfg, te_cfg, te2_cfg = ((TINY_UNET, TINY_VAE, TINY_TEXT, TINY_TEXT_2) if tiny else
                                          (SDXL_UNET, SDXL_VAE, SDXL_TEXT, SDXL_TEXT_2))
    import diffusers
    diffusers.utils.logging.set_verbosity_error()  # "modules to keep in float32: []" on every .to(dtype)
    torch.manual_seed(0)
    with torch.device(device):
        unet = UNet2DConditionModel(**unet_cfg).to(dtype)
        vae = AutoencoderKL(**vae_cfg).to(dtype)
        te = CLIPTextModel(CLIPTextConfig(**te_cfg)).to(dtype)
        te2 = CLIPTextModelWithProjection(CLIPTextConfig(**te2_cfg)).to(dtype)
    pipe = StableDiffusionXLPipeline(
        vae=vae, text_encoder=te, text_encoder_2=te2, tokenizer=clip_tokenizer(),
        tokenizer_2=clip_tokenizer(pad_token="!"), unet=unet,
        scheduler=EulerDiscreteScheduler.from_config(SDXL_SCHEDULER), add_watermarker=False)
    pipe.set_progress_bar_config(disable=True)
    for m in (unet, vae, te, te2):
        m.eval()
    params = sum(p.numel() for p in unet.parameters())
    return pipe.to(device), params


def scorer_seconds(worker, bundle, recipe, prompts, seeds, device, repeats: int = 3) -> tuple[float, float]:
    """Seconds per image of CLIPScore (on the device) and SSIM (on the worker's CPU pool), as the worker runs them."""
    from synthvlm_builder.stages.score import ClipScorer, ssim_roundtrip
    images = worker.generator.generate(prompts, seeds)
    scorer = ClipScorer(bundle, prefix=recipe.score.clip.prefix, device=device)
    scorer.score(images, prompts)  # warm-up
    C.sync(device)
    t = time.perf_counter()
    for _ in range(repeats):
        scorer.score(images, prompts)
    C.sync(device)
    clip_s = (time.perf_counter() - t) / (repeats * len(images))
    with ThreadPoolExecutor(worker.cpu_threads) as pool:
        t = time.perf_counter()
        for _ in range(repeats):
            list(pool.map(lambda im: ssim_roundtrip(im[None], recipe.score.ssim.size), images))
        ssim_s = (time.perf_counter() - t) / (repeats * len(images))
    return clip_s, ssim_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="tiny configs on any device (CPU smoke run)")
    ap.add_argument("--resolutions", type=int, nargs="+", help="default 1024 512 (--tiny: 64)")
    ap.add_argument("--batch-sizes", type=int, nargs="+", help="default 1 4 8 (--tiny: 1 2)")
    ap.add_argument("--steps", type=int, help="denoising steps, reduced from SDXL's usual 30-60 (default 8; --tiny 2)")
    ap.add_argument("--images", type=int, help="images per measurement (default 16; --tiny 4)")
    ap.add_argument("--repeats", type=int, help="alternating raw/builder pairs (default 2; --tiny 1)")
    ap.add_argument("--clip", help="open_clip architecture with random weights (default ViT-L-14; --tiny the builtin)")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    tiny = args.tiny
    resolutions = args.resolutions or ([64] if tiny else [1024, 512])
    batch_sizes = args.batch_sizes or ([1, 2] if tiny else [1, 4, 8])
    steps = args.steps or (2 if tiny else 8)
    n_images = args.images or (4 if tiny else 16)
    repeats = args.repeats or (1 if tiny else 2)
    clip_name = args.clip or ("builtin:tiny-clip" if tiny else "ViT-L-14")

    import torch

    from synthvlm_builder.models.loading import resolve_device
    from synthvlm_builder.execution.worker import ShardWorker

    device = resolve_device(args.device)
    if device.type != "cuda" and not tiny:
        raise SystemExit("no CUDA device: the SDXL-size run needs a GPU; use --tiny for a CPU smoke run")
    dtype_name = "float16" if device.type == "cuda" else "float32"
    dtype = getattr(torch, dtype_name)
    with C.bench_tmpdir("gpu") as tmp:
        if device.type == "cpu":
            C.pin_threads()
        t0 = time.perf_counter()
        pipe, unet_params = build_sdxl(device, dtype, tiny)
        bundle = C.load_clip_any(clip_name, device)
        C.header("gpu_throughput")
        gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        print(f"{'tiny' if tiny else 'SDXL-size'} pipeline ({unet_params / 1e9:.3f} B UNet params) {dtype_name} on "
              f"{gpu}, built in {time.perf_counter() - t0:.1f} s; scorer {clip_name} float32; {steps} steps; "
              f"{n_images} images per measurement", flush=True)
        results = {}  # (res, bs) -> (raw s/img, builder s/img)
        for res in resolutions:
            for bs in batch_sizes:
                path = C.write_recipe(tmp / f"r{res}", n_images, res=res, steps=steps, batch_size=bs,
                                      model="builtin:tiny-sdxl", dtype=dtype_name)
                recipe, items = C.load_items(path)
                worker = ShardWorker(recipe, device, pipe=pipe, clip_bundle=bundle)
                prompts, seeds = [it.caption.text for it in items], [it.seed for it in items]
                kwargs = C.pipe_kwargs(recipe)
                runs = {"raw": lambda: C.raw_loop(pipe, kwargs, prompts, seeds, bs),
                        "builder": lambda: C.builder_run(worker, [it.caption for it in items], tmp / "work")}
                try:
                    C.raw_loop(pipe, kwargs, prompts[:bs], seeds[:bs], bs)  # warm-up at this shape
                    C.builder_run(worker, [it.caption for it in items[:bs]], tmp / "work")
                    times = {"raw": [], "builder": []}
                    for r in range(repeats):
                        for name in (("raw", "builder") if r % 2 == 0 else ("builder", "raw")):
                            C.sync(device)
                            t = time.perf_counter()
                            runs[name]()
                            C.sync(device)
                            times[name].append((time.perf_counter() - t) / len(items))
                except torch.cuda.OutOfMemoryError:
                    print(f"{res} px batch {bs}: out of memory", flush=True)
                    torch.cuda.empty_cache()
                    continue
                raw, built = C.median(times["raw"]), C.median(times["builder"])
                results[res, bs] = raw, built
                print(f"{res:>5} px batch {bs}: raw {1 / raw:7.3f} img/s ({raw:.3f} s/img), builder {1 / built:7.3f}"
                      f" img/s; builder/raw time {built / raw:.3f}  load {C.load_average()}", flush=True)
            done = [b for (r, b) in results if r == res]
            if done:  # scorer headroom at this resolution, against the fastest raw generation
                n = min(max(done), 8)
                clip_s, ssim_s = scorer_seconds(worker, bundle, recipe, prompts[:n], seeds[:n], device)
                best_raw = min(results[res, b][0] for b in done)
                print(f"{res:>5} px scorer: CLIP {1 / clip_s:8.1f} img/s, SSIM ({worker.cpu_threads} CPU threads) "
                      f"{1 / ssim_s:8.1f} img/s; (CLIP + SSIM) / fastest raw generation = "
                      f"{best_raw / (clip_s + ssim_s):.1f}x", flush=True)
        if device.type == "cuda":
            print(f"peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB")
    if not results:
        raise SystemExit("no configuration fit in memory")
    key = max(results)
    raw, built = results[key]
    C.result("gpu_overhead_ratio", built / raw, f"{TARGET:.2f}")


if __name__ == "__main__":
    main()
