"""Issue 21, the CLI boundary: what the CLI writes where (items 3, 11), what it shows of data (10), how it
reads numbers, variables and verbs (12, 16, 18), verify of a malformed lock (14), and that errors which real
inputs cause are one line, never a traceback (19).

Everything here fails before any image is generated, so nothing is built but the session's quickstart
(shared with test_verify.py and test_webdataset.py), copied where a test changes it.
"""
import json
import os
import shutil
import socket
import stat

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from buildutil import cli, write_recipe
from synthvlm_builder import layout

UNSAFE = ("\x1b", "\x07", "\x9b", "\r", "\u202e", "\x00")  # ESC, BEL, CSI, CR, a bidi override, NUL


def one_line_error(proc, code: int, start: str) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(start), proc.stderr
    return proc.stderr


def copy_build(src, dst):
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(layout.WORK))
    return dst


@pytest.fixture
def recipe(tmp_path):
    return write_recipe(tmp_path / "r", n_captions=4)


# --- item 3: the atomic writer never replaces a device, a FIFO, a socket or a link --------------------------

def _fifo(p):
    os.mkfifo(p)


def _char_device(p):
    try:  # the same node as /dev/null, in tmp_path: safe to lose if the writer were wrong
        os.mknod(p, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("no permission to make a device node here")


def _socket(p):
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(p))
    s.close()


def _link_to_dev_null(p):
    os.symlink("/dev/null", p)


@pytest.mark.parametrize("make, kind", [(_fifo, "a FIFO"), (_char_device, "a character device"),
                                        (_socket, "a socket"), (_link_to_dev_null, "a character device")])
def test_captions_output_never_replaces_a_special_file(recipe, tmp_path, make, kind):
    target = tmp_path / "special"
    make(target)
    before = os.lstat(target)
    err = one_line_error(cli("captions", recipe, "--output", target, check=False), 2, "error: --output: ")
    assert f"{target} is {kind}" in err and "not a regular file" in err and "--output -" in err
    after = os.lstat(target)
    assert (after.st_mode, after.st_ino) == (before.st_mode, before.st_ino)  # the very node, untouched
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r", "special"]  # no temp file left behind


def test_captions_output_refuses_a_link_to_a_file_and_a_pipe(recipe, tmp_path):
    (tmp_path / "real.jsonl").write_text("mine\n")
    (tmp_path / "link.jsonl").symlink_to("real.jsonl")
    err = one_line_error(cli("captions", recipe, "--output", tmp_path / "link.jsonl", check=False), 2,
                         "error: --output: ")
    assert "is a symbolic link (to real.jsonl)" in err
    assert (tmp_path / "link.jsonl").is_symlink() and (tmp_path / "real.jsonl").read_text() == "mine\n"
    read, write = os.pipe()  # what bash's `--output >(cmd)` passes: /dev/fd/N, a pipe
    try:
        err = one_line_error(cli("captions", recipe, "--output", f"/dev/fd/{write}", check=False), 2,
                             "error: --output: ")
        assert "is a FIFO" in err and "give --output - to write to standard output" in err
    finally:
        os.close(read)
        os.close(write)


def test_atomic_writer_refuses_what_appeared_after_the_checks(tmp_path):
    from synthvlm_builder.atomic import atomic_write
    from synthvlm_builder.errors import UnsafeOutput
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(UnsafeOutput, match="is a FIFO"):
        atomic_write(tmp_path / "fifo", "x")
    assert stat.S_ISFIFO(os.lstat(tmp_path / "fifo").st_mode) and os.listdir(tmp_path) == ["fifo"]


def test_captions_output_dash_is_jsonl_on_stdout(recipe, tmp_path):
    proc = cli("captions", recipe, "--output", "-", cwd=tmp_path)
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [c["id"] for c in lines] == [f"caps:c{i:03d}" for i in range(4)]
    assert "kept: 4 of 4" in proc.stderr and "wrote 4 captions to standard output" in proc.stderr
    as_json = cli("captions", recipe, "--output", "-", "--json", cwd=tmp_path)
    assert as_json.stdout == proc.stdout and json.loads(as_json.stderr)["funnel"]["kept"] == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]  # no file named "-"


