"""``python -m models``: list every registered method."""
from . import describe

print(describe())
