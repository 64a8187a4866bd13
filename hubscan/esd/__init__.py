"""The numeric core: weight tensors in, spectra and numbers out (METHOD.md §1–§5).

Everything a researcher checks against the papers lives here, as pure functions on arrays —
no file, network, lake, Ray or plotting. The flow inside the room:

- ``layers``      tensor name + shape → ``LayerMatrix`` (kind, N, M, Q, slices) or a ``Skip``
- ``spectral``    matrices → eigenvalues (``Spectrum``) and the per-layer metrics
- ``mp``          Marchenko–Pastur bulk fit (``fit_mp``)
- ``powerlaw/``   exact power-law fits of the tail: ``fit`` (the fitters), ``search``
                  (the batched KS search in torch), ``kernel`` (the compiled CPU search)
- ``compare``     likelihood-ratio tests against other distributions
- ``phases``      phase of training and heavy-tail class from the numbers above
- ``calibration`` the Pareto calibration experiment (seed 000)

Rooms above (``analysis``, ``engine``, ``plots`` …) call in; nothing here calls out
(tests/test_structure.py enforces it). Modules are imported directly
(``from hubscan.esd.spectral import eigenvalues``); this package imports nothing itself.
"""
