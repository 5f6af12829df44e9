"""Semi-supervised training of the task learner on the unlabeled pool (FixMatch, FlexMatch)."""
