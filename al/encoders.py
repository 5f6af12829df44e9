"""The representation a run starts from, composed from its config: the backbone weights of
`representation=NAME` (self-supervised on the pool, cached), and embedding mode (`embedding=
NAME`: the data replaced by a frozen encoder's cached features, the model by a head)."""

from __future__ import annotations

import copy
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from al.cache import CacheEntry
from al.data import ALData
from al.embedding import check_embeddable, embedded_data, encoded_tensors
from al.errors import build
from al.models.backbone import load_backbone_weights
from al.models.factory import BackboneFactory
from al.pool import stage_rng


def cache_key(cfg: DictConfig, *groups: str) -> dict[str, Any]:
    """What determines a cached result: the dataset (its pool order: where its files lie does
    not count), the model, the given groups, the seed and the held-out split."""
    key = {
        group: without_roots(OmegaConf.to_container(cfg[group], resolve=True)) for group in groups
    }
    key |= {"dataset": without_roots(OmegaConf.to_container(cfg.dataset, resolve=True))}
    key |= {"model": OmegaConf.to_container(cfg.model, resolve=True), "seed": cfg.seed}
    if cfg.eval_model == "best_val":
        key["validation_fraction"] = cfg.validation_fraction
    return key


def without_roots(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {k: without_roots(v) for k, v in tree.items() if k != "root"}
    return tree


def representation_weights(cfg: DictConfig, data: ALData) -> dict[str, torch.Tensor] | None:
    """The backbone weights `representation=NAME` pretrained on `data`'s pool (cached), or
    None without a representation."""
    if not cfg.get("representation"):
        return None
    pretraining = build(cfg.representation)
    entry = CacheEntry(cfg.paths.cache, "representation", cache_key(cfg, "representation"))
    like = build(cfg.trainer, callbacks=[])

    def pretrain() -> dict[str, torch.Tensor]:
        seed = int(stage_rng(cfg.seed, 0, "representation").integers(2**31 - 1))
        backbone = BackboneFactory(cfg.model)(seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return pretraining.pretrain(backbone, data, seed, like, entry.path.with_suffix(".ckpt"))

    return entry.get_or_compute(pretrain)


def embedding_mode(
    cfg: DictConfig, data: ALData, weights: dict[str, torch.Tensor] | None
) -> tuple[DictConfig, ALData]:
    """The run's config with the model replaced by the embedding's head on features of the
    model's width, and its data replaced by the frozen encoder's features (cached)."""
    check_embeddable(data, cfg.embedding.name)
    encoder = BackboneFactory(cfg.model)(int(stage_rng(cfg.seed, 0, "encoder").integers(2**31)))
    if weights is not None:
        load_backbone_weights(encoder, weights)
    device = build(cfg.trainer, callbacks=[]).strategy.root_device
    entry = CacheEntry(cfg.paths.cache, "embedding", cache_key(cfg, "representation", "embedding"))
    tensors = entry.get_or_compute(
        lambda: encoded_tensors(data, encoder, device, cfg.embedding.batch_size)
    )
    return head_config(cfg, tensors["pool"].shape[1]), embedded_data(data, tensors)


def head_config(cfg: DictConfig, width: int) -> DictConfig:
    """A copy of `cfg` whose model is the embedding's head, trained with the embedding's
    optimizer for its epochs (no scheduler), on `width`-wide feature vectors (what the
    method's selectors then build for)."""
    head_cfg = copy.deepcopy(cfg)
    with open_dict(head_cfg):
        head = head_cfg.embedding.head
        if head.get("dropout", 0.0) is None:
            head.dropout = cfg.model.get("dropout", 0.0)
        head_cfg.model = head
        head_cfg.dataset.input_shape = [width]
        head_cfg.optimizer = head_cfg.embedding.optimizer
        head_cfg.scheduler = None
        head_cfg.trainer.max_epochs = head_cfg.embedding.max_epochs
    return head_cfg
