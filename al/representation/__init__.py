"""Self-supervised pretraining of the task learner's backbone on the pool (labels never read),
cached per (dataset, model, objective, seed) and loaded into every stage's backbone."""
