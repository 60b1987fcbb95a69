"""The fine-tuning stage: a pretrained BERT- or GPT-style model + LoRA (or full) + Trainer => a classifier folder."""
