"""Training and evaluation data: assembly, the general corpus, tool groups, teacher data."""


class DataError(ValueError):
    """A data file or folder that cannot be used: nothing usable in it (the CLIs exit 5)."""
