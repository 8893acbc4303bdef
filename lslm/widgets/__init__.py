"""Interactive widgets for the notebooks (ipywidgets + matplotlib, drawn as PNG images).

    from lslm.widgets import TokenExplorer
    TokenExplorer()          # the last line of a cell shows it

Every widget draws its own matplotlib Figure to PNG bytes under its own lock, never
through pyplot or an Output widget: JupyterLab 4.6 runs widget callbacks on several
kernel threads at once, and captured inline plots would race. See ``base.PlotWidget``.
"""

from .attention import AttentionExplorer, previous_token_score
from .base import PlotWidget
from .chat import ChatWidget
from .compute import ComputeEstimator
from .config import ConfigExplorer
from .patches import PatchAttention
from .sampling import SamplingPlayground
from .tokens import TokenExplorer
from .training import TrainingDashboard

__all__ = [
    "AttentionExplorer",
    "ChatWidget",
    "ComputeEstimator",
    "ConfigExplorer",
    "PatchAttention",
    "PlotWidget",
    "SamplingPlayground",
    "TokenExplorer",
    "TrainingDashboard",
    "previous_token_score",
]
