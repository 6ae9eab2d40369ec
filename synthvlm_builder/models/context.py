"""How many tokens of a caption each text encoder reads, and how wide a CLIP's embeddings are: read
from the models' config files (model_index.json, tokenizer_config.json, open_clip_config.json), never
from their weights.

A caption longer than an encoder's context is cut by that encoder without an error (diffusers only
warns, open_clip says nothing), while the dataset publishes it whole; `captions.filters.max_tokens`
must therefore fit every encoder that reads the caption: each of the generator's text encoders and
the scoring CLIP. Its `score.clip.prefix` takes tokens from the same context: a caption that fits
the context but not beside the prefix is scored cut, which the build and the card say (not refused).

`fetch=False` (validate) reads only what is cheap and local: builtins and local folders, a prefix
only through a folder's own tokenizer.json. `fetch=True` (the build's preflight) also reads Hub
configs (from the cache, else the Hub: small files), open_clip's registry of architectures, the
context a T5/Gemma encoder is given by its pipeline (`max_sequence_length`), and counts the prefix
with the CLIP's own open_clip tokenizer. What cannot be read is returned as unchecked, never guessed.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from ..text import printable
from . import builtin
from .preflight import BrokenModel, read_json
from .ref import BUILTIN, HUB, LOCAL, ModelRef

OPEN_CLIP_DEFAULT_CONTEXT = 77  # open_clip's DEFAULT_CONTEXT_LENGTH, when a config names none
_NO_LIMIT = 1_000_000  # transformers writes ~1e30 as the model_max_length of a tokenizer with no limit


@dataclass(frozen=True)
class Context:
    """One text encoder that reads the caption."""
    model: str        # the model as the recipe names it
    part: str         # which of its encoders: "text encoder", "text_encoder_2"...
    field: str        # the recipe field naming the model
    tokens: int       # its context, begin and end tokens included
    prefix: int = 0   # tokens of text put before each caption (score.clip.prefix)

    @property
    def encoder(self) -> str:
        return f"{printable(self.model)}'s {self.part}"

    @property
    def room(self) -> int:
        """The largest max_tokens whose captions this encoder reads whole."""
        return self.tokens - self.prefix

    def refusal(self, max_tokens: int) -> str:
        return (f"{max_tokens} is above the {self.tokens}-token context of {self.encoder} ({self.field}),"
                f" which would cut longer captions while the dataset keeps them whole; set it to {self.tokens} or"
                " less")

    def prefix_note(self, max_tokens: int) -> str:
        return (f"score.clip.prefix takes {self.prefix} of the {self.tokens} tokens of {self.encoder}: a caption of"
                f" more than {self.room} tokens (max_tokens is {max_tokens}) is scored on its first {self.room},"
                " as the SynthVLM authors' code scores it; its image is generated from the whole caption")


@dataclass(frozen=True)
class Contexts:
    known: tuple      # Context, for every encoder whose context could be read
    unchecked: tuple  # "<encoder> (<field>)" for those that could not (a Hub model at validate)

    def tightest(self):
        return min(self.known, key=lambda c: c.room, default=None)

    def over(self, max_tokens: int):
        """The encoder with the smallest context, if `max_tokens` does not fit it. A prefix that pushes a
        caption past the CLIP's context is not refused: the paper's recipe scores "A photo depicts " +
        a 77-token caption, cut to CLIP's 77 (see `prefix_cut`)."""
        worst = min(self.known, key=lambda c: c.tokens, default=None)
        return worst if worst is not None and max_tokens > worst.tokens else None

    def prefix_cut(self, max_tokens: int):
        """The encoder whose prefix leaves less room than `max_tokens` (which fits its context)."""
        worst = self.tightest()
        return worst if worst is not None and worst.room < max_tokens <= worst.tokens else None


