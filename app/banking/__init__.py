"""The banking task every backend plays: the intent set, its answer format, our corpus."""