# --- item 10: control characters from data are escaped wherever they are printed --------------------------

def test_escape_sequences_in_ids_and_captions_are_shown_escaped(tmp_path):
    recipe = write_recipe(tmp_path / "r", n_captions=1)
    evil = [{"id": "\x1b]0;owned\x07", "caption": "A red ball\x1b[2J on a \x9b1Agreen\r table \u202e."},
            {"id": "b\u202eid", "caption": "A red ball\x1b[2J on a \x9b1Agreen\r table \u202e."}]  # a dedupe example
    (tmp_path / "r" / "caps.jsonl").write_text("".join(json.dumps(e) + "\n" for e in evil))
    shown = cli("captions", recipe)
    for ch in UNSAFE:
        assert ch not in shown.stdout + shown.stderr, repr(ch)
    assert "caps:\\x1b]0;owned\\x07\tA red ball\\x1b[2J on a \\x9b1Agreen\\r table \\u202e." in shown.stdout
    assert "caps:b\\u202eid" in shown.stdout.split("dedupe:")[1]  # the funnel's example of what dedupe dropped
    as_json, as_jsonl = cli("captions", recipe, "--json").stdout, cli("captions", recipe, "--output", "-").stdout
    assert not any(ch in as_json + as_jsonl for ch in UNSAFE)
    assert json.loads(as_json)["captions"][0]["text"] == evil[0]["caption"]  # escaped: the same JSON value
    assert json.loads(as_jsonl.splitlines()[0])["id"] == "caps:" + evil[0]["id"]


def test_verify_rows_show_ids_escaped(quickstart, tmp_path):
    build = copy_build(quickstart[0], tmp_path / "b")
    (data,) = (build / "data").glob("train-*.parquet")
    table = pq.read_table(data)
    ids = [f"\x1b]0;owned\x07{i}\u202e" for i in table.column("id").to_pylist()]
    pq.write_table(table.set_column(table.schema.get_field_index("id"), "id", pa.array(ids)), data)
    proc = cli("verify", build, "--sample", "3", check=False)
    assert proc.returncode == 1 and "id names no candidate of the curated captions" in proc.stdout
    assert not any(ch in proc.stdout + proc.stderr for ch in UNSAFE)
    assert "\\x1b]0;owned\\x07" in proc.stdout and "\\u202e" in proc.stderr


# --- item 11: every output location is checked before any work, naming the flag ---------------------------

@pytest.fixture
def places(tmp_path):
    (tmp_path / "file").write_text("mine")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    return {"under a file": (tmp_path / "file" / "sub", "is a regular file, not a folder"),
            "a dangling link": (tmp_path / "dangling", "is a symbolic link to"),
            "unwritable": ("/proc/self/sub", "no permission to write in /proc/self")}


@pytest.mark.parametrize("where", ["under a file", "a dangling link", "unwritable"])
@pytest.mark.parametrize("verb, flag", [("build", "--output"), ("preview", "--output"), ("captions", "--output"),
                                        ("export", "--llava"), ("export", "--webdataset")])
def test_bad_output_locations_are_refused_before_any_work(quickstart, recipe, tmp_path, places, where, verb, flag):
    path, words = places[where]
    if verb == "captions" and where == "under a file":
        path = tmp_path / "file" / "x.jsonl"
    args = {"build": [recipe], "export": ["export", quickstart[0]]}.get(verb, [verb, recipe])
    before = sorted(os.listdir(tmp_path))
    err = one_line_error(cli(*args, flag, path, check=False), 2, f"error: {flag}: ")
    assert words in err
    assert sorted(os.listdir(tmp_path)) == before and (tmp_path / "file").read_text() == "mine"


