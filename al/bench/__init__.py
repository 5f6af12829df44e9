"""`python -m al.bench`: the framework's costs, each a ratio against a baseline run in the
same process (the only kind of figure that holds across machines), with absolute seconds.

Suites: `overhead` (one AL stage through Lightning vs a plain PyTorch loop), `selection`
(selectors' scoring time and memory; Core-set vs a full-matrix reference and a one-pass floor),
`scale` (a streamed 1M-sample pool vs a 10k one), `first_curve` (the default `al.train`).
"""
