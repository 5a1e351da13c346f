"""What to do next, from a fitted posterior: which treatment reverses resistance (`predict`) and which blot
would best tell the mechanisms apart (`design`). Candidate treatments come from the drug table (`treatments`)."""
