"""`synthvlm-build`: runs a verb (cliargs.py parses it), each calling the package API, and reports what
goes wrong as one line (errors.py) with the exit code below; `--debug` adds the traceback.

Exit codes: 0 ok, 1 runtime failure, 2 bad input; `diff` and `review` add 3 (data changed,
version bumped) and 4 (data changed, version NOT bumped); `verify` exits 1 when a row does not match.
"""
from __future__ import annotations

import difflib
import json
import os
import re
import sys
import traceback
from pathlib import Path

from .cliargs import VERBS, build_parser, verb_parser
from .errors import BuildError, InputError, RecipeError, UnsafeOutput, error_line, fault_line
from .text import has_unsafe, printable


def main(argv: list[str] | None = None) -> int:
    # A build runs two torch thread teams at once (the denoiser, and scoring in a background thread);
    # OpenMP threads that spin while waiting then starve each other on the CPU. Passive waiting changes
    # no result. It only takes effect before torch loads, which the verbs do lazily, after this line.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    unknown = _unknown_command(argv)
    if unknown:
        print(unknown, file=sys.stderr)
        return 2
    if argv and argv[0] in VERBS:
        verb, args = argv[0], verb_parser(argv[0]).parse_args(argv[1:])
    else:
        verb, args = "build", build_parser().parse_args(argv)
    try:
        from .settings import check_environment
        check_environment()  # every SYNTHVLM_* variable, before any work
        code = COMMANDS[verb](args)
        sys.stdout.flush()  # a closed pipe shows here, inside the try, not at interpreter exit
        return code
    except (RecipeError, InputError, BuildError) as e:
        if debug:
            traceback.print_exc()
        print(error_line(e, getattr(args, "recipe", None)), file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`plan --json | head`): stop quietly, as Unix tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a tool its pipe closed
    except Exception as e:
        fault = fault_line(e)
        if fault is None:  # not an error an input or the environment can cause: a bug, shown whole
            raise
        if debug:
            traceback.print_exc()
        print(fault[1], file=sys.stderr)
        return fault[0]


def _unknown_command(argv: list[str]) -> str | None:
    """The error for a first word that is neither a verb nor a file, such as `valdiate` (a build takes a
    RECIPE file there; a word with a suffix or a folder in it is taken as one, and reported as such)."""
    if not argv or argv[0] in VERBS or argv[0].startswith("-"):
        return None
    word = argv[0]
    try:
        if os.path.lexists(word):
            return None
    except ValueError:  # a NUL or a lone surrogate: no file is named so
        pass
    if Path(word).suffix or "/" in word or os.sep in word:
        return None
    close = difflib.get_close_matches(word.lower(), VERBS, n=1)
    if close:
        return f"error: unknown command '{printable(word)}'; did you mean '{close[0]}'?"
    return (f"error: unknown command '{printable(word)}'; the commands are {', '.join(VERBS)},"
            " or give a RECIPE file to build")


def _json_text(data, **options) -> str:
    """JSON for a terminal or a pipe: non-ASCII letters as they are, but the characters text.py
    escapes (controls, bidirectional overrides, lone surrogates) as \\uXXXX escapes: the same JSON."""
    text = json.dumps(data, ensure_ascii=False, **options)
    return re.sub(r"[^\x20-\x7e\n]", lambda m: f"\\u{ord(m[0]):04x}" if has_unsafe(m[0]) else m[0], text)


# --- verbs --------------------------------------------------------------------------

def cmd_validate(args) -> int:
    from .execution.plan import fingerprint
    from .recipe import load_recipe
    problems, ok = [], []
    for path in args.recipes:
        try:
            ok.append(f"{printable(path)}: ok (fingerprint {fingerprint(load_recipe(path))[:12]})")
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
        from .settings import check_cache
        check_device(args.device or recipe.execution.device, "--device" if args.device else "execution.device")
        check_cache(recipe)
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
        print(f"error: {printable(args.new)}: the data changed but version was not bumped", file=sys.stderr)
    return code


def cmd_review(args) -> int:
    from .execution.review import make_review, to_json, to_markdown
    review = make_review(args.old, args.new)
    if args.format == "json":
        print(_json_text(to_json(review), indent=2))
    else:
        print(to_markdown(review), end="")
    for problems in review.problems.values():  # the located lines, as every verb reports bad input
        print("\n".join(str(p) for p in problems), file=sys.stderr)
    if review.exit_code == 4:
        print(f"error: {printable(args.new)}: the data changed but version was not bumped", file=sys.stderr)
    return review.exit_code


def cmd_preview(args) -> int:
    from .destination import FILE, FOLDER, check_output
    from .recipe import load_recipe
    from .settings import check_cache
    from .units import parse_int
    recipe = load_recipe(args.recipe)
    n = parse_int(args.captions, "--captions", minimum=1)
    out = Path(args.output) if args.output else Path("preview") / f"{recipe.name}-v{recipe.version}"
    check_output(out, "--output", FOLDER)
    from .execution.preview import PAGE, preview
    check_output(out / PAGE, "--output", FILE)  # replaced by a rename: never a FIFO, a link or a folder
    check_cache(recipe)
    page = preview(recipe, n, out, device=args.device)
    print(f"wrote {printable(page)}")
    return 0


