"""synthvlm-builder: reproducible synthetic image-caption datasets (SynthVLM) as Hugging Face datasets.

    from synthvlm_builder import Recipe, build
    result = build(Recipe.from_yaml("recipes/quickstart.yaml"))
    result.dataset                       # a datasets.Dataset

The functions are in api.py (README "Python API"); nothing heavy (torch, diffusers) loads on import.
"""

from . import reporter
from .api import build, captions, compare, evaluate, export, identity, iter_captions, plan, publish, rebuild, verify
from .errors import BuildError, InputError, Problem, RecipeError
from .recipe.config import Recipe
from .reporter import Recorder, Reporter
from .results import BuildResult, CaptionsResult, PlanResult
from .version import __version__

__all__ = ["BuildError", "BuildResult", "CaptionsResult", "InputError", "PlanResult", "Problem", "Recipe",
           "RecipeError", "Recorder", "Reporter", "__version__", "build", "captions", "compare", "evaluate",
           "export", "identity", "iter_captions", "plan", "publish", "rebuild", "reporter", "verify"]
