"""Outputs: atomic file writes (`files`), convergence checks (`diagnose`), the report's figures and numbers
(`figures`), the posterior-predictive check per read-out (`misfit`), `report.html` (`report`) and PSIS-LOO
comparison of model variants (`compare`)."""
