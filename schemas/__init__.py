"""Event contracts: what may enter and leave vitalwatch, with units, codes and ranges."""
