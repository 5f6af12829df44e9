"""Tasks: what the loop, task modules and selectors ask of classification or segmentation."""

from al.tasks.base import Task, check_supported, supported_tasks
from al.tasks.classification import Classification

__all__ = ["Classification", "Task", "check_supported", "supported_tasks"]
