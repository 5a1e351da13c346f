from pipeline.cli import main

if __name__ == "__main__":  # not when a worker process of `chain_method: processes` re-imports it
    raise SystemExit(main())