def cmd_verify(args) -> int:
    from .units import parse_int
    sample = parse_int(args.sample, "--sample", minimum=1)
    seed = parse_int(args.seed, "--seed")
    from .release.verify import verify
    return verify(args.target, revision=args.revision, sample=sample, seed=seed, device=args.device)


def cmd_captions(args) -> int:
    """With `--output -` the captions are JSONL on standard output, and all else goes to standard error."""
    from .curation.captions import Funnel, caption_line, format_funnel, write_jsonl
    from .execution.runner import curate_recipe
    from .recipe import load_recipe
    from .settings import check_cache
    recipe = load_recipe(args.recipe)
    to_stdout = args.output == "-"
    if args.output and not to_stdout:
        _check_captions_output(Path(args.output), recipe)
    check_cache(recipe, captions_only=True)
    funnel = Funnel()
    survivors = curate_recipe(recipe, funnel)
    report, shown, kept = sys.stderr if to_stdout else sys.stdout, [], 0
    if to_stdout:
        for c in survivors:
            sys.stdout.write(_json_text(json.loads(caption_line(c))) + "\n")
            kept += 1
    elif args.output:  # streams to the file: memory stays flat however many captions there are
        try:
            kept = write_jsonl(survivors, Path(args.output))
        except UnsafeOutput as e:  # made since the check above: the flag still names it
            raise InputError("--output", e.message) from None
    else:
        shown = list(survivors)
        kept = len(shown)
    if args.json:
        out = {"funnel": funnel.to_dict()}
        if args.output:
            out["output"] = args.output
        else:
            out["captions"] = [{"id": c.id, "text": c.text, "source": c.source} for c in shown]
        print(_json_text(out, indent=2), file=report)
        return 0
    print(format_funnel(funnel.to_dict()), file=report)
    if args.output:
        print(f"wrote {kept} captions to {'standard output' if to_stdout else printable(args.output)}", file=report)
    else:
        for c in shown[:10]:
            print(f"  {printable(c.id)}\t{printable(c.text)}")
        if kept > 10:
            print(f"  ... {kept - 10} more (use --output FILE.jsonl, or --output - for standard output)")
    return 0


def _check_captions_output(out: Path, recipe) -> None:
    from .destination import FILE, check_output
    check_output(out, "--output", FILE)
    for i, src in enumerate(recipe.captions.sources):
        if out.exists() and Path(src.path).exists() and os.path.samefile(out, src.path) \
                or out.resolve() == Path(src.path).resolve():
            raise InputError("--output", f"{out} is the recipe's caption source captions.sources[{i}];"
                             " writing it would overwrite the input: choose another file")


def cmd_build(args) -> int:
    from .destination import FOLDER, check_output
    from .recipe import load_recipe
    from .settings import check_cache
    recipe = load_recipe(args.recipe)
    check_output(Path(args.output) if args.output else recipe.output_dir, "--output" if args.output else "output.dir",
                 FOLDER)
    check_cache(recipe)
    from .execution.runner import build
    result = build(recipe, output_dir=Path(args.output) if args.output else None,
                   executor=args.executor, device=args.device, overwrite=args.overwrite, push=args.push)
    if args.push:
        from .release.publish import publish
        publish(result.output_dir)
    return 0


def cmd_publish(args) -> int:
    from .release.publish import publish
    publish(Path(args.dir), repo_id=args.repo_id)
    return 0


def cmd_export(args) -> int:
    """One exporter (release/exporters/, or a plugin's), chosen by its flag, with its own options."""
    from .destination import NEW_FOLDER, check_output
    from .registry import registry
    exporters = registry().all("exporter")
    chosen = [cls for cls in exporters if getattr(args, cls.name.replace("-", "_"))]
    if len(chosen) != 1:
        raise InputError(f"--{(chosen or exporters)[0].name}",
                         "give one of " + " or ".join(f"--{cls.name} OUT" for cls in exporters))
    exporter = chosen[0]
    options = {}
    for cls in exporters:
        for opt in cls.options:
            value = getattr(args, opt.dest)
            if value is None or opt.dest in options:
                continue
            if opt not in exporter.options:
                raise InputError(opt.flag, f"applies to --{cls.name} only")
            options[opt.dest] = opt.parse(value, opt.flag)
    flag = f"--{exporter.name}"
    out = check_output(getattr(args, exporter.name.replace("-", "_")), flag, NEW_FOLDER, outside=Path(args.dir))
    exporter.export(Path(args.dir), out, **options)
    return 0


COMMANDS = {"build": cmd_build, "validate": cmd_validate, "plan": cmd_plan, "diff": cmd_diff, "review": cmd_review,
            "preview": cmd_preview, "verify": cmd_verify, "captions": cmd_captions, "publish": cmd_publish,
            "export": cmd_export}

if __name__ == "__main__":
    sys.exit(main())
