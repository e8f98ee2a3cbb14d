"""Model files: each exposes construct(input_shape, num_classes, **kwargs) -> keras.Model (see config.MODELS)."""
