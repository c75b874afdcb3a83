"""Design-space sweeps: points, a local or Dask executor, tidy rows in JSONL and Parquet."""
