"""Notebook jobs: a notebook, its papermill parameters and a slice, turned into a batch job.

* :mod:`.validation`: notebooks from bytes or files (size, JSON, nbformat 4), paths
  that must stay inside the user's home;
* :mod:`.parameters`: the notebook's parameters cell, ``k=v`` values, sweeps and grids;
* :mod:`.manifest`: what ``gpuaf-run-notebook`` (:mod:`gpuaf.run_notebook`) runs;
* :mod:`.plan`: all of it checked against the settings and the user's groups;
* :mod:`.htcondor`, :mod:`.slurm`: the submit description / sbatch request, built
  without submitting.

Every refusal is a :class:`~gpuaf.notebooks.errors.NotebookError` (a PublicError).
"""
