"""Inference, written against one small model interface (see `engine`): `optimize` (multi-start MAP by
L-BFGS, the Hessian at the best fit), `mcmc` (the NUTS kernel and how its chains run), `engine` (the stages:
MAP fits, posterior draws, diagnostics and InferenceData). The blot model and an imported PEtab problem both
run through it."""