def test_output_dir_from_the_recipe_is_located(tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "file").write_text("mine")
    recipe = write_recipe(tmp_path / "r", n_captions=4, extra="output:\n  dir: file/build\n")
    err = one_line_error(cli(recipe, check=False), 2, f"{recipe}:")
    assert ": output.dir: " in err and "is a regular file, not a folder" in err
    assert (tmp_path / "r" / "file").read_text() == "mine"


def test_export_inside_the_build_dir_or_over_the_cwd_is_refused(quickstart, tmp_path):
    build = copy_build(quickstart[0], tmp_path / "b")
    before = sorted(p.name for p in build.iterdir())
    err = one_line_error(cli("export", ".", "--llava", ".", cwd=build, check=False), 2, "error: --llava: ")
    assert "is the build dir itself; export to a folder outside it" in err
    err = one_line_error(cli("export", build, "--webdataset", build / "wds", check=False), 2, "error: --webdataset: ")
    assert "is inside the build dir" in err
    assert sorted(p.name for p in build.iterdir()) == before
    (tmp_path / "empty").mkdir()
    err = one_line_error(cli("export", build, "--llava", ".", cwd=tmp_path / "empty", check=False), 2,
                         "error: --llava: ")
    assert "is the current directory" in err and not os.listdir(tmp_path / "empty")


def test_export_through_a_link_to_an_empty_dir_lands_where_it_points(quickstart, tmp_path):
    (tmp_path / "disk").mkdir()
    (tmp_path / "llava").symlink_to(tmp_path / "disk")
    proc = cli("export", quickstart[0], "--llava", tmp_path / "llava")
    assert "exported" in proc.stdout and (tmp_path / "llava").is_symlink()
    records = json.loads((tmp_path / "disk" / "synthvlm.json").read_text())
    assert records and all((tmp_path / "disk" / r["image"]).is_file() for r in records)


# --- item 12: numbers on the command line are ASCII digits -------------------------------------------------

@pytest.mark.parametrize("args, flag", [
    (["export", "{b}", "--webdataset", "{t}/w", "--shard-size", "²"], "--shard-size"),
    (["export", "{b}", "--webdataset", "{t}/w", "--shard-size", "٣"], "--shard-size"),
    (["export", "{b}", "--webdataset", "{t}/w", "--shard-bytes", "²GB"], "--shard-bytes"),
    (["verify", "{b}", "--sample", "²"], "--sample"),
    (["verify", "{b}", "--seed", "-1"], "--seed"),
    (["verify", "{b}", "--sample", "9" * 5000], "--sample"),
    (["preview", "{r}", "--captions", "٣", "--output", "{t}/p"], "--captions"),
])
def test_numbers_are_ascii_digits(quickstart, recipe, tmp_path, args, flag):
    argv = [a.format(b=quickstart[0], t=tmp_path, r=recipe) for a in args]
    err = one_line_error(cli(*argv, check=False), 2, f"error: {flag}: ")
    assert "not a" in err and sorted(os.listdir(tmp_path)) == ["r"]


# --- item 14: verify of a malformed lock -----------------------------------------------------------------

def _set(*path, value=None, drop=False):
    def change(lock):
        for key in path[:-1]:
            lock = lock[key]
        lock.pop(path[-1]) if drop else lock.__setitem__(path[-1], value)
    return change


@pytest.mark.parametrize("change, field, words", [
    (_set("build", "batch_size", value=0), "build.batch_size", "must be at least 1, got 0"),
    (_set("build", "shard_size", value=-16), "build.shard_size", "must be at least 1, got -16"),
    (_set("build", "batch_size", value=4.0), "build.batch_size", "must be a whole number, got 4.0"),
    (_set("build", "shard_batch_sizes", value=[16]), "build.shard_batch_sizes", "lists 1 shard(s)"),
    (_set("captions", drop=True), "captions", "is missing"),
    (_set("inputs", value=["generate.model"]), "inputs", "must be a JSON object"),
    (_set("recipe", "name", drop=True), "recipe.name", "is missing"),
    (_set("fingerprint", value=5), "fingerprint", "must be a string"),
])
def test_verify_refuses_a_malformed_lock(quickstart, tmp_path, change, field, words):
    build = copy_build(quickstart[0], tmp_path / "b")
    lock_path = build / "recipe.lock.json"
    lock = json.loads(lock_path.read_text())
    change(lock)
    lock_path.write_text(json.dumps(lock))
    err = one_line_error(cli("verify", build, "--sample", "38", check=False), 2, f"{lock_path}: ")
    assert words in err and err.rstrip().endswith(f"({field})")


