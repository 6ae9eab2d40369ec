"""The command line's words: the verbs, their flags, descriptions and examples, and the parsers made
from them (cli.py runs the verbs). README "Command line" documents every flag listed here."""
from __future__ import annotations

import argparse
import re

VERBS = ("validate", "plan", "diff", "review", "preview", "verify", "rebuild", "captions", "publish", "export",
         "compare", "evaluate")

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
    "rebuild": "synthvlm-build rebuild build/synthvlm-quickstart-v0.1.0   # into build/synthvlm-quickstart-v0.1.0-rebuilt\n"
               "  synthvlm-build rebuild my-org/synthvlm --revision v1.0.0 --output rebuilt/",
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
    "rebuild": "Build a release again from its own files: recipe.lock.json, recipe.yaml, stats.json and the curated"
               " captions.jsonl (checked against the lock's sha256) of a build dir, a downloaded release or a Hub"
               " release, not the caption sources. Same fingerprint and identity; the rows are the release's (bit for"
               " bit on the device type, thread count and library versions the lock records).",
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
             ("--device", {"metavar": "D", "help": "with --measure: the device (default: execution.device)"}),
             ("--nodes", {"metavar": "N", "help": "spread the shards over N nodes (one generation actor each): shards"
                                                 " per node and, with --measure, the wall time"})],
    "diff": [("old", {"metavar": "OLD"}), ("new", {"metavar": "NEW"})],
    "review": [("old", {"metavar": "OLD", "nargs": "?"}), ("new", {"metavar": "NEW"}),
               ("--format", {"choices": ("markdown", "json"), "default": "markdown", "help": "default: markdown"})],
    "preview": [RECIPE, ("--captions", {"metavar": "N", "default": "16",
                                        "help": "curated captions to generate (default 16)"}),
                ("--output", {"metavar": "DIR", "help": "default: preview/<name>-v<version>"}),
                ("--device", {"metavar": "D", "help": "override execution.device (auto, cpu, cuda, cuda:N, mps)"})],
    "verify": [("target", {"metavar": "DIR_OR_REPO"}),
               ("--revision", {"metavar": "vX.Y.Z", "help": "Hub releases: the tag or commit (default: main)"}),
               ("--sample", {"metavar": "N", "default": "8", "help": "rows to regenerate (default 8)"}),
               ("--seed", {"metavar": "S", "default": "0", "help": "which rows are sampled (default 0)"}),
               ("--device", {"metavar": "D", "help": "where to regenerate (default: the device type the build ran on"
                                                     " when this machine has it, else auto)"})],
    "rebuild": [("target", {"metavar": "DIR_OR_REPO"}),
                ("--revision", {"metavar": "vX.Y.Z", "help": "Hub releases: the tag or commit (default: main)"}),
                ("--output", {"metavar": "DIR", "help": "default: DIR-rebuilt beside a local release, else"
                                                      " build/<name>-v<version>"}),
                ("--device", {"metavar": "D", "help": "override execution.device (auto, cpu, cuda, cuda:N, mps)"}),
                ("--overwrite", {"action": "store_true", "help": "replace a dir holding another build"})],
    "captions": [RECIPE, ("--output", {"metavar": "FILE.jsonl", "help": "write the surviving captions here"
                                       " (- for standard output; the funnel then goes to standard error)"}),
                 ("--json", {"action": "store_true", "help": "print the funnel (and captions) as JSON"})],
    "publish": [DIR, ("--repo-id", {"metavar": "ORG/NAME", "help": "default: the recipe's publish.repo_id"})],
    "export": [DIR],  # and one flag per exporter, with its options (export_arguments)
    "compare": [("old", {"metavar": "OLD"}), ("new", {"metavar": "NEW"}),
                ("--captions", {"metavar": "N", "default": "16", "help": "recipe sides: curated captions to run"
                                " (default 16)"}),
                ("--output", {"metavar": "DIR", "default": "compare", "help": "where the page, compare.md and"
                              " compare.json go (default: compare/)"}),
                ("--format", {"choices": ("markdown", "json"), "default": "markdown", "help": "default: markdown"}),
                ("--grid", {"metavar": "N", "default": "8", "help": "most changed rows shown (default 8)"}),
                ("--device", {"metavar": "D", "help": "recipe sides: override execution.device"}),
                ("--offline", {"action": "store_true", "help": "refuse (exit 2, naming the field) a recipe side whose"
                               " models or captions are not built in or on this disk, instead of downloading"})],
    "evaluate": [("target", {"metavar": "DIR_OR_REPO"}),
                 ("--proxy", {"choices": ("clip",), "default": "clip", "help": "the proxy model (default: clip)"}),
                 ("--eval", {"metavar": "DIR_OR_REPO", "help": "held-out image-caption pairs (default for"
                             " shapes-world data: the world's rendered held-out scenes)"}),
                 ("--seeds", {"metavar": "N", "default": "3", "help": "trainings, seeds 0..N-1 (default 3)"}),
                 ("--steps", {"metavar": "N", "default": "300", "help": "training steps (default 300)"}),
                 ("--batch-size", {"metavar": "B", "default": "64", "help": "default 64"}),
                 ("--image-size", {"metavar": "PX", "default": "32", "help": "default 32"}),
                 ("--eval-size", {"metavar": "N", "default": "300", "help": "held-out world scenes (default 300)"}),
                 ("--device", {"metavar": "D", "default": "cpu", "help": "cpu (default), cuda, cuda:N, mps"}),
                 ("--threads", {"metavar": "T", "help": "CPU threads (default: usable cores); results are"
                                " bit-identical for the same seeds and thread count"}),
                 ("--output", {"metavar": "FILE.json", "help": "also write the JSON here"}),
                 ("--card", {"action": "store_true", "help": "add the result to DIR's card (a local build dir)"})],
}


