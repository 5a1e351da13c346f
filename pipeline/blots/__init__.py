"""Data in: a blot dataset folder (format v1, `data/README.md`) read and validated (`dataset`), written as a
labelled NetCDF (`ingest`), and laid out as the arrays the model evaluates (`design`)."""
