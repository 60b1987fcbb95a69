"""The distillation stage: a fine-tuned teacher folder => a smaller, faster student folder."""
