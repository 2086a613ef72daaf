"""From a config to what trains: the sweep's runs, how they group into stacks, and the pruning plan.

  sweep.py     grid / cases / random rounds / confirm / seeds -> validated RunSpecs; run ids
  stacks.py    which runs train together (their stack-role settings agree), at most MAX_STACK
  pruning.py   successive halving (random.prune): which search runs stop at which evaluation
"""
