"""Runs several benchmark scripts, one after another, in this one fresh interpreter (tests/test_benchmark_smoke.py).

    python tests/benchrunner.py SPEC.json RESULT.json

SPEC: [{"name": NAME, "argv": [...], "cwd": DIR, "stdout": FILE, "stderr": FILE}, ...]. Each script runs as
`python benchmarks/NAME.py ARGV` does (run as __main__, its own sys.argv, in its own empty cwd, its output on
file descriptors 1 and 2, so its children's too), but the interpreter start and the imports of torch,
diffusers and open_clip are paid once for all of them instead of once each. RESULT: {NAME: exit code}, a
script that raised counting 1 (its traceback on its stderr file).
"""
import json
import os
import runpy
import sys
import traceback
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def run_one(spec: dict) -> int:
    saved_argv, saved_cwd, saved_path = sys.argv, os.getcwd(), list(sys.path)
    saved_fds = os.dup(1), os.dup(2)
    sys.stdout.flush(), sys.stderr.flush()
    with open(spec["stdout"], "wb") as out, open(spec["stderr"], "wb") as err:
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        try:
            script = BENCHMARKS / f"{spec['name']}.py"
            sys.argv = [str(script), *spec["argv"]]
            sys.path[0] = str(script.parent)  # as `python benchmarks/NAME.py` starts (`import _common`)
            os.chdir(spec["cwd"])
            try:
                runpy.run_path(str(script), run_name="__main__")
                code = 0
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
                if not isinstance(e.code, (int, type(None))):
                    print(e.code, file=sys.stderr)
            except BaseException:
                traceback.print_exc()
                code = 1
        finally:
            sys.stdout.flush(), sys.stderr.flush()
            os.dup2(saved_fds[0], 1)
            os.dup2(saved_fds[1], 2)
            os.close(saved_fds[0]), os.close(saved_fds[1])
            sys.argv, sys.path[:] = saved_argv, saved_path
            os.chdir(saved_cwd)
    return code


def main() -> None:
    specs = json.loads(Path(sys.argv[1]).read_text())
    # Each benchmark points HF_HOME and XDG_CACHE_HOME into its own temp dir (benchmarks/_common.py
    # bench_tmpdir) before it imports the Hub libraries, which read them once, at import: here the first
    # import would keep the first benchmark's (deleted) dir for all. Import them now, with dirs of the runner's.
    for var, sub in (("HF_HOME", "hf-home"), ("XDG_CACHE_HOME", "xdg-cache")):
        os.environ[var] = str(Path.cwd() / sub)
    import datasets  # noqa: F401
    import huggingface_hub  # noqa: F401
    codes = {}
    for spec in specs:
        codes[spec["name"]] = run_one(spec)
        Path(sys.argv[2]).write_text(json.dumps(codes))  # after each: a hang later still reports these


if __name__ == "__main__":
    main()