def test_verify_refuses_a_lock_that_is_not_json(quickstart, tmp_path):
    build = copy_build(quickstart[0], tmp_path / "b")
    (build / "recipe.lock.json").write_text('{"fingerprint": ')
    err = one_line_error(cli("verify", build, check=False), 2, f"{build / 'recipe.lock.json'}: ")
    assert "not JSON" in err


# --- item 16: every environment variable is checked at start; the cache where a recipe needs it ------------

@pytest.mark.parametrize("name, value", [
    ("SYNTHVLM_MAX_DATA_FILE_BYTES", "lots"), ("SYNTHVLM_MAX_DATA_FILE_BYTES", "²MB"),
    ("SYNTHVLM_PUBLISH_RETRIES", "five"), ("SYNTHVLM_PUBLISH_RETRY_WAIT", "soon"),
    ("SYNTHVLM_PUBLISH_FILES_PER_COMMIT", "0"), ("SYNTHVLM_LLM_RETRY_WAIT", "-1"),
    ("SYNTHVLM_TEST_SIGNAL", "KILL@x"), ("SYNTHVLM_TEST_OOM_ABOVE", "many"),
])
def test_a_bad_variable_stops_the_build_before_any_work(recipe, tmp_path, monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    one_line_error(cli(recipe, "--output", tmp_path / "out", check=False), 2, f"error: {name}: ")
    assert not (tmp_path / "out").exists()


def test_variables_take_units(recipe, monkeypatch):
    from synthvlm_builder.release.dataset import max_file_bytes
    from synthvlm_builder.settings import setting
    for value, expected in (("500MB", 500_000_000), ("1GiB", 2**30), (" 123 ", 123)):
        monkeypatch.setenv("SYNTHVLM_MAX_DATA_FILE_BYTES", value)
        cli("validate", recipe)
        assert max_file_bytes() == expected
    monkeypatch.setenv("SYNTHVLM_PUBLISH_RETRY_WAIT", "250ms")
    assert setting("SYNTHVLM_PUBLISH_RETRY_WAIT") == 0.25


def test_an_unusable_cache_is_refused_where_the_recipe_needs_it(recipe, tmp_path, monkeypatch):
    (tmp_path / "afile").write_text("x")
    monkeypatch.setenv("SYNTHVLM_CACHE", str(tmp_path / "afile"))
    err = one_line_error(cli(recipe, "--output", tmp_path / "out", check=False), 2, "error: SYNTHVLM_CACHE: ")
    assert "is a regular file, not a folder" in err and not (tmp_path / "out").exists()
    assert cli("captions", recipe).returncode == 0  # no model step: the caption stage needs no cache
    judged = recipe.read_text().replace("      id_column: id\n", "      id_column: id\n  filters:\n    llm_judge:\n"
                                        "      base_url: http://127.0.0.1:9/v1\n      model: m\n")
    recipe.write_text(judged)
    one_line_error(cli("captions", recipe, check=False), 2, "error: SYNTHVLM_CACHE: ")
    monkeypatch.delenv("SYNTHVLM_CACHE")
    for home, words in ((tmp_path / "afile", "is not a folder"), ("relative/home", "is not an absolute path"),
                        (tmp_path / "gone", "is missing")):
        monkeypatch.setenv("HOME", str(home))
        err = one_line_error(cli(recipe, "--output", tmp_path / "out", check=False), 2, "error: HOME: ")
        assert words in err and "SYNTHVLM_CACHE" in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "gone").exists()


# --- item 18: a misspelled verb -----------------------------------------------------------------------------

