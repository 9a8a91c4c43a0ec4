"""One engine for every sweep of training runs: `ser-hf ablate` (grid x seed), `ser-hf cv`
(grid x seed x fold) and `ser-hf crosscorpus` (train corpus x test corpus).

* ``runner``     plan-independent engine: one process per run, resumable, GPU-aware.
* ``grid``       command-line grid values -> typed, checked run configs.
* ``statistics`` mean/std per cell, paired effects, metric choice.
* ``reports``    Markdown/CSV tables of a sweep.
* ``plots``      the sweep charts (bar chart of cells, cross-corpus heatmap).
* ``predictions`` what a run's own process writes after training (test predictions, transfer metrics).
* ``ablation``, ``cv``, ``crosscorpus``: the three kinds of sweep built on them.
"""
