"""diffusers: a diffusers text-to-image pipeline (SD, SDXL, SD3-style; `generate.model` a Hub id, a local
folder saved with save_pretrained, or builtin:NAME), one torch.Generator per image (models/generator.py)."""
from __future__ import annotations

from ...models.builtin import PIPELINES
from ...models.uses import ModelUse
from ..parts import GeneratorBackend


class DiffusersGenerator(GeneratorBackend):
    name = "diffusers"
    summary = "a diffusers text-to-image pipeline, the default"
    order = 10

    @classmethod
    def models(cls, value: dict, at: tuple) -> list[ModelUse]:
        return [ModelUse(value, at, "pipeline", digest="generate.model", lock=("generate",),
                         lock_fields=("model", "revision"), builtins=PIPELINES, what="the generator",
                         expected="a diffusers pipeline saved with save_pretrained, or a Hub id org/name")]

    @classmethod
    def check(cls, c, value, at, data) -> None:
        from ...models.ref import BUILTIN, HUB, LOCAL, ModelRef
        from ...recipe.checks import check_model_use
        ref = ModelRef.parse(value["model"], base=c.base)
        for use in cls.models(value, at):
            check_model_use(c, use)
        if ref.kind in (BUILTIN, LOCAL) and (value.get("negative_prompt") or value.get("scheduler")):
            from ...models.families import model_index, refused_fields  # imports diffusers: only when needed
            index = model_index(value["model"], base=c.base)
            for field, message in refused_fields(index, value) if index else ():
                c.bad(at + (field,), message)
        if "revision" in value and ref.kind != HUB:
            c.bad(at + ("revision",), "revision applies to Hub model ids only")

    @classmethod
    def preflight(cls, g) -> None:
        """The fields the pipeline family takes no (negative_prompt, scheduler), found from its index."""
        from ...errors import InputError
        from ...models.families import model_index, refused_fields
        index = model_index(g.model, g.revision)
        for name, message in refused_fields(index, {"negative_prompt": g.negative_prompt, "scheduler": g.scheduler}) \
                if index else ():
            raise InputError(f"generate.{name}", message)

    @classmethod
    def load(cls, g, device, pipe=None):
        """An ImageGenerator with the recipe's sampling settings; `pipe`: an already-loaded pipeline to use
        (the GPU benchmark builds random-weight SDXL-size models in memory)."""
        from ...models.generator import ImageGenerator
        from ...models.loading import load_pipeline
        if pipe is None:
            pipe = load_pipeline(g.model, revision=g.revision, dtype=g.dtype, scheduler=g.scheduler, device=device,
                                 variant=g.variant, compile=g.compile)
        return ImageGenerator(pipe, steps=g.steps, guidance_scale=g.guidance_scale, resolution=g.resolution,
                              negative_prompt=g.negative_prompt)
