"""Analyse one model: its tensors → ``LayerResult`` rows → one ``ModelResult``.

- ``tensors``   the analysis step of a checkpoint: classify, load, solve, fit (in batches),
                MP fit, phase, comparisons — one ``LayerResult`` per tensor
- ``summary``   a model's layer rows → the ``models`` table's summary columns
- ``model``     one ``ModelRef`` → a ``ModelResult`` (the engine's unit of work): files one
                at a time, retries, content-hash reuse, failure rows; never raises
- ``readahead`` read tensors ahead of the solve in a thread, bounded by bytes

The numbers come from ``hubscan.esd``; the bytes from ``hubscan.sources``/``readers``. The
notebook form, ``hubscan.analyze``, is ``hubscan.api``. This package imports nothing itself.
"""
