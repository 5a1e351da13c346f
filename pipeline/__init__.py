"""Why does a resistant line escape a PI3K/AKT/mTOR inhibitor? Fit a feedback-network ODE model to western blots."""

import os

# A NaN inside an implicit solver's linear solve would otherwise raise through a host callback even with
# throw=False and end a NUTS run (../shared/design/pitfalls.md); as a NaN it becomes a rejected proposal.
# Must be set before equinox is imported; set it yourself if you import equinox before `pipeline`.
os.environ.setdefault("EQX_ON_ERROR", "nan")

__version__ = "0.1.0"
