"""Backbones: every one returns logits, the penultimate feature and intermediate stages."""

from al.models.backbone import Backbone, BackboneOutput

__all__ = ["Backbone", "BackboneOutput"]
