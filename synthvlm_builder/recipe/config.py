"""The typed, frozen form of a recipe.

`recipe.py` turns YAML into these objects after schema validation, with the
schema's defaults filled in, presets applied and relative paths resolved.
Every stage reads these dataclasses; nothing downstream reads raw dicts.
Field names mirror `schemas/recipe.schema.json` one to one (a test checks).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union


@dataclass(frozen=True)
class SourceConfig:
    type: str                    # llava_json | hf_dataset | jsonl | csv | parquet | text
    path: str                    # absolute local path, hf:// URL, or (hf_dataset) a Hub dataset id
    name: str                    # unique per recipe; caption ids are "<name>:<row id>"
    limit: Optional[int] = None  # read at most this many captions from this source
    column: str = "caption"      # caption column (jsonl, csv, parquet, hf_dataset)
    id_column: Optional[str] = None  # row id column; default: the row index
    config: Optional[str] = None     # hf_dataset config name
    split: str = "train"             # hf_dataset split
    revision: Optional[str] = None   # hf_dataset / hf:// revision
    sha256: Optional[str] = None     # local file sources: the pinned content digest
    duplicate_ids: str = "error"     # error | drop
    images: Optional[str] = None     # llava_json: absolute folder that records' `image` paths are relative to
    image_column: Optional[str] = None  # hf_dataset: the column holding each caption's original image


@dataclass(frozen=True)
class RangeFilter:
    min: Optional[float] = None
    max: Optional[float] = None


@dataclass(frozen=True)
class RepetitionFilter:
    rep_len: int
    max: float


@dataclass(frozen=True)
class MaxFilter:
    max: float


@dataclass(frozen=True)
class PerplexityConfig:
    model: str                   # KenLM model (ARPA or binary): absolute local path or hf://org/name[@rev]/file
    tokenizer: str               # SentencePiece model, same forms
    max: float


@dataclass(frozen=True)
class SourceClipConfig:
    model: str                   # as score.clip.model
    pretrained: Optional[str] = None
    min: Optional[float] = None
    max: Optional[float] = None


@dataclass(frozen=True)
class SourceItmConfig:
    model: str                   # a transformers BLIP image-text retrieval model: Hub id or local folder
    revision: Optional[str] = None
    min: Optional[float] = None
    max: Optional[float] = None


@dataclass(frozen=True)
class SourceImageConfig:
    clip: Optional[SourceClipConfig] = None
    itm: Optional[SourceItmConfig] = None


JUDGE_PROMPT = ("Here is a caption of an image:\n\n{caption}\n\nIs this caption highly descriptive of the image"
                " it belongs to? Answer with Yes or No only.")


@dataclass(frozen=True)
class LlmJudgeConfig:
    base_url: str                # an OpenAI-compatible endpoint, e.g. http://localhost:8000/v1
    model: str
    api_key_env: Optional[str] = None  # the NAME of the environment variable holding the key
    prompt: str = JUDGE_PROMPT   # {caption} is replaced by the caption
    yes: str = "Yes"
    max_concurrency: int = 8
    timeout: float = 60.0
    retries: int = 5


@dataclass(frozen=True)
class FiltersConfig:
    """Effective filter settings: the preset is already merged in."""
    preset: str = "none"
    segmentation: str = "whitespace"  # whitespace | jieba
    alnum_ratio: Optional[RangeFilter] = None
    special_char_ratio: Optional[RangeFilter] = None
    char_repetition: Optional[RepetitionFilter] = None
    word_repetition: Optional[RepetitionFilter] = None
    flagged_words: Optional[MaxFilter] = None
    words: Optional[RangeFilter] = None
    max_tokens: Optional[int] = None
    truncate: bool = False
    dedupe: str = "exact"        # none | exact | normalized
    perplexity: Optional[PerplexityConfig] = None
    source_image: Optional[SourceImageConfig] = None
    llm_judge: Optional[LlmJudgeConfig] = None


@dataclass(frozen=True)
class CaptionsConfig:
    sources: tuple[SourceConfig, ...]
    filters: FiltersConfig = FiltersConfig()


@dataclass(frozen=True)
class GenerateConfig:
    model: str                   # hub id, absolute local dir, or builtin:<name>
    revision: Optional[str] = None
    variant: Optional[str] = None
    steps: int = 30
    guidance_scale: float = 7.5
    resolution: tuple[int, int] = (1024, 1024)   # (width, height)
    images_per_caption: int = 1
    batch_size: Union[int, str] = 4   # an integer, or "auto" (measured before the first shard)
    dtype: str = "float16"
    negative_prompt: str = ""
    scheduler: Optional[str] = None
    compile: bool = False


@dataclass(frozen=True)
class ClipConfig:
    model: str
    pretrained: Optional[str] = None
    prefix: str = "A photo depicts "
    units: str = "cosine"        # cosine | clipscore (2.5 * max(cos, 0))


@dataclass(frozen=True)
class SsimConfig:
    size: int = 336
    weight: float = 0.5


@dataclass(frozen=True)
class ClipModelConfig:
    model: str
    pretrained: Optional[str] = None


@dataclass(frozen=True)
class AestheticConfig:
    model: str                   # the head: a local file or a Hub repo id holding `file`
    clip: ClipModelConfig
    file: str = "sac+logos+ava1-l14-linearMSE.pth"
    revision: Optional[str] = None


@dataclass(frozen=True)
class ScoreConfig:
    clip: ClipConfig
    ssim: SsimConfig = SsimConfig()
    aesthetic: Optional[AestheticConfig] = None


@dataclass(frozen=True)
class ClassifierScreen:
    model: str                   # Hub id or absolute local folder
    label: str
    max: float = 0.5
    revision: Optional[str] = None


@dataclass(frozen=True)
class NearDuplicates:
    phash_distance: Optional[int] = None
    clip_cosine: Optional[float] = None


@dataclass(frozen=True)
class ScreenConfig:
    nsfw: Optional[ClassifierScreen] = None
    watermark: Optional[ClassifierScreen] = None
    near_duplicates: Optional[NearDuplicates] = None


@dataclass(frozen=True)
class SelectConfig:
    size: int
    per_caption: str = "best"    # best | all
    min_clip_score: Optional[float] = None
    min_ssim: Optional[float] = None
    min_score: Optional[float] = None
    min_aesthetic: Optional[float] = None
    allow_fewer: bool = False


@dataclass(frozen=True)
class FormatConfig:
    style: str = "llava_pretrain"
    image_format: str = "jpeg"   # jpeg | png | webp
    quality: int = 95
    prompts: Optional[tuple[str, ...]] = None


@dataclass(frozen=True)
class OutputConfig:
    dir: Optional[str] = None    # absolute; None means build/<name>-v<version> under the cwd


@dataclass(frozen=True)
class PublishConfig:
    repo_id: Optional[str] = None
    private: bool = True


@dataclass(frozen=True)
class RayConfig:
    address: Optional[str] = None
    workers: int = 1
    num_gpus_per_worker: Optional[float] = None


@dataclass(frozen=True)
class ExecutionConfig:
    executor: str = "local"      # local | ray
    shard_size: int = 1000
    device: str = "auto"
    ray: RayConfig = RayConfig()


@dataclass(frozen=True)
class Recipe:
    name: str
    version: str
    captions: CaptionsConfig
    generate: GenerateConfig
    score: ScoreConfig
    select: SelectConfig
    description: str = ""
    license: str = "other"
    seed: int = 0
    screen: ScreenConfig = ScreenConfig()
    format: FormatConfig = FormatConfig()
    output: OutputConfig = OutputConfig()
    publish: PublishConfig = PublishConfig()
    execution: ExecutionConfig = ExecutionConfig()
    # Not recipe fields: where it came from (to locate errors and copy it verbatim),
    # and the folder its relative paths resolve against.
    path: Optional[Path] = None
    base: Optional[Path] = None
    text: str = ""

    @property
    def output_dir(self) -> Path:
        return Path(self.output.dir) if self.output.dir else Path("build") / f"{self.name}-v{self.version}"

    # The Python API (README "Python API"); errors are RecipeError with every problem located.
    @classmethod
    def from_yaml(cls, path: Union[str, Path]) -> "Recipe":
        """The recipe in a YAML file, validated as `synthvlm-build validate` does."""
        from .loader import load_recipe
        return load_recipe(path)

    @classmethod
    def from_dict(cls, data: dict, base_dir: Union[str, Path, None] = None) -> "Recipe":
        """A recipe from plain data, validated exactly as a YAML file (recipe/plain.py); relative paths
        resolve against `base_dir` (default: the current dir)."""
        from .plain import recipe_from_data
        return recipe_from_data(data, base_dir)

    def as_builder(self, **options):
        """This recipe as a `datasets.DatasetBuilder` (builder.py; `options`: cache_dir, build_dir,
        executor, device, reporter). The API's one reference from the recipe up to the build."""
        from ..builder import RecipeBuilder
        return RecipeBuilder(self, **options)


@dataclass(frozen=True)
class Caption:
    id: str       # "<source name>:<row id or index>", stable across runs
    text: str
    source: str   # the source's name
    # The caption's original image, while curation needs it (never written out): an absolute file
    # path (llava_json + images), the encoded bytes (hf_dataset + image_column), or MISSING_IMAGE
    # when the source has images but this row names none.
    image: object = field(default=None, compare=False, repr=False)


MISSING_IMAGE = ""
