"""A Keras model's layers that hold weights, nested models (a MobileNet's or EfficientNet's base) walked into:
what --from_ckpt matches by name, what --freeze_epochs unfreezes, and what onednn.py checks."""
import keras


def weighted_layers(model):
    """The layers that hold weights, looking inside nested models."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from weighted_layers(layer)
        elif layer.weights:
            yield layer
