"Small things several test files share: a toy task an untrained tiny policy can score on, and a planted mask."
import torch
from rlsub.examples import plant_changes
from rlsub.measure.masks import SubnetMask
from rlsub.train.tiny import Task, addition


class EvenStart(Task):
    "A toy task an untrained policy already scores on about a quarter of the time (so gradients are not all zero): start the completion with an even digit."
    def reward(self, completion, answer): return 1.0 if completion[:1] in '02468' and completion[:1] else 0.0


EVEN = EvenStart('even-start', addition(1).sample, max_new_tokens=3)


def planted_mask(policy, density=0.25, seed=0):
    "A SubnetMask over `policy`'s tensors with about `density` of each tensor's entries set (from planted changes)."
    g = torch.Generator().manual_seed(seed)
    return SubnetMask.from_pair(policy, {n: plant_changes(t.clone(), density, 16, g) for n, t in policy.state_dict().items()})


def as_int(t):
    "The bits of an fp32 tensor, for bit-identity checks."
    return t.detach().contiguous().view(torch.int32)