def caption_contexts(gen_model: str, gen_revision: str | None, clips: list[tuple[str, str, str]],
                     base: Path | None = None, fetch: bool = False) -> Contexts:
    """Every encoder that reads the caption: the generator's (field generate.model) and each
    (field, open_clip model, prefix) in `clips`. BrokenModel, with `.field` set, for a config that
    exists but does not parse."""
    known, unchecked = [], []
    readers = [("generate.model", lambda: pipeline_contexts(gen_model, gen_revision, "generate.model", base, fetch))]
    readers += [(f, lambda f=f, m=m, p=p: clip_contexts(m, p, f, base, fetch)) for f, m, p in clips]
    for field, read in readers:
        try:
            found, missing = read()
        except BrokenModel as e:
            e.field = field
            raise
        known += found
        unchecked += missing
    return Contexts(tuple(known), tuple(unchecked))


def pipeline_contexts(model: str, revision: str | None, field: str, base: Path | None = None,
                      fetch: bool = False) -> tuple[list, list]:
    """(Context of each text encoder of a diffusers pipeline, the encoders not checked)."""
    ref = ModelRef.parse(model, base=base)
    name = printable(model)
    if ref.kind == BUILTIN and ref.name not in builtin.SHIPPED:
        keys = builtin.TOKENIZERS.get(ref.name, ())
        return [Context(model, _part(k), field, builtin.TEXT_CONTEXT) for k in keys], []
    root = builtin.builtin_dir(ref.name) if ref.kind == BUILTIN else ref.path(base) if ref.kind == LOCAL else None
    index_file = _config_file(root, ref, "model_index.json", revision, fetch)
    if index_file is None:
        return [], [f"{name}'s text encoders ({field})"]
    index = read_json(index_file, f"the model index of {name}")
    found, missing = [], []
    for key, spec in sorted(index.items()):
        if not (key.startswith("tokenizer") and isinstance(spec, list) and len(spec) == 2 and spec[1]):
            continue
        encoder = f"{name}'s {_part(key)}"
        config = _config_file(root, ref, f"{key}/tokenizer_config.json", revision, fetch)
        limit = read_json(config, f"the {key} config of {name}").get("model_max_length") if config else None
        if "CLIP" not in str(spec[1]):  # T5, Gemma...: the pipeline cuts at its own max_sequence_length
            limit = (_max_sequence_length(index.get("_class_name")) or limit) if fetch else None
        if isinstance(limit, int) and 0 < limit < _NO_LIMIT:
            found.append(Context(model, _part(key), field, limit))
        elif limit is None:
            missing.append(f"{encoder} ({field})")
    return found, missing


def clip_contexts(model: str, prefix: str, field: str, base: Path | None = None,
                  fetch: bool = False) -> tuple[list, list]:
    """([Context] of an open_clip model's text tower, prefix counted, or [] and why not)."""
    name, encoder = printable(model), f"{printable(model)}'s text encoder"
    cfg = clip_model_cfg(model, base, fetch)
    if cfg is None:
        return [], [f"{encoder} ({field})"]
    text_cfg = cfg.get("text_cfg") if isinstance(cfg.get("text_cfg"), dict) else {}
    tokens = text_cfg.get("context_length", OPEN_CLIP_DEFAULT_CONTEXT)
    if not isinstance(tokens, int) or tokens <= 0:
        raise BrokenModel(f"CLIP model {name}: its config's text_cfg.context_length is {tokens!r}, not a count")
    used = prefix_tokens(model, prefix, text_cfg, base, fetch)
    context = Context(model, "text encoder", field, tokens, used or 0)
    # The prefix unknown (validate, open_clip's own BPE): the context alone is still a bound.
    return [context], [] if used is not None else [f"the tokens of score.clip.prefix in {encoder} ({field})"]


