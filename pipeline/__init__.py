"""Why does a resistant line escape a PI3K/AKT/mTOR inhibitor? Fit a feedback-network ODE model to western blots."""

__version__ = "0.1.0"
