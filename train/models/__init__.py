"""Built-in model families; importing registers them."""
from . import mnad  # noqa: F401
from . import mpn  # noqa: F401
from . import lai  # noqa: F401
from . import dlan_ac  # noqa: F401
from . import maam_net  # noqa: F401
