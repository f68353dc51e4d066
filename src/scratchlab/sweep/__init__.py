"""Sweeps: an experiment over variants (config overrides) and seeds, each run an ordinary run directory
(OUT/<variant>/seed<k>/), run by an executor (serial, a local process pool, or Ray) and aggregated per variant:
n, mean, std, min, max, the values and a 95% interval for every numeric summary field.

    engine.py     run_one (the only writer of a run's config.json and summary.json), run_sweep, the table
    executors.py  serial / local / ray
    stats.py      the numbers over seeds

A multi-run experiment declares its runs as data (`experiments.Plan`); this package runs them. It sits between
the runner (the CLI's entry points) and the experiments, which never import it.
"""
