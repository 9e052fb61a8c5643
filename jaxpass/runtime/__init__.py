"""Runtime services shared by every layer above the numerical core (no numerics here).

* :mod:`jaxpass.runtime.progress`: progress bars and log lines on stderr
  (``--quiet`` silences them), and ``compile_and_run`` with its
  ``compiling``/``running`` phases shown;
* :mod:`jaxpass.runtime.io`: atomic result files and result sets, the
  ``environment`` record of every result, and ``compile_and_run`` (compile
  apart, then blocked, timed calls).

They live below ``jaxpass.learn``, ``jaxpass.plotting`` and
``jaxpass.experiments`` so that none of those imports a layer above itself
(the layering in docs/execution_model.md; ``tests/test_layers.py`` checks it). The numerical core
does not use them: it has no I/O or side effects.
"""
