"""``python -m models``: every registered method, then every row of the paper's tables."""
from . import describe
from .variants import describe_rows

print(describe())
print(describe_rows())
