"""Built-in model families; importing registers them."""

from . import (
    dlan_ac,  # noqa: F401
    lai,  # noqa: F401
    maam_net,  # noqa: F401
    mnad,  # noqa: F401
    mpn,  # noqa: F401
)