def clip_model_cfg(model: str, base: Path | None = None, fetch: bool = False) -> dict | None:
    """An open_clip model's config (embed_dim, vision_cfg, text_cfg), or None when not at hand."""
    ref = ModelRef.parse(model, clip=True)
    if ref.kind == BUILTIN:
        return builtin.clip_model_cfg(ref.name)
    if ref.kind in (LOCAL, HUB):
        path = _config_file(ref.path(base) if ref.kind == LOCAL else None, ref, "open_clip_config.json", None, fetch)
        if path is None:
            return None
        cfg = read_json(path, f"the config of CLIP model {printable(model)}").get("model_cfg")
        if not isinstance(cfg, dict):
            raise BrokenModel(f"CLIP model {printable(model)}: {path} has no model_cfg mapping")
        return cfg
    if not fetch:
        return None
    import open_clip
    return open_clip.get_model_config(ref.name.replace("/", "-"))  # None for an unknown architecture


def prefix_tokens(model: str, prefix: str, text_cfg: dict, base: Path | None = None,
                  fetch: bool = False) -> int | None:
    """How many tokens `prefix` takes in the CLIP's tokenizer (begin/end tokens not counted)."""
    if not prefix:
        return 0
    ref = ModelRef.parse(model, clip=True)
    folder = builtin.builtin_dir(ref.name) if ref.kind == BUILTIN and ref.name in builtin.SHIPPED else \
        ref.path(base) if ref.kind == LOCAL else None
    if folder is not None and text_cfg.get("hf_tokenizer_name") and (folder / "tokenizer.json").is_file():
        # open_clip reads a local folder's own tokenizer: the `tokenizers` library counts alike, cheaply.
        from tokenizers import Tokenizer
        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        tokenizer.no_padding()  # a saved tokenizer may pad to its context: count the prefix's own tokens
        tokenizer.no_truncation()
        return len(tokenizer.encode(prefix, add_special_tokens=False).ids)
    if not fetch:
        return None
    import open_clip

    from .loading import open_clip_name
    try:
        tokenizer = _open_clip_tokenizer(open_clip_name(model, None)[0])
    except Exception:  # a Hub tokenizer that cannot be fetched now: loading will say why
        return None
    if isinstance(tokenizer, open_clip.tokenizer.SimpleTokenizer):
        return len(tokenizer.encode(prefix))
    hf = getattr(tokenizer, "tokenizer", None)  # HFTokenizer, SigLipTokenizer: a transformers tokenizer
    return len(hf(prefix, add_special_tokens=False)["input_ids"]) if callable(hf) else None


@functools.lru_cache(maxsize=8)
def _open_clip_tokenizer(name: str):
    """open_clip's tokenizer for `name`, made once per process (its BPE takes ~0.2 s to read)."""
    import open_clip
    return open_clip.get_tokenizer(name)


def _part(tokenizer_key: str) -> str:
    return "text encoder" if tokenizer_key == "tokenizer" else tokenizer_key.replace("tokenizer", "text_encoder")


def _config_file(root: Path | None, ref: ModelRef, filename: str, revision: str | None, fetch: bool) -> Path | None:
    """A config file of a local or builtin model (root), or of a Hub repo: cached, else fetched."""
    if root is not None:
        return root / filename if (root / filename).is_file() else None
    if ref.kind != HUB or not fetch:
        return None
    from huggingface_hub import hf_hub_download, is_offline_mode, try_to_load_from_cache
    cached = try_to_load_from_cache(ref.name, filename, revision=revision)
    if isinstance(cached, str):
        return Path(cached)
    if is_offline_mode():
        return None
    try:
        return Path(hf_hub_download(ref.name, filename, revision=revision))
    except Exception:  # not in this repo, or the Hub not reachable now: reported as unchecked
        return None


def _max_sequence_length(pipeline_class) -> int | None:
    """The default `max_sequence_length` a diffusers pipeline gives its T5/Gemma encoder."""
    import diffusers

    from .families import call_parameters
    cls = getattr(diffusers, pipeline_class, None) if isinstance(pipeline_class, str) else None
    param = call_parameters(cls).get("max_sequence_length") if cls is not None else None
    return param.default if param is not None and isinstance(param.default, int) else None
