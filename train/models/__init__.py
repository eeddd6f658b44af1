"""Built-in model families; importing registers them."""
from . import mnad  # noqa: F401
