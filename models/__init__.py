"""Features, the LSTM risk model, NEWS2, the patient simulator, training and evaluation."""
