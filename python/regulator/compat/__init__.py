"""Drop-in adapters: the seed libraries' own APIs on regulator's client, so a fleet switches
by changing one import (``from regulator.compat import limitlion``)."""
