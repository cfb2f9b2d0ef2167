"""What runs inside one trial: data, model, the training loop and its reporting to Ray Tune."""
