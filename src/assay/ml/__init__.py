"""The shared ML layer: what every torch family needs once (configs, devices, models, hooks,
training, plots). It never imports a family; families import it. Importing ``assay.ml`` loads no
torch: submodules load it when used.
"""

from ._config import DType as DType
from ._config import TorchConfig as TorchConfig
