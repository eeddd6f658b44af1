"""Training side of vadedge (needs the `train` extra): models, memory modules, losses, data, trainer, eval.

Importing this package imports torch; `import vadedge` does not.
"""

from vadedge._optional import require as _require

_require("torch")

from . import models as _models  # noqa: E402,F401  (registers the built-in families)
from .registry import create_model, get_model_entry, list_models, register_model  # noqa: E402

__all__ = ["create_model", "get_model_entry", "list_models", "register_model"]