def test_a_misspelled_or_unknown_verb_says_so(recipe, tmp_path):
    for word, verb in (("valdiate", "validate"), ("captoins", "captions"), ("Verify", "verify")):
        err = one_line_error(cli(word, recipe, check=False), 2, "error: ")
        assert err == f"error: unknown command '{word}'; did you mean '{verb}'?\n"
    err = one_line_error(cli("bogusverb", check=False), 2, "error: unknown command 'bogusverb'; the commands are")
    assert "or give a RECIPE file" in err
    assert "cannot read recipe" in cli("nope.yaml", check=False, cwd=tmp_path).stderr  # a file name stays one
    shutil.copy(recipe, tmp_path / "r" / "valdiate")  # a file by that name is a recipe to build ...
    (tmp_path / "file").write_text("x")                # ... here refused at once: its --output is under a file
    proc = cli("valdiate", "--output", tmp_path / "file" / "x", cwd=tmp_path / "r", check=False)
    assert proc.stderr.startswith("error: --output: ") and "unknown command" not in proc.stderr


# --- item 19: errors that real inputs cause are one line at the boundary (traceback with --debug) ----------

def test_a_page_that_is_a_fifo_or_a_folder_is_refused_before_any_work(recipe, tmp_path):
    (tmp_path / "site").mkdir()
    os.mkfifo(tmp_path / "site" / "index.html")  # reading it to see whether it is a preview page would block
    err = one_line_error(cli("preview", recipe, "--output", tmp_path / "site", check=False), 2, "error: --output: ")
    assert "index.html is a FIFO" in err and stat.S_ISFIFO(os.lstat(tmp_path / "site" / "index.html").st_mode)
    os.unlink(tmp_path / "site" / "index.html")
    (tmp_path / "site" / "index.html").mkdir()
    err = one_line_error(cli("preview", recipe, "--output", tmp_path / "site", check=False), 2, "error: --output: ")
    assert "index.html is a folder, not a file" in err


def test_an_os_error_names_its_file(recipe, tmp_path):
    # every name is short enough, but the whole path is longer than the system's PATH_MAX: only making it fails
    out = tmp_path.joinpath(*["d" * 200] * 24, "captions.jsonl")
    err = one_line_error(cli("captions", recipe, "--output", out, check=False), 2, f"error: {tmp_path}")
    assert err.rstrip().endswith(": File name too long")
    debug = cli("captions", recipe, "--output", out, "--debug", check=False)
    assert debug.returncode == 2 and "Traceback" in debug.stderr and debug.stderr.endswith(err)
    assert sorted(os.listdir(tmp_path)) == ["r"]


def test_a_value_error_and_a_unicode_error_are_one_line(recipe, tmp_path):
    caps = tmp_path / "r" / "caps.jsonl"
    caps.write_text('{"id": %s, "caption": "A red ball."}\n' % ("9" * 5000))  # past Python's int limit
    proc = cli("captions", recipe, "--output", tmp_path / "o.jsonl", check=False)
    assert proc.returncode in (1, 2) and "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
    caps.write_text('{"id": "a\\ud800", "caption": "A red ball \\ud800."}\n')  # a lone surrogate
    proc = cli("captions", recipe, "--output", tmp_path / "o.jsonl", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
    assert not (tmp_path / "o.jsonl").exists() and sorted(os.listdir(tmp_path)) == ["r"]


def test_a_model_that_cannot_be_loaded_is_one_line(recipe, tmp_path):
    from synthvlm_builder.models.builtin import builtin_dir
    shutil.copytree(builtin_dir("tiny-sd"), tmp_path / "sd")
    shutil.rmtree(tmp_path / "sd" / "unet")
    recipe.write_text(recipe.read_text().replace("builtin:tiny-sd", str(tmp_path / "sd")))
    proc = cli(recipe, "--output", tmp_path / "out", check=False)
    assert proc.returncode in (1, 2) and "Traceback" not in proc.stderr, proc.stderr
    assert str(tmp_path / "sd") in proc.stderr.strip().splitlines()[-1]  # names the model
    assert not (tmp_path / "out" / "data").exists()
