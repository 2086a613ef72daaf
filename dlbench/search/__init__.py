"""Hyperparameter search as pure functions: a round's points, narrowing, the configurations to
confirm; TPE and GP through Optuna; importance (successive halving's decisions: plan/pruning.py).

Nothing here trains or reads files; `plan.sweep` calls these with what the results
folder says, so a round's points are a function of the config and the finished runs of the
rounds before it (resuming mid-search draws the same points).

A *space* maps each searched key to a `Range`. A search is run once per group (one grid
point x case: every optimizer of a comparison gets its own search with the same budget);
round 1 is the same for every group, later rounds narrow each group's ranges to the best
`keep` fraction of its previous round (random, sobol, halton) or ask Optuna's sampler
fitted on its earlier rounds (tpe, gp). "Best" is on the group's train.monitor, in its
direction (validation accuracy by default).

  space.py       Range, Space, the methods
  samplers.py    random / Sobol' / Halton points of a round
  trials.py      what finished runs tell a search; ranking; the points to confirm
  narrowing.py   the ranges of each round after the first
  bayes.py       TPE / GP rounds through Optuna's ask-and-tell
  rounds.py      a round's points, whatever the method
  importance.py  each searched key's share of the variance (Optuna's fANOVA / PED-ANOVA)
"""

from dlbench.search.narrowing import narrow, round_spaces
from dlbench.search.rounds import plan_round
from dlbench.search.samplers import sample
from dlbench.search.space import KINDS, LEARNED, METHODS, SAMPLED, Kind, Method, Range, Space, point_key, space_of
from dlbench.search.trials import Outcome, Trial, kept, ranked, select_top

__all__ = ["KINDS", "LEARNED", "METHODS", "SAMPLED", "Kind", "Method", "Outcome", "Range", "Space", "Trial", "kept",
           "narrow", "plan_round", "point_key", "ranked", "round_spaces", "sample", "select_top", "space_of"]
