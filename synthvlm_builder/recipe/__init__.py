"""The recipe language: a strict YAML reader with positions, the JSON Schema and the semantic
checks, and the typed, frozen config every later stage reads."""
from .config import Caption, Recipe
from .loader import (load_recipe, load_recipe_any, load_recipe_text, locate, locate_error, recipe_from_dict,
                     recipe_to_dict)

__all__ = ["Caption", "Recipe", "load_recipe", "load_recipe_any", "load_recipe_text", "locate", "locate_error",
           "recipe_from_dict", "recipe_to_dict"]
