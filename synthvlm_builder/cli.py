"""`synthvlm-build`: argument parsing only; every verb calls the package API.

Exit codes: 0 ok, 1 runtime failure, 2 bad input; `diff` and `review` add 3 (data changed,
version bumped) and 4 (data changed, version NOT bumped); `verify` exits 1 when a row does not match.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from pathlib import Path

from .errors import BuildError, InputError, RecipeError

VERBS = ("validate", "plan", "diff", "review", "preview", "verify", "captions", "publish", "export", "compare",
         "evaluate")

BUILD_HELP = """\
Build the dataset a recipe describes: captions -> generate -> score -> select -> write.
Rerunning with the same output dir resumes: finished shards are verified and skipped.

example:
  synthvlm-build recipes/quickstart.yaml
  synthvlm-build recipes/llava_100k.yaml --output /data/synthvlm-100k --push
"""

EXAMPLES = {
    "validate": "synthvlm-build validate recipes/*.yaml",
    "plan": "synthvlm-build plan recipes/llava_100k.yaml --json",
    "diff": "synthvlm-build diff main:recipes/llava_100k.yaml recipes/llava_100k.yaml"
            "   # OLD from git revision main",
    "review": "synthvlm-build review main:recipes/llava_100k.yaml recipes/llava_100k.yaml > comment.md",
    "preview": "synthvlm-build preview recipes/quickstart.yaml --captions 8 --output preview/",
    "verify": "synthvlm-build verify my-org/synthvlm --revision v1.0.0 --sample 8",
    "captions": "synthvlm-build captions recipes/quickstart.yaml --output captions.jsonl",
    "publish": "synthvlm-build publish build/synthvlm-quickstart-v0.1.0 --repo-id my-org/synthvlm-quickstart",
    "export": "synthvlm-build export build/synthvlm-quickstart-v0.1.0 --llava llava_data/\n"
              "  synthvlm-build export build/synthvlm-quickstart-v0.1.0 --webdataset wds/ --shard-bytes 1GB",
    "compare": "synthvlm-build compare main:recipes/quickstart.yaml recipes/quickstart.yaml --captions 8 > comment.md\n"
               "  synthvlm-build compare my-org/synthvlm@v1.0.0 build/synthvlm-v1.1.0 --output compare/",
    "evaluate": "synthvlm-build evaluate build/synthvlm-quickstart-v0.1.0 --proxy clip --seeds 3\n"
                "  synthvlm-build evaluate my-org/synthvlm@v1.0.0 --proxy clip --eval my-org/heldout --device cuda",
}

DESCRIPTIONS = {
    "validate": "Check recipes against the schema and the semantic rules. Loads and writes nothing.",
    "plan": "Show the resolved recipe, data fingerprint, shard plan, counts and compute estimate. Loads no model"
            " (unless --measure: then a few denoising steps on this device give a wall-time estimate).",
    "diff": "Compare two recipes: changed fields, whether the data fingerprint changed, whether the version was"
            " bumped. Exit 0 same data, 3 data changed and version bumped, 4 data changed but version not bumped."
            " A recipe given as REV:PATH is read from git at that revision.",
    "review": "A recipe change as one Markdown document for a pull-request comment (or JSON): validation of NEW,"
              " changed fields, the data fingerprint and version verdict, both compute estimates and their delta,"
              " unpinned caption sources. Exit codes as diff's; 2 when a recipe is invalid. Without OLD, NEW is"
              " reviewed as a new recipe. Either recipe may be REV:PATH from git.",
    "preview": "Run the recipe's real pipeline on its first curated captions and write a self-contained"
               " DIR/index.html: the caption funnel with dropped examples, then every candidate image with its"
               " caption, scores and whether selection would keep it.",
    "verify": "Regenerate a seeded sample of rows of a finished build dir or a published Hub release from its"
              " recipe.lock.json (each row's whole original batch) and compare pixels and scores."
              " Exit 0 all match, 1 a row does not, 2 bad input or a model the lock names cannot be loaded.",
    "captions": "Run only the caption stage: print the funnel and write the surviving captions with their ids."
                " Model steps (perplexity, source images, LLM judge) show values computed and cached: a rerun"
                " computes and asks nothing twice.",
    "publish": "Push a finished build to the Hub as one commit, then tag it v<version>.",
    "export": "Write a finished build in LLaVA's training layout (OUT/synthvlm.json + OUT/images/) or as"
              " WebDataset tar shards (OUT/00000.tar ... + OUT/index.json).",
    "compare": "What a change does to the data. Each side is a finished build dir, a Hub release ORG/NAME@vX.Y.Z,"
               " or a recipe (RECIPE or REV:PATH: its first N curated captions through the real pipeline, as"
               " preview runs them). Prints Markdown (rows added, removed and changed; each score's mean shift"
               " with a bootstrap confidence interval and KS statistic; the funnels side by side; caption"
               " statistics; the most changed rows) and writes DIR/index.html, a self-contained page with the"
               " score distributions and the most changed rows' images side by side. Exit codes as diff's:"
               " 0 same data, 3 data changed and version bumped, 4 data changed but version not bumped, 2 bad input.",
    "evaluate": "Train a small CLIP from scratch on a dataset's image-caption pairs for a fixed budget, once per"
                " seed, and report zero-shot retrieval (image->text and text->image R@1 and R@5, mean and std over"
                " the seeds) on a held-out set: --eval, or for shapes-world data the world's rendered held-out"
                " scenes, where the world's pixel oracle adds attribute accuracy. Prints JSON.",
}


RECIPE = ("recipe", {"metavar": "RECIPE"})
DIR = ("dir", {"metavar": "DIR"})
ARGUMENTS = {
    "validate": [("recipes", {"nargs": "+", "metavar": "RECIPE"})],
    "plan": [RECIPE, ("--json", {"action": "store_true", "help": "print the plan as JSON"}),
             ("--measure", {"action": "store_true",
                            "help": "time a few denoising steps of the model on this device and estimate the wall time"
                                    " (loads the model)"}),
             ("--device", {"help": "with --measure: the device (default: execution.device)"})],
    "diff": [("old", {"metavar": "OLD"}), ("new", {"metavar": "NEW"})],
    "review": [("old", {"metavar": "OLD", "nargs": "?"}), ("new", {"metavar": "NEW"}),
               ("--format", {"choices": ("markdown", "json"), "default": "markdown", "help": "default: markdown"})],
    "preview": [RECIPE, ("--captions", {"metavar": "N", "type": int, "default": 16,
                                        "help": "curated captions to generate (default 16)"}),
                ("--output", {"metavar": "DIR", "help": "default: preview/<name>-v<version>"}),
                ("--device", {"help": "override execution.device (auto, cpu, cuda, cuda:N, mps)"})],
    "verify": [("target", {"metavar": "DIR_OR_REPO"}),
               ("--revision", {"metavar": "vX.Y.Z", "help": "Hub releases: the tag or commit (default: main)"}),
               ("--sample", {"metavar": "N", "type": int, "default": 8, "help": "rows to regenerate (default 8)"}),
               ("--seed", {"metavar": "S", "type": int, "default": 0, "help": "which rows are sampled (default 0)"}),
               ("--device", {"help": "where to regenerate (default auto)"})],
    "captions": [RECIPE, ("--output", {"metavar": "FILE.jsonl", "help": "write the surviving captions here"}),
                 ("--json", {"action": "store_true", "help": "print the funnel (and captions) as JSON"})],
    "publish": [DIR, ("--repo-id", {"metavar": "ORG/NAME", "help": "default: the recipe's publish.repo_id"})],
    "export": [DIR, ("--llava", {"metavar": "OUT", "help": "output folder for the LLaVA layout"}),
               ("--webdataset", {"metavar": "OUT", "help": "output folder for WebDataset tar shards"}),
               ("--shard-size", {"metavar": "N", "help": "with --webdataset: at most N samples per tar"}),
               ("--shard-bytes", {"metavar": "B", "help": "with --webdataset: at most B bytes per tar (e.g. 1GB;"
                                                        " the default)"})],
    "compare": [("old", {"metavar": "OLD"}), ("new", {"metavar": "NEW"}),
                ("--captions", {"metavar": "N", "type": int, "default": 16,
                                "help": "recipe sides: curated captions to run (default 16)"}),
                ("--output", {"metavar": "DIR", "default": "compare", "help": "where the page, compare.md and"
                                                                             " compare.json go (default: compare/)"}),
                ("--format", {"choices": ("markdown", "json"), "default": "markdown", "help": "default: markdown"}),
                ("--grid", {"metavar": "N", "type": int, "default": 8, "help": "most changed rows shown (default 8)"}),
                ("--device", {"help": "recipe sides: override execution.device"}),
                ("--offline", {"action": "store_true", "help": "refuse (exit 2, naming the field) a recipe side whose"
                               " models or captions are not built in or on this disk, instead of downloading"})],
    "evaluate": [("target", {"metavar": "DIR_OR_REPO"}),
                 ("--proxy", {"choices": ("clip",), "default": "clip", "help": "the proxy model (default: clip)"}),
                 ("--eval", {"metavar": "DIR_OR_REPO", "help": "held-out image-caption pairs (default for"
                             " shapes-world data: the world's rendered held-out scenes)"}),
                 ("--seeds", {"metavar": "N", "type": int, "default": 3,
                              "help": "trainings, seeds 0..N-1 (default 3)"}),
                 ("--steps", {"metavar": "N", "type": int, "default": 300, "help": "training steps (default 300)"}),
                 ("--batch-size", {"metavar": "B", "type": int, "default": 64, "help": "default 64"}),
                 ("--image-size", {"metavar": "PX", "type": int, "default": 32, "help": "default 32"}),
                 ("--eval-size", {"metavar": "N", "type": int, "default": 300,
                                  "help": "held-out world scenes (default 300)"}),
                 ("--device", {"default": "cpu", "help": "cpu (default), cuda, cuda:N, mps"}),
                 ("--threads", {"metavar": "T", "type": int, "help": "CPU threads (default: usable cores); results"
                                " are bit-identical for the same seeds and thread count"}),
                 ("--output", {"metavar": "FILE.json", "help": "also write the JSON here"}),
                 ("--card", {"action": "store_true", "help": "add the result to DIR's card (a local build dir)"})],
}


def _verb_parser(verb: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"synthvlm-build {verb}", description=DESCRIPTIONS[verb],
        epilog=f"example:\n  {EXAMPLES[verb]}", formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, options in ARGUMENTS[verb]:
        p.add_argument(name, **options)
    return p


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="synthvlm-build", description=BUILD_HELP,
        epilog="other commands (each has --help):\n" + "\n".join(
            f"  {v:<9} {DESCRIPTIONS[v].split('. ')[0].rstrip('.')}" for v in VERBS) + "\n\nadd --debug to any command for"
        " tracebacks", formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("recipe", metavar="RECIPE")
    p.add_argument("--output", metavar="DIR", help="output dir (default: output.dir or build/<name>-v<version>)")
    p.add_argument("--push", action="store_true", help="publish to the Hub: each data file is uploaded as soon"
                   " as it is final, then the release is one commit and a tag")
    p.add_argument("--executor", choices=("local", "ray"), help="override execution.executor")
    p.add_argument("--device", help="override execution.device (auto, cpu, cuda, cuda:N, mps)")
    p.add_argument("--overwrite", action="store_true", help="replace a dir holding another recipe's build")
    return p


def main(argv: list[str] | None = None) -> int:
    # A build runs two torch thread teams at once (the denoiser, and scoring in a background thread);
    # OpenMP threads that spin while waiting then starve each other on the CPU. Passive waiting changes
    # no result. It only takes effect before torch loads, which the verbs do lazily, after this line.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    if argv and argv[0] in VERBS:
        verb, args = argv[0], _verb_parser(argv[0]).parse_args(argv[1:])
    else:
        verb, args = "build", _build_parser().parse_args(argv)
    try:
        code = COMMANDS[verb](args)
        sys.stdout.flush()  # a closed pipe shows here, inside the try, not at interpreter exit
        return code
    except (RecipeError, InputError, BuildError) as e:
        if debug:
            traceback.print_exc()
        print(_format_error(e, args), file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`plan --json | head`): stop quietly, as Unix tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a tool its pipe closed


def _format_error(e: Exception, args) -> str:
    """One line: located in an input file, at a command-line flag, or at a recipe field."""
    if isinstance(e, InputError):
        if e.location:
            return f"{e.location}: {e.message} ({e.field})"
        recipe_file = getattr(args, "recipe", None)
        if recipe_file and not e.field.startswith("-") and e.field != "DIR":
            from .recipe import load_recipe, locate
            file, line, col = locate(load_recipe(recipe_file), e.field)
            return f"{file}:{line}:{col}: {e.field}: {e.message}"
        return f"error: {e.field}: {e.message}"
    if isinstance(e, RecipeError):
        return str(e)
    return f"error: {e}"


# --- verbs --------------------------------------------------------------------------

def cmd_validate(args) -> int:
    from .execution.plan import fingerprint
    from .recipe import load_recipe
    problems, ok = [], []
    for path in args.recipes:
        try:
            ok.append(f"{path}: ok (fingerprint {fingerprint(load_recipe(path))[:12]})")
        except RecipeError as e:
            problems.extend(e.problems)
    if ok:
        print("\n".join(ok))
    if problems:
        raise RecipeError(problems)
    return 0


def cmd_plan(args) -> int:
    from .execution.plan import make_plan
    from .execution.report import format_plan, local_source_digests
    from .recipe import load_recipe
    recipe = load_recipe(args.recipe)
    plan = make_plan(recipe)
    measured = None
    if args.measure:
        from .execution.measure import estimate, format_measured, measure
        from .execution.runner import check_device, preflight
        check_device(args.device or recipe.execution.device, "--device" if args.device else "execution.device")
        preflight(recipe)
        measured = estimate(measure(recipe, args.device), plan.candidates)
    if args.json:
        extra = {"measured": measured} if measured else {}
        print(json.dumps({**plan.to_json(recipe), "content": local_source_digests(recipe), **extra}, indent=2))
    else:
        print(format_plan(recipe, plan))
        if measured:
            print(format_measured(measured, plan.candidates))
    return 0


def cmd_diff(args) -> int:
    from .execution.report import diff_recipes
    from .recipe import load_recipe_any
    old, new = load_recipe_any(args.old), load_recipe_any(args.new)
    text, code = diff_recipes(old, new)
    print(text)
    if code == 4:
        print(f"error: {args.new}: the data changed but version was not bumped", file=sys.stderr)
    return code


def cmd_review(args) -> int:
    from .execution.review import make_review, to_json, to_markdown
    review = make_review(args.old, args.new)
    if args.format == "json":
        print(json.dumps(to_json(review), indent=2, ensure_ascii=False))
    else:
        print(to_markdown(review), end="")
    for problems in review.problems.values():  # the located lines, as every verb reports bad input
        print("\n".join(str(p) for p in problems), file=sys.stderr)
    if review.exit_code == 4:
        print(f"error: {args.new}: the data changed but version was not bumped", file=sys.stderr)
    return review.exit_code


def cmd_preview(args) -> int:
    from .recipe import load_recipe
    recipe = load_recipe(args.recipe)
    if args.captions < 1:
        raise InputError("--captions", f"must be at least 1, got {args.captions}")
    from .execution.preview import preview
    out = Path(args.output) if args.output else Path("preview") / f"{recipe.name}-v{recipe.version}"
    page = preview(recipe, args.captions, out, device=args.device)
    print(f"wrote {page}")
    return 0


def cmd_verify(args) -> int:
    if args.sample < 1:
        raise InputError("--sample", f"must be at least 1, got {args.sample}")
    from .release.verify import verify
    return verify(args.target, revision=args.revision, sample=args.sample, seed=args.seed, device=args.device)


def cmd_captions(args) -> int:
    from .curation.captions import Funnel, format_funnel, write_jsonl
    from .execution.runner import curate_recipe
    from .recipe import load_recipe
    recipe = load_recipe(args.recipe)
    if args.output:
        _check_captions_output(Path(args.output), recipe)
    funnel = Funnel()
    survivors = curate_recipe(recipe, funnel)
    if args.output:  # streams to the file: memory stays flat however many captions there are
        kept, shown = write_jsonl(survivors, Path(args.output)), []
    else:
        shown = list(survivors)
        kept = len(shown)
    if args.json:
        out = {"funnel": funnel.to_dict()}
        if args.output:
            out["output"] = args.output
        else:
            out["captions"] = [{"id": c.id, "text": c.text, "source": c.source} for c in shown]
        print(json.dumps(out, indent=2, ensure_ascii=False))
        return 0
    print(format_funnel(funnel.to_dict()))
    if args.output:
        print(f"wrote {kept} captions to {args.output}")
    else:
        for c in shown[:10]:
            print(f"  {c.id}\t{c.text}")
        if kept > 10:
            print(f"  ... {kept - 10} more (use --output FILE.jsonl)")
    return 0


def _check_captions_output(out: Path, recipe) -> None:
    if out.is_dir():
        raise InputError("--output", f"{out} is a folder; give a file name such as {out / 'captions.jsonl'}")
    for i, src in enumerate(recipe.captions.sources):
        if out.exists() and Path(src.path).exists() and os.path.samefile(out, src.path) \
                or out.resolve() == Path(src.path).resolve():
            raise InputError("--output", f"{out} is the recipe's caption source captions.sources[{i}];"
                             " writing it would overwrite the input: choose another file")


def cmd_build(args) -> int:
    from .recipe import load_recipe
    recipe = load_recipe(args.recipe)
    from .execution.runner import build
    result = build(recipe, output_dir=Path(args.output) if args.output else None,
                   executor=args.executor, device=args.device, overwrite=args.overwrite, push=args.push)
    if args.push:
        from .analysis.changes import changes_since
        from .release.publish import publish
        publish(result.output_dir, changes=changes_since)
    return 0


def cmd_publish(args) -> int:
    from .analysis.changes import changes_since
    from .release.publish import publish
    publish(Path(args.dir), repo_id=args.repo_id, changes=changes_since)
    return 0


def cmd_export(args) -> int:
    if bool(args.llava) == bool(args.webdataset):
        raise InputError("--llava" if args.llava else "--webdataset", "give one of --llava OUT or --webdataset OUT")
    if args.llava:
        for flag, value in (("--shard-size", args.shard_size), ("--shard-bytes", args.shard_bytes)):
            if value is not None:
                raise InputError(flag, "applies to --webdataset only")
        from .release.export import export_llava
        export_llava(Path(args.dir), Path(args.llava))
        return 0
    from .release.webdataset import export_webdataset, parse_bytes, parse_count
    if args.shard_size is not None and args.shard_bytes is not None:
        raise InputError("--shard-size", "give --shard-size or --shard-bytes, not both")
    size = parse_count(args.shard_size, "--shard-size") if args.shard_size is not None else None
    limit = parse_bytes(args.shard_bytes, "--shard-bytes") if args.shard_bytes is not None else None
    export_webdataset(Path(args.dir), Path(args.webdataset), shard_size=size, shard_bytes=limit)
    return 0


def cmd_compare(args) -> int:
    if args.captions < 1:
        raise InputError("--captions", f"must be at least 1, got {args.captions}")
    if args.grid < 0:
        raise InputError("--grid", f"must be at least 0, got {args.grid}")
    from .analysis import report
    from .analysis.compare import compare
    from .analysis.sides import load_side
    out = Path(args.output)
    report.check_output(out)
    old, new = (load_side(spec, what, args.captions, args.device, args.offline)
                for spec, what in ((args.old, "OLD"), (args.new, "NEW")))
    result = compare(old, new, args.grid)
    markdown = report.to_markdown(result)
    as_json = json.dumps(report.to_json(result), indent=2, ensure_ascii=False) + "\n"
    page = report.write(result, out, markdown, as_json)
    print(as_json if args.format == "json" else markdown, end="")
    print(f"wrote {page}", file=sys.stderr)
    if result.exit_code == 4:
        print(f"error: {args.new}: the data changed but version was not bumped", file=sys.stderr)
    return result.exit_code


def cmd_evaluate(args) -> int:
    for flag, value, low in (("--seeds", args.seeds, 1), ("--steps", args.steps, 1),
                             ("--batch-size", args.batch_size, 2), ("--image-size", args.image_size, 8),
                             ("--eval-size", args.eval_size, 2)):
        if value < low:
            raise InputError(flag, f"must be at least {low}, got {value}")
    if args.threads is not None and args.threads < 1:
        raise InputError("--threads", f"must be at least 1, got {args.threads}")
    if args.image_size % 4:
        raise InputError("--image-size", f"must be a multiple of 4 (the patch size), got {args.image_size}")
    from .analysis.evaluate import add_to_card, check_card, evaluate
    from .analysis.proxy import ProxyConfig
    from .execution.runner import check_device
    check_device(args.device, "--device")
    build_dir = check_card(args.target) if args.card else None
    cfg = ProxyConfig(steps=args.steps, batch_size=args.batch_size, image_size=args.image_size)
    result = evaluate(args.target, args.eval, tuple(range(args.seeds)), cfg, args.eval_size, args.device, args.threads)
    text = json.dumps(result, indent=2) + "\n"
    if args.output:
        from .atomic import atomic_write
        atomic_write(Path(args.output), text)
    print(text, end="")
    if build_dir is not None:
        print(f"added the proxy evaluation to {add_to_card(build_dir, result)}", file=sys.stderr)
    return 0


COMMANDS = {"build": cmd_build, "validate": cmd_validate, "plan": cmd_plan, "diff": cmd_diff,
            "review": cmd_review, "preview": cmd_preview, "verify": cmd_verify, "captions": cmd_captions,
            "publish": cmd_publish, "export": cmd_export, "compare": cmd_compare, "evaluate": cmd_evaluate}

if __name__ == "__main__":
    sys.exit(main())
