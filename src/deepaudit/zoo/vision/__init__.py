"""Vision organisms: small classifiers of digits and MNIST-1D with planted input triggers."""
