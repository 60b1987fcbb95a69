"""Thin command-line scripts, one per stage and one for the whole pipeline; nothing imports them."""
