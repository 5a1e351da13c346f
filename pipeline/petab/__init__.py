"""PEtab beside the blot pipeline: `sbml` (SBML -> sympy rate equations), `problem` (a PEtab v1 problem as a
JAX log-likelihood), `fit` (MAP and NUTS of an imported problem), `export` (our model and a dataset as PEtab).
All solves go through `pipeline.solver`."""
