"""Data sets the model learns and is evaluated on: the simulator, PhysioNet PSV, CLIF, patient series."""
