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
from .errors import BuildError, InputError, RecipeError, error_line, fault_line
from .reporter import Reporter, use
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
        with use(Reporter()):  # messages and progress bars to standard error (as it is when written)
            code = COMMANDS[verb](args)
        sys.stdout.flush()  # a closed pipe shows here, inside the try, not at interpreter exit
        return code
    except (RecipeError, InputError, BuildError) as e:
        if debug:
            traceback.print_exc()
        print(error_line(_located(e, getattr(args, "recipe", None))), file=sys.stderr)
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


def _located(e: Exception, recipe_file: str | None) -> Exception:
    """An InputError about a field of the recipe file the verb read, located in that file (when the
    recipe changed since it was read and no longer loads, the field alone still says where)."""
    if recipe_file and isinstance(e, InputError) and e.unlocated:
        from .recipe import load_recipe, locate_error
        try:
            locate_error(e, load_recipe(recipe_file))
        except RecipeError:
            pass
    return e


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
    from . import Recipe
    from .execution.plan import fingerprint
    problems, ok = [], []
    for path in args.recipes:
        try:
            ok.append(f"{printable(path)}: ok (fingerprint {fingerprint(Recipe.from_yaml(path))[:12]})")
        except RecipeError as e:
            problems.extend(e.problems)
    if ok:
        print("\n".join(ok))
    if problems:
        raise RecipeError(problems)
    return 0


def cmd_plan(args) -> int:
    from . import api
    from .units import parse_int
    nodes = None if args.nodes is None else parse_int(args.nodes, "--nodes", minimum=1)
    result = api.plan(args.recipe, measure=args.measure, device=args.device, nodes=nodes)
    print(json.dumps(result.to_json(), indent=2) if args.json else result.summary())
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
    from .execution.preflight import check_cache
    from .recipe import load_recipe
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
    from . import api
    from .units import parse_int
    sample = parse_int(args.sample, "--sample", minimum=1)
    seed = parse_int(args.seed, "--seed")
    result = api.verify(args.target, revision=args.revision, sample=sample, seed=seed, device=args.device)
    print(result.summary())
    if not result.ok:
        print(result.error(), file=sys.stderr)
        return 1
    return 0


def cmd_rebuild(args) -> int:
    from . import api
    result = api.rebuild(args.target, revision=args.revision, output_dir=args.output or None, device=args.device,
                         overwrite=args.overwrite)
    if result.action == "built":
        print(result.summary(), file=sys.stderr)
    return 0


def cmd_captions(args) -> int:
    """With `--output -` the captions are JSONL on standard output, and all else goes to standard error."""
    from . import api
    from .curation.captions import caption_line
    to_stdout = args.output == "-"
    report = sys.stderr if to_stdout else sys.stdout
    if to_stdout:
        stream = api.iter_captions(args.recipe)
        count = 0
        for c in stream:
            sys.stdout.write(_json_text(json.loads(caption_line(c))) + "\n")
            count += 1
        result = api.CaptionsResult(stream.funnel, None, count, None)
    else:  # to a file, streamed (memory stays flat however many captions there are), or kept to show
        result = api.captions(args.recipe, output=args.output or None)
    if args.json:
        out = {"funnel": result.funnel}
        if args.output:
            out["output"] = args.output
        else:
            out["captions"] = [{"id": c.id, "text": c.text, "source": c.source} for c in result.captions]
        print(_json_text(out, indent=2), file=report)
        return 0
    print(result.summary(), file=report)
    if args.output:
        where = "standard output" if to_stdout else printable(args.output)
        print(f"wrote {result.count} captions to {where}", file=report)
    else:
        for c in result.captions[:10]:
            print(f"  {printable(c.id)}\t{printable(c.text)}")
        if result.count > 10:
            print(f"  ... {result.count - 10} more (use --output FILE.jsonl, or --output - for standard output)")
    return 0


def cmd_build(args) -> int:
    from . import api
    result = api.build(args.recipe, output_dir=args.output or None, executor=args.executor, device=args.device,
                       overwrite=args.overwrite, push=args.push)
    if result.action == "built":
        print(result.summary(), file=sys.stderr)
    if result.published:
        print(result.published.summary())
    return 0


def cmd_publish(args) -> int:
    from . import api
    print(api.publish(args.dir, repo_id=args.repo_id).summary())
    return 0


def cmd_export(args) -> int:
    """One --NAME OUT (an exporter: release/exporters/, or a plugin's) and the option flags it takes."""
    from . import api
    from .registry import registry
    exporters = registry().all("exporter")
    chosen = [cls for cls in exporters if getattr(args, cls.name.replace("-", "_"))]
    if len(chosen) != 1:
        raise InputError(f"--{(chosen or exporters)[0].name}",
                         "give one of " + " or ".join(f"--{cls.name} OUT" for cls in exporters))
    exporter, options = chosen[0], {}
    for cls in exporters:
        for opt in cls.options:
            value = getattr(args, opt.dest)
            if value is None or opt.dest in options:
                continue
            if opt not in exporter.options:
                takers = [f"--{c.name}" for c in exporters if opt in c.options]
                raise InputError(opt.flag, f"applies to {' or '.join(takers)} only")
            options[opt.dest] = value
    try:
        result = api.export(args.dir, exporter.name, getattr(args, exporter.name.replace("-", "_")), **options)
    except InputError as e:  # the API names an option by its keyword; here it is a flag
        flags = {opt.dest: opt.flag for opt in exporter.options}
        if e.field in flags:
            raise InputError(flags[e.field], e.message.replace(e.field, flags[e.field])) from None
        raise
    print(result.summary)
    return 0


def cmd_compare(args) -> int:
    from . import api
    from .units import parse_int
    result = api.compare(args.old, args.new, captions=parse_int(args.captions, "--captions", minimum=1),
                         output=args.output, grid=parse_int(args.grid, "--grid"), device=args.device,
                         offline=args.offline)
    if args.format == "json":
        print(_json_text(result.to_json(), indent=2))
    else:
        print(result.markdown(), end="")
    print(f"wrote {printable(result.page)}", file=sys.stderr)
    if result.exit_code == 4:
        print(f"error: {printable(args.new)}: the data changed but version was not bumped", file=sys.stderr)
    return result.exit_code


def cmd_evaluate(args) -> int:
    from . import api
    from .units import parse_int
    numbers = {name: parse_int(getattr(args, name), f"--{name.replace('_', '-')}", minimum=least)
               for name, least in (("seeds", 1), ("steps", 1), ("batch_size", 2), ("image_size", 8), ("eval_size", 2))}
    threads = None if args.threads is None else parse_int(args.threads, "--threads", minimum=1)
    output = None
    if args.output:
        from .destination import FILE, check_output
        output = check_output(args.output, "--output", FILE)
    result = api.evaluate(args.target, eval=args.eval, device=args.device, threads=threads, card=args.card, **numbers)
    text = result.summary() + "\n"
    if output is not None:
        from .atomic import atomic_write
        atomic_write(output, text)
    print(text, end="")
    if result.card is not None:
        print(f"added the proxy evaluation to {printable(result.card)}", file=sys.stderr)
    return 0


COMMANDS = {"build": cmd_build, "validate": cmd_validate, "plan": cmd_plan, "diff": cmd_diff, "review": cmd_review,
            "preview": cmd_preview, "verify": cmd_verify, "rebuild": cmd_rebuild, "captions": cmd_captions,
            "publish": cmd_publish, "export": cmd_export, "compare": cmd_compare, "evaluate": cmd_evaluate}

if __name__ == "__main__":
    sys.exit(main())
