"""PEtab beside the blot pipeline: `sbml` (SBML -> sympy rate equations), `problem` (a PEtab v1 problem as a
JAX log-likelihood), `fit` (an imported problem as a model of `pipeline.inference`), `export` (our model and a dataset as PEtab).
All solves go through `pipeline.model.solver`."""
