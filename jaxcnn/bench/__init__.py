"""Benchmarks: `python -m jaxcnn.bench` (train-step throughput beside PyTorch, time to a target accuracy) and
`python -m jaxcnn.bench.pipeline` (input pipelines beside the steps they feed).

  step.py      the train step timed (JaxStep), model inputs, and what makes two figures comparable
  worker.py    one side of a comparison in a process of its own
  accuracy.py  time to a target test accuracy, jaxcnn and its PyTorch twin under the same recipe
  pipeline.py  input-pipeline throughput
  __main__.py  the command line, the protocol and the table
"""
