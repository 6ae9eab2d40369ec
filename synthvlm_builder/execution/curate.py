"""The caption stage as the verbs run it: `curate_recipe` streams a recipe's curated captions (the
`captions` verb, `preview` and the build), and `curate_build` curates a build's captions once per content
identity into its work dir (workdir.py), where every shard reads them.

Each run of the stage is an attempt with its own id: every model step's batch is logged with it in the
events log (`curated`: what the batch spent, how many values it computed), and the stored funnel names
the attempt whose captions were kept, so the cost ledger counts what a killed attempt spent
(execution/ledger.py). Fault injection (README "Reliability"): SYNTHVLM_TEST_SIGNAL=SIG@captions sends
SIG once every caption step has run, before the curated captions are recorded: a deterministic kill
point after curation has spent its requests and before its result is saved.
"""
from __future__ import annotations

import os
import signal
import uuid
from itertools import islice

from .. import reporter
from ..errors import BuildError
from ..recipe import Recipe
from ..settings import setting
from .context import BuildContext
from .ledger import CURATED


def curate_recipe(recipe: Recipe, funnel, device: str | None = None, inputs: dict | None = None):
    """The recipe's caption stage, streamed (the `captions` verb and the build run this one); its
    source-image models run on `device` (default: execution.device). With `inputs` (the content
    identity's digests), each caption file must still hold the bytes digested there."""
    from ..curation.captions import iter_curate, recipe_tokenizer
    from ..stages.format import RESERVED_TOKENS
    from .identity import source_input
    expected = {i: inputs[source_input(i)] for i in range(len(recipe.captions.sources))} if inputs else None
    return iter_curate(recipe.captions, tokenizer=recipe_tokenizer(recipe), funnel=funnel,
                       reserved=RESERVED_TOKENS[recipe.format.style], device=device or recipe.execution.device,
                       expected=expected)


def first_captions(recipe: Recipe, n_captions: int, funnel, device: str | None = None) -> list:
    """The recipe's first `n_captions` curated captions, in plan order (`preview`, `compare`'s recipe sides,
    `plan --measure`); `funnel` counts what was read to get them."""
    survivors = curate_recipe(recipe, funnel, device)
    try:
        with reporter.progress(islice(survivors, n_captions), total=n_captions, desc="captions",
                               unit=" captions") as curated:
            captions = list(curated)
    finally:
        survivors.close()  # stop reading the sources: the funnel counts what was read so far
    if not captions:
        raise BuildError("no caption survived the caption filters; see `synthvlm-build captions` for the funnel")
    return captions


def curate_build(ctx: BuildContext) -> dict:
    """Curate once per content identity, streaming to the build's work folder; a resumed build reuses
    the stored captions, so every shard keeps exactly the captions it started with. An empty result
    is an error and is not kept: after the inputs are fixed, the next run curates again. So is a
    caption file that no longer holds the bytes the content identity digested: the check comes when
    its reader ends, before the store's atomic write completes, so none of its captions are kept."""
    meta = ctx.work.captions.meta()
    if meta is None and ctx.curated is not None:
        c = ctx.curated
        meta = ctx.work.captions.write(iter(c.captions), lambda: c.funnel, ctx.recipe.execution.shard_size)
        if meta["sha256"] != c.sha256:  # written back other bytes: its batches would not be the release's
            ctx.work.captions.discard()
            raise BuildError(f"the curated captions, written again, have sha256 {meta['sha256'][:12]}, not the"
                             f" release's {c.sha256[:12]}: made by a synthvlm-builder with another captions format")
    if meta is None:
        from ..curation.captions import Funnel
        attempt = uuid.uuid4().hex[:16]

        def spent(step: str, batch: int, fields: dict) -> None:
            ctx.work.log(CURATED, attempt=attempt, step=step, batch=batch,
                         **{k: round(v, 4) if isinstance(v, float) else v for k, v in fields.items()})

        def recorded_funnel() -> dict:  # read once the captions are on disk, before their index is written
            _test_signal()
            return funnel.to_dict()

        funnel = Funnel(attempt=attempt, on_batch=spent)
        survivors = curate_recipe(ctx.recipe, funnel, ctx.device, inputs=ctx.inputs)
        with reporter.progress(survivors, desc="captions", unit=" captions") as bar:
            meta = ctx.work.captions.write(bar, recorded_funnel, ctx.recipe.execution.shard_size)
        reporter.info(f"captions: {meta['count']:,} kept of {meta['funnel']['read']:,} read")
    if not meta["count"]:
        ctx.work.captions.discard()
        raise BuildError("no caption survived the caption filters; see `synthvlm-build captions` for the funnel")
    return meta


def _test_signal() -> None:
    """SYNTHVLM_TEST_SIGNAL=SIG@captions: send SIG now (see the module docstring)."""
    name, _, where = (setting("SYNTHVLM_TEST_SIGNAL") or "").partition("@")
    if where == "captions":
        os.kill(os.getpid(), int(getattr(signal, f"SIG{name.upper()}")))
