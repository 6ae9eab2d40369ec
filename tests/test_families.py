"""The modern pipeline families (FLUX.1, SD3.5, PixArt-Sigma, SANA), tiny, saved, and loaded from a
recipe: each image depends only on its own prompt and seed, and fields a family cannot honour are
refused by `validate` at the field."""
import json

import numpy as np
import pytest

import families
from buildutil import cli, read_rows, write_recipe

PROMPTS = ["a red cube on a table", "a dog in the snow", "two apples at night"]
SEEDS = [11, 22, 33]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Every family built once and saved under one recipe folder."""
    root = tmp_path_factory.mktemp("families") / "r"
    for name, build in families.FAMILIES.items():
        build(root / name)
    return root


def family_recipe(saved, name: str, extra: str = "", file: str = "r.yaml"):
    recipe = write_recipe(saved, name=file, model=f"./{name}", n_captions=2, size=2, batch_size=3)
    if extra:
        recipe.write_text(recipe.read_text().replace("  dtype: float32\n", "  dtype: float32\n" + extra))
    return recipe


@pytest.mark.parametrize("name, cls", [("flux", "FluxPipeline"), ("sd35", "StableDiffusion3Pipeline"),
                                       ("pixart_sigma", "PixArtSigmaPipeline"), ("sana", "SanaPipeline")])
def test_family_loads_from_a_recipe_and_images_do_not_depend_on_their_batch(saved, name, cls):
    from synthvlm_builder.execution.worker import ShardWorker
    from synthvlm_builder.recipe import load_recipe

    worker = ShardWorker(load_recipe(family_recipe(saved, name, file=f"{name}.yaml")), "cpu")
    gen = worker.generator
    assert type(gen.pipe).__name__ == cls
    batch = gen.generate(PROMPTS, SEEDS)
    assert batch.shape == (3, 64, 64, 3) and batch.dtype == np.uint8  # exactly the recipe's size (no binning)
    assert not np.array_equal(batch[0], batch[1])
    for i in (0, 2):
        alone = gen.generate([PROMPTS[i]], [SEEDS[i]])[0]
        assert np.abs(alone.astype(int) - batch[i].astype(int)).max() <= 1  # batched matmul rounding only
    swapped = gen.generate(PROMPTS[::-1], SEEDS[::-1])
    assert np.abs(swapped[::-1].astype(int) - batch.astype(int)).max() <= 1


def test_a_family_builds_end_to_end(saved, tmp_path):
    recipe = family_recipe(saved, "pixart_sigma", file="pixart_build.yaml")
    cli(recipe, "--output", tmp_path / "out")
    rows = read_rows(tmp_path / "out")
    assert len(rows) == 2 and {(r["width"], r["height"]) for r in rows} == {(64, 64)}
    lock = json.loads((tmp_path / "out" / "recipe.lock.json").read_text())
    assert lock["models"]["generate"]["model"] == "pixart_sigma"
    assert lock["models"]["generate"]["weights"] == lock["inputs"]["generate.model"]


def test_flux_refuses_a_negative_prompt_at_the_field(saved):
    recipe = family_recipe(saved, "flux", '  negative_prompt: "blurry"\n', file="flux_neg.yaml")
    proc = cli("validate", recipe, check=False)
    line = next(i for i, ln in enumerate(recipe.read_text().splitlines(), 1) if "negative_prompt" in ln)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"{recipe}:{line}:20: generate.negative_prompt: FluxPipeline is guidance-distilled")
    for name in ("sd35", "pixart_sigma", "sana"):  # they take one
        cli("validate", family_recipe(saved, name, '  negative_prompt: "blurry"\n', file=f"{name}_neg.yaml"))


def test_a_scheduler_the_family_was_not_trained_for_is_refused(saved):
    recipe = family_recipe(saved, "sd35", "  scheduler: ddim\n", file="sd35_ddim.yaml")
    proc = cli("validate", recipe, check=False)
    assert proc.returncode == 2
    assert "generate.scheduler: 'ddim' does not fit StableDiffusion3Pipeline" in proc.stderr
    assert "can be replaced by: flow_match_euler" in proc.stderr
    cli("validate", family_recipe(saved, "sd35", "  scheduler: flow_match_euler\n", file="sd35_fm.yaml"))
