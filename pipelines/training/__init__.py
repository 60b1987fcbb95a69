"""Training machinery shared by the stages that train: settings, Trainer arguments, the one Trainer subclass
(the seam where a stage plugs in its loss), shuffled length-grouped batches and fast CPU dropout."""
