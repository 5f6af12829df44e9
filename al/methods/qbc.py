"""Query by committee (Seung et al. 1992) with a deep committee: label where members disagree.

The committee is `members` copies of the task learner, trained side by side on the labeled set
(`committee: ensemble`, the deep ensembles of Beluch et al. CVPR 2018, N = 5) or each on its own
resample of it (query by bagging, Abe & Mamitsuka 1998), two ways:
- `bootstrap`: each member's bootstrap of the stage's n labeled samples — n draws with
  replacement, once per stage — weighs each sample by how often it was drawn (0 for the ~1/e
  left out), every epoch. Training batches carry each sample's global index for this
  (`labeled_sample_ids`). An epoch's weighted loss is the member's loss over its resample.
- `bagging`: Oza & Russell's (2001) online bagging, a fresh Poisson(1) count per sample of
  every batch (the limit of the bootstrap's counts as n grows): over many epochs every member
  sees every sample, and the members differ by the noise of their weights, not by samples some
  of them never see.

`member_data`: `shuffled` (default) — each member sees its own permutation of the labeled samples
every epoch (deep ensembles, Lakshminarayanan et al. 2017 §2.4: "random shuffling of the data
points"), drawn from the stage's seed, the member and the epoch alone (`MemberOrders`); the
training batches then hold one equal part per member — or `shared` — every member trains on the
same minibatches, in the same order.

Member 0 is the backbone as built; member m > 0 is a fresh backbone of the same model config
(`member_backbone`, a `BackboneFactory`), initialised from its own seed (from
`torch.initial_seed()`, which the loop sets per stage, and m): M independent draws of the
backbone's own initialisation, as deep ensembles train them.

All members train in one step with one optimizer on the sum of their losses. They share no
parameter, so each parameter's gradient is that of its own member's loss alone, and the
per-parameter updates of SGD (momentum, weight decay) and Adam/AdamW (moments, weight decay)
are those of M independent runs. What would couple them: gradient clipping by the global norm
(`trainer.gradient_clip_val`) and schedulers that watch the summed loss.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from al.data.datamodule import MemberOrders
from al.errors import ConfigError
from al.methods.bald import bald, max_entropy, variation_ratios
from al.methods.entropy import entropy
from al.methods.module import OptimizerFactory, SchedulerFactory, TaskModule, check_finite
from al.methods.selector import Selector
from al.models.backbone import Backbone, load_backbone_weights
from al.tasks import Task

COMMITTEES = ("ensemble", "bagging", "bootstrap")
MEMBER_DATA = ("shared", "shuffled")
MEMBER, BAGGING, BOOTSTRAP, ORDER = 0, 1, 2, 3  # the purposes of derived seeds


def derived_seed(seed: int, purpose: int, key: int) -> int:
    """A well-mixed 64-bit seed for (`seed`, `purpose`, `key`) (NumPy's SeedSequence)."""
    return int(np.random.SeedSequence([seed, purpose, key]).generate_state(1, np.uint64)[0])


def mean_log_probabilities(member_logits: torch.Tensor) -> torch.Tensor:
    """log (1/M) Σ_m softmax(z_m) of (M, B, C) logits: the committee's prediction as logits."""
    members = member_logits.shape[0]
    return torch.logsumexp(F.log_softmax(member_logits, dim=2), dim=0) - math.log(members)


class CommitteeModule(TaskModule):
    """`members` backbones trained together; `forward` is the committee's mean prediction.

    Tested and validated as the standard classifier (on the mean prediction), plus each
    member's test accuracy (`test/member_acc/M`) and per-epoch training loss
    (`train/member_loss/M`; `train/loss` is their mean, the step minimises their sum).
    """

    def __init__(
        self,
        backbone: Backbone,
        optimizer: OptimizerFactory,
        num_classes: int,
        scheduler: SchedulerFactory | None = None,
        members: int = 5,
        committee: str = "ensemble",
        train_loss_prediction: bool = False,
        task: Task | None = None,
        member_backbone: Callable[[int], Backbone] | None = None,
        member_data: str = "shuffled",
    ) -> None:
        check_committee(members, committee, member_backbone, member_data)
        super().__init__(backbone, optimizer, num_classes, scheduler, task, train_loss_prediction)
        self.committee = committee
        self.committee_seed = torch.initial_seed()
        others = [member_backbone(self.member_seed(m)) for m in range(1, members)]
        self.members = nn.ModuleList([self.backbone, *others])  # member 0 is the backbone
        self._register_load_state_dict_pre_hook(backbone_from_member_zero)
        self.member_test_acc = nn.ModuleList(
            MulticlassAccuracy(num_classes, average="micro") for _ in range(members)
        )
        self.bagging_generator = torch.Generator()
        self.labeled_sample_ids = committee == "bootstrap"
        self.resample = None
        self.member_orders = None
        if member_data == "shuffled":
            order_seed = derived_seed(self.committee_seed, ORDER, 0)
            self.member_orders = MemberOrders(members, order_seed)

    def member_seed(self, member: int) -> int:
        return derived_seed(self.committee_seed, MEMBER, member)

    def on_fit_start(self) -> None:
        """Bagging counts restart from the committee's seed, apart on every DDP rank; the
        bootstrap resamples are drawn for this stage's labeled samples, alike on every rank."""
        seed = derived_seed(self.committee_seed, BAGGING, self.global_rank)
        self.bagging_generator.manual_seed(seed)
        if self.labeled_sample_ids:
            labeled = np.asarray(self.trainer.datamodule.labeled_indices)
            self.resample = BootstrapCounts.draw(
                labeled, len(self.members), derived_seed(self.committee_seed, BOOTSTRAP, 0)
            ).to(self.device)

    def load_pretrained(self, weights: Mapping[str, torch.Tensor]) -> None:
        """Every member starts from the pretrained `weights` (all but its classifier, which
        keeps the member's own initialisation): the committee differs in its heads and its
        data, as an ensemble fine-tuned from one pretrained trunk."""
        for member in self.members:
            load_backbone_weights(member, weights)

    def member_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Each member's logits of `x`: (M, B, C)."""
        return torch.stack([member(x).logits for member in self.members])

    def member_probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """Each member's softmax of `x` in float32: (M, B, C), what disagreement reads."""
        return F.softmax(self.member_logits(x).float(), dim=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return mean_log_probabilities(self.member_logits(x))

    def sample_weights(self, batch_size: int, ids: torch.Tensor | None = None) -> torch.Tensor:
        """(M, B) weights of the batch's samples per member: 1 (ensemble), fresh Poisson(1)
        counts (bagging, Oza & Russell 2001), or the samples' (global `ids`) counts in each
        member's bootstrap (bootstrap)."""
        shape = (len(self.members), batch_size)
        if self.committee == "ensemble":
            return torch.ones(shape, device=self.device)
        if self.committee == "bootstrap":
            return self.resample.weights(ids)
        counts = torch.poisson(torch.ones(shape), generator=self.bagging_generator)
        return counts.to(self.device)

    def training_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int
    ) -> torch.Tensor:
        """Σ_m (1/B) Σ_i w_mi CE(z_mi, y_mi): each member's weighted mean cross-entropy on its
        batch (the batch is `(x, y, global_ids)` for `bootstrap`; with `member_orders`, one
        equal part per member, else one batch that every member trains on). `train/acc` is the
        committee's mean prediction on a shared batch, the members' mean accuracy on their own."""
        x, y, *ids = batch
        ids = ids[0] if ids else None
        if self.member_orders is None:
            logits = self.member_logits(x)
            member_y = y.expand(len(self.members), -1)
            predicted = mean_log_probabilities(logits.detach())  # the committee's, of y
        else:
            x, member_y = self.member_parts(x), self.member_parts(y)
            ids = None if ids is None else self.member_parts(ids)
            logits = torch.stack(
                [member(part).logits for member, part in zip(self.members, x, strict=True)]
            )
            predicted = logits.detach().flatten(0, 1)  # each member's, of its own part of y
        sample_losses = torch.stack(
            [
                F.cross_entropy(z, target, reduction="none")
                for z, target in zip(logits, member_y, strict=True)
            ]
        )
        weights = self.sample_weights(member_y.shape[1], ids)
        member_losses = (weights * sample_losses).mean(1)
        loss = member_losses.sum()
        check_finite(loss, self.current_epoch, batch_idx)
        terms = {f"member_loss/{m}": member_loss for m, member_loss in enumerate(member_losses)}
        terms["loss"] = member_losses.mean()
        self.track_epoch(terms, predicted, y, batch_idx)
        return loss

    def member_parts(self, batch_part: torch.Tensor) -> torch.Tensor:
        """A batch of `member_orders` as (M, B, …): member m's part is its own samples."""
        return batch_part.unflatten(0, (len(self.members), -1))

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        """The standard classifier's test metrics of the committee, and each member's
        accuracy."""
        super().test_step(batch, batch_idx)
        x, y = batch
        for member, (logits, accuracy) in enumerate(
            zip(self.member_logits(x), self.member_test_acc, strict=True)
        ):
            accuracy(logits, y)
            self.log(f"test/member_acc/{member}", accuracy, batch_size=len(y))


class BootstrapCounts(nn.Module):
    """Each member's bootstrap of a stage's labeled samples: how often each was drawn."""

    def __init__(self, sorted_ids: torch.Tensor, counts: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("sorted_ids", sorted_ids, persistent=False)
        self.register_buffer("counts", counts, persistent=False)

    @classmethod
    def draw(cls, labeled_ids: np.ndarray, members: int, seed: int) -> BootstrapCounts:
        """n draws with replacement from the n labeled samples, per member (`seed`)."""
        generator = torch.Generator().manual_seed(seed)
        n = len(labeled_ids)
        draws = torch.randint(0, n, (members, n), generator=generator)
        counts = torch.zeros(members, n).scatter_add_(1, draws, torch.ones(members, n))
        return cls(torch.from_numpy(np.sort(labeled_ids)), counts)

    def weights(self, ids: torch.Tensor) -> torch.Tensor:
        """(M, B) counts of the samples with global indices `ids` (all labeled): ids (B,) that
        every member trains on, or (M, B), each member's own."""
        positions = torch.searchsorted(self.sorted_ids, ids.to(self.sorted_ids.device))
        if positions.dim() == 1:
            return self.counts[:, positions]
        return self.counts.gather(1, positions)


def backbone_from_member_zero(state: dict, prefix: str, *args) -> None:
    """Weights saved when member 0 was held only in `members` load into `backbone` too."""
    for key in [key for key in state if key.startswith(f"{prefix}members.0.")]:
        state.setdefault(f"{prefix}backbone." + key.removeprefix(f"{prefix}members.0."), state[key])


def check_committee(
    members: int,
    committee: str,
    member_backbone: Callable[[int], Backbone] | None,
    member_data: str,
) -> None:
    if member_data not in MEMBER_DATA:
        raise ConfigError(
            f"method.module.member_data={member_data!r} is not one of "
            f"{', '.join(MEMBER_DATA)}: e.g. method.module.member_data=shuffled"
        )
    if isinstance(members, bool) or not isinstance(members, int) or members < 1:
        raise ConfigError(
            f"method.module.members={members!r} must be a positive integer: e.g. "
            "method.module.members=5 (Beluch et al. 2018)"
        )
    if committee not in COMMITTEES:
        raise ConfigError(
            f"method.module.committee={committee!r} is not one of {', '.join(COMMITTEES)}: "
            "e.g. method.module.committee=ensemble"
        )
    if members > 1 and member_backbone is None:
        raise ConfigError(
            f"method.module.members={members} needs method.module.member_backbone, the factory "
            "of the other members (conf/method/qbc.yaml: al.models.factory.BackboneFactory)"
        )


def vote_entropy(member_probs: torch.Tensor) -> torch.Tensor:
    """−Σ_c (V(c)/M) log(V(c)/M), V(c) the members voting c (Dagan & Engelson 1995; modAL's
    `vote_entropy`, nats), of (M, B, C) member probabilities."""
    members, _, classes = member_probs.shape
    votes = F.one_hot(member_probs.argmax(2), classes).sum(0)
    return entropy(votes.float() / members)


def kl_to_consensus(member_probs: torch.Tensor) -> torch.Tensor:
    """(1/M) Σ_m KL(p_m ‖ p̄), p̄ the mean prediction (McCallum & Nigam 1998). Equal to
    ensemble BALD: both are the Jensen–Shannon divergence of the members."""
    consensus = member_probs.mean(0, keepdim=True)
    return kl_divergences(member_probs, consensus).mean(0)


def max_disagreement(member_probs: torch.Tensor) -> torch.Tensor:
    """max_m KL(p_m ‖ p̄) (modAL's `max_disagreement`)."""
    consensus = member_probs.mean(0, keepdim=True)
    return kl_divergences(member_probs, consensus).max(0).values


def kl_divergences(member_probs: torch.Tensor, consensus: torch.Tensor) -> torch.Tensor:
    """KL(p_m ‖ p̄) = Σ_c p_m log p_m − p_m log p̄, per member and sample: (M, B)."""
    cross = torch.special.xlogy(member_probs, consensus)
    return (torch.special.xlogy(member_probs, member_probs) - cross).sum(2)


DISAGREEMENTS = {
    "vote_entropy": vote_entropy,
    "consensus_entropy": max_entropy,  # H(p̄)
    "kl_to_consensus": kl_to_consensus,
    "max_disagreement": max_disagreement,
    "variation_ratios": variation_ratios,  # 1 − (modal votes)/M
    "ensemble_bald": bald,  # H(p̄) − (1/M) Σ_m H(p_m)
}


class QbcSelector(Selector):
    """Scores each candidate by the committee's `disagreement` (more-methods.md §5.2)."""

    def __init__(self, disagreement: str = "vote_entropy") -> None:
        super().__init__()
        if disagreement not in DISAGREEMENTS:
            raise ConfigError(
                f"method.selector.disagreement={disagreement!r} is not one of "
                f"{', '.join(DISAGREEMENTS)}"
            )
        self.disagreement = DISAGREEMENTS[disagreement]

    def check_module(self, module: pl.LightningModule) -> None:
        """Refuse a module that is no committee (of at least two)."""
        members = getattr(module, "members", None)
        if not isinstance(members, nn.ModuleList) or len(members) < 2:
            raise ConfigError(
                "method=qbc needs a committee of at least two members: use its module "
                "al.methods.qbc.CommitteeModule with method.module.members=5"
            )

    def score(self, module: pl.LightningModule, x: torch.Tensor) -> torch.Tensor:
        return self.disagreement(module.member_probabilities(x))
