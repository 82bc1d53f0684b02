"""Rules as run components: each module holds rule config classes (registered with
:func:`~neuroprobe.config.register_rule`) and the agent/learner adapters their ``build`` assembles.
Importing this package registers every shipped rule."""
from . import rate_rl  # noqa: F401
from . import cet  # noqa: F401
from . import cet_actor_critic  # noqa: F401
from . import probe  # noqa: F401
from . import rstdp  # noqa: F401
from . import spiking_nrl  # noqa: F401
from . import spiking_probe  # noqa: F401
