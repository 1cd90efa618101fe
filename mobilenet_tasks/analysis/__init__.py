"""Analysis: what the project measures about its models, above deployment.

- :mod:`.complexity`: params and MAdds, counted one way for the whole project;
- :mod:`.catalogue`: what the speed benchmark measures (backends, sizes, our models,
  the stock peers, the ratio rows) and :func:`~.catalogue.resolve`;
- :mod:`.build`: the module timed, its folded, exported and int8 forms;
- :mod:`.runtimes`: the file backends' table (how each file is made, which runtime
  opens it) and :class:`~.runtimes.ModelFiles`, which makes them;
- :mod:`.measure`: one task's runners timed, compared, their memory measured;
- :mod:`.timing`: runners timed interleaved;
- :mod:`.memory`: peak memory of a model file (or a config's PyTorch model) in a fresh
  process (``python -m mobilenet_tasks.analysis.memory``), file sizes;
- :mod:`.machine`: the CPU, its instruction sets, the runtime versions;
- :mod:`.report`: the fastest runtimes, the ratio rows, the markdown tables, the JSON
  file;
- :mod:`.figure`: accuracy against latency (the paper's Figure 1);
- :mod:`.benchmark`: :func:`~.benchmark.run_benchmark`, which runs them all
  (``tools/analysis_tools/benchmark.py``).

Importing this package imports none of them: import the module you need.
"""
