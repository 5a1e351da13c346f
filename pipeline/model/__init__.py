"""The model: the parameter and drug tables (`parameters`, `drugs`), the network's equations (`network`), the
one solver layer (`solver`, with Rodas5P in `rosenbrock`), the blot protocol (`simulate`, `trajectories`),
the blot likelihood (`observation`), the config's model variant (`variant`), the posterior on one flat vector
(`posterior`) and simulated datasets from it (`synthetic`)."""
