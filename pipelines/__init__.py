"""Shared foundation: configs, model sources, data loading, metrics and the fine-tuning stage.

Importing this package makes the Hugging Face libraries offline by default (set HF_HUB_OFFLINE=0 to
allow hub downloads) and keeps their caches inside the project, unless the user set them already.
"""

from pipelines.environment import configure_environment

configure_environment()
