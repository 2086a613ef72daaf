"""AdaBelief (Zhuang et al. 2020) from the pytorch-optimizer package, beside the built-in optimizers.

One line: the class is any torch.optim.Optimizer; its fields (lr, betas, weight_decay, eps, ...)
come from its constructor's defaults, and dlbench trains one instance per run of a stack.
"""

import pytorch_optimizer

from dlbench import register

register.optimizer("adabelief")(pytorch_optimizer.AdaBelief)