def export_arguments() -> list[tuple[str, dict]]:
    """`--<name> OUT` for every exporter installed (release/exporters/, and plugins'), then their options."""
    from .registry import registry
    exporters = registry().all("exporter")
    out = [(f"--{cls.name}", {"metavar": "OUT", "help": f"write {cls.summary}"}) for cls in exporters]
    seen = set()
    for cls in exporters:
        for opt in cls.options:
            if opt.flag not in seen:
                seen.add(opt.flag)
                out.append((opt.flag, {"metavar": opt.metavar, "help": f"with --{cls.name}: {opt.help}"}))
    return out


DEBUG = ("--debug", {"action": "store_true", "help": "on an error, print its traceback too"})


def summary(verb: str) -> str:
    """The first sentence of a verb's description, whole: the line `synthvlm-build --help` shows for it. A
    sentence ends at a period followed by a capital letter, so `OUT/00000.tar ... + OUT/index.json` stays."""
    return re.split(r"(?<=\.)\s+(?=[A-Z])", DESCRIPTIONS[verb], maxsplit=1)[0].rstrip(".")


def verb_parser(verb: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"synthvlm-build {verb}", description=DESCRIPTIONS[verb],
        epilog=f"example:\n  {EXAMPLES[verb]}", formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, options in ARGUMENTS[verb] + (export_arguments() if verb == "export" else []) + [DEBUG]:
        p.add_argument(name, **options)
    return p


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="synthvlm-build", description=BUILD_HELP,
        epilog="other commands (each has --help):\n" + "\n".join(
            f"  {v:<9} {summary(v)}" for v in VERBS) + "\n\nadd --debug to any command for"
        " tracebacks", formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("recipe", metavar="RECIPE")
    p.add_argument("--output", metavar="DIR", help="output dir (default: output.dir or build/<name>-v<version>)")
    p.add_argument("--push", action="store_true", help="publish to the Hub: each data file is uploaded as soon"
                   " as it is final, then the release is one commit and a tag")
    p.add_argument("--executor", choices=("local", "ray"), help="override execution.executor")
    p.add_argument("--device", metavar="D", help="override execution.device (auto, cpu, cuda, cuda:N, mps)")
    p.add_argument("--overwrite", action="store_true", help="replace a dir holding another recipe's build")
    p.add_argument(DEBUG[0], **DEBUG[1])
    return p
