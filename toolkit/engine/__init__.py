"""Training engine: the loop (`trainer`), checkpoints, evaluation through the task's evaluator, logs,
distributed training and the demo. It knows no task by name: it asks the model's task."""
